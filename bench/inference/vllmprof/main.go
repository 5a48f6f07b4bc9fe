// Command vllmprof is the vLLM plugin with a CPU profile, for
// bench/inference/run.sh (PLUGIN_CPUPROFILE=file): the host gives a plugin
// no environment, so the file and the profiled span are set at build time
// (-ldflags -X). The plugin's own code is untouched.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/inference-vllm/vllm"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// profile is the file the CPU profile goes to; span is how long it runs
// (the plugin is killed at the host's end, so the profile is written
// before that). Both are set with -ldflags -X.
var profile, span = "", "20s"

// procs, when set, replaces sdk.Serve's GOMAXPROCS=1 a moment after start
// (to compare processor counts in one run).
var procs = ""

// timed measures, inside the plugin, each streamed call from the gRPC
// handler's entry to its first chunk (the backend's HTTP round trip and
// the event parsing), to tell the plugin's own time from the hop's.
type timed struct {
	sdk.Backend
	mu    sync.Mutex
	first []time.Duration
}

type firstWriter struct {
	w     sdk.StreamWriter
	start time.Time
	t     *timed
	done  bool
}

func (f *firstWriter) Send(c sdk.Chunk) error {
	if !f.done {
		f.done = true
		d := time.Since(f.start)
		f.t.mu.Lock()
		f.t.first = append(f.t.first, d)
		f.t.mu.Unlock()
	}
	return f.w.Send(c)
}

func (t *timed) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return t.Backend.ChatCompletions(ctx, req, &firstWriter{w: w, start: time.Now(), t: t})
}

func (t *timed) report(file string) {
	t.mu.Lock()
	s := append([]time.Duration(nil), t.first...)
	t.mu.Unlock()
	if len(s) == 0 {
		return
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	_ = os.WriteFile(file, []byte(fmt.Sprintf("plugin-internal first chunk: n=%d p50 %s p99 %s\n", len(s), s[len(s)/2], s[len(s)*99/100])), 0o644)
}

func main() {
	t := &timed{Backend: vllm.New()}
	if profile != "" {
		d, err := time.ParseDuration(span)
		if err != nil {
			panic(err)
		}
		profile = fmt.Sprintf("%s.%d", profile, os.Getpid()) // one file per plugin process (one per route)
		f, err := os.Create(profile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		time.AfterFunc(d, func() { pprof.StopCPUProfile(); f.Close(); t.report(profile + ".txt") })
	}
	if procs != "" {
		n, err := strconv.Atoi(procs)
		if err != nil {
			panic(err)
		}
		time.AfterFunc(100*time.Millisecond, func() { runtime.GOMAXPROCS(n) })
	}
	sdk.Serve(t)
}
