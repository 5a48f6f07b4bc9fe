// Command plugin measures what the go-plugin hop costs an inference call:
// the same backend called in-process and through nemoclaw's plugin host
// (a separate process, gRPC over a Unix socket with AutoMTLS), side by side
// in one run; and the vLLM plugin against a fake OpenAI server, against
// the same server called directly over HTTP. It prints added latency (p50,
// p99), small non-streamed calls per second and the added cost per
// streamed chunk, with ratios.
//
// The binary is also the plugin it measures: started by the host (the
// go-plugin cookie in its environment) it serves the synthetic backend.
//
//	bench/inference/plugin.sh
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// synth is a backend with no I/O: a small fixed answer, or as many
// ~120-byte chunks as the body asks for.
type synth struct{ sdk.UnimplementedBackend }

var answer = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
var chunk = []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}`)

func (synth) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "bench", Version: "1", Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapStreaming}}, nil
}

func (synth) ChatCompletions(_ context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	if !r.Stream {
		return w.Send(sdk.Chunk{Data: answer, Usage: &sdk.Usage{PromptTokens: 3, CompletionTokens: 1, TotalTokens: 4}})
	}
	var in struct{ Chunks int }
	if err := json.Unmarshal(r.Body, &in); err != nil {
		return err
	}
	for i := 0; i < in.Chunks; i++ {
		if err := w.Send(sdk.Chunk{Data: chunk}); err != nil {
			return err
		}
	}
	return nil
}

type discard struct{ n int }

func (d *discard) Send(c sdk.Chunk) error { d.n++; return nil }

// fakeEnv makes this binary the fake OpenAI server: it prints its URL and
// serves until killed.
const fakeEnv = "BENCH_FAKE_OPENAI"

func main() {
	if os.Getenv(sdk.Handshake().MagicCookieKey) != "" {
		sdk.Serve(synth{})
		return
	}
	if os.Getenv(fakeEnv) != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("http://%s\n", ln.Addr())
		log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Write(answer)
		})))
	}
	dir := flag.String("dir", "", "plugin directory holding nemoclaw-inference-bench and nemoclaw-inference-vllm")
	calls := flag.Int("calls", 5000, "sequential calls per side for latency")
	dur := flag.Duration("dur", 2*time.Second, "duration of each throughput run")
	conc := flag.Int("c", 8, "concurrent callers in the throughput runs")
	chunks := flag.Int("chunks", 1000, "chunks per streamed response")
	streams := flag.Int("streams", 30, "streamed responses per side")
	cpuprofile := flag.String("cpuprofile", "", "write the host side's CPU profile of the plugin throughput run to this file")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required (see bench/inference/plugin.sh)")
	}
	h := host(*dir)
	defer h.Close()
	ctx := context.Background()

	viaPlugin, err := h.Backend(ctx, inference.Route{Profile: "bench", Plugin: "bench"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("plugin round trip: synthetic backend, in-process vs through the plugin host (%d calls, %d callers for %s, %d x %d-chunk streams)\n", *calls, *conc, *dur, *streams, *chunks)
	small := &sdk.Request{Model: "m", Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)}
	compare("synthetic", synth{}, viaPlugin, small, *calls, *dur, *conc)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		throughput(viaPlugin, small, *dur, *conc)
		pprof.StopCPUProfile()
		f.Close()
	}
	streamCost(synth{}, viaPlugin, *chunks, *streams)

	// The vLLM plugin against a fake OpenAI server in a process of its own
	// (as a real vLLM is), vs that server called directly.
	srvURL, stopSrv := fakeServer()
	defer stopSrv()
	vllm, err := h.Backend(ctx, inference.Route{Profile: "vllm", Plugin: "vllm", Config: sdk.Config{Endpoint: srvURL + "/v1", Model: "m"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\nvLLM plugin: fake OpenAI server over HTTP, direct vs through the plugin\n")
	compare("http", direct{url: srvURL + "/v1/chat/completions", c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}, vllm, small, *calls, *dur, *conc)
}

// fakeServer starts this binary as the fake OpenAI server and returns its URL.
func fakeServer() (string, func()) {
	exe, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fakeEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		log.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		log.Fatalf("fake server: %v", err)
	}
	return strings.TrimSpace(url), func() { cmd.Process.Kill(); cmd.Wait() }
}

func host(dir string) *inference.Host {
	probe, err := inference.NewHost(inference.HostConfig{Dirs: []string{dir}, HealthInterval: -1})
	if err != nil {
		log.Fatal(err)
	}
	ps, err := probe.Plugins()
	probe.Close()
	if err != nil {
		log.Fatal(err)
	}
	pins := map[string]string{}
	for _, p := range ps {
		pins[p.Name] = p.SHA256
	}
	h, err := inference.NewHost(inference.HostConfig{Dirs: []string{dir}, Pins: pins})
	if err != nil {
		log.Fatal(err)
	}
	return h
}

// direct calls the fake server the way a client without the router would.
type direct struct {
	synth
	url string
	c   *http.Client
}

func (d direct) ChatCompletions(ctx context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(r.Body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return w.Send(sdk.Chunk{Data: b})
}

func latencies(b sdk.Backend, req *sdk.Request, n int) []time.Duration {
	ctx := context.Background()
	out := make([]time.Duration, n)
	for i := range out {
		t0 := time.Now()
		if err := b.ChatCompletions(ctx, req, &discard{}); err != nil {
			log.Fatal(err)
		}
		out[i] = time.Since(t0)
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, p float64) time.Duration { return d[int(float64(len(d)-1)*p)] }

func throughput(b sdk.Backend, req *sdk.Request, dur time.Duration, conc int) float64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := b.ChatCompletions(context.Background(), req, &discard{}); err != nil {
					log.Fatal(err)
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / dur.Seconds()
}

func compare(name string, base, plugin sdk.Backend, req *sdk.Request, calls int, dur time.Duration, conc int) {
	latencies(plugin, req, calls/10) // warm both
	latencies(base, req, calls/10)
	var lb, lp []time.Duration
	// Interleave halves so drift on a shared machine hits both sides.
	for range 2 {
		lb = append(lb, latencies(base, req, calls/2)...)
		lp = append(lp, latencies(plugin, req, calls/2)...)
	}
	slices.Sort(lb)
	slices.Sort(lp)
	fmt.Printf("  %-10s %-9s p50 %9s  p99 %9s\n", name, "base", pct(lb, .5), pct(lb, .99))
	fmt.Printf("  %-10s %-9s p50 %9s  p99 %9s\n", name, "plugin", pct(lp, .5), pct(lp, .99))
	fmt.Printf("  %-10s added     p50 %9s  p99 %9s   (goal: p50 <= 250µs, p99 <= 1ms)\n", name, pct(lp, .5)-pct(lb, .5), pct(lp, .99)-pct(lb, .99))
	tb := throughput(base, req, dur, conc)
	tp := throughput(plugin, req, dur, conc)
	fmt.Printf("  %-10s calls/s   base %8.0f  plugin %8.0f  plugin/base %.3f   (goal: >= 3000/s through a plugin)\n", name, tb, tp, tp/tb)
}

func streamCost(base, plugin sdk.Backend, chunks, n int) {
	req := &sdk.Request{Model: "m", Stream: true, Body: fmt.Appendf(nil, `{"chunks":%d}`, chunks)}
	run := func(b sdk.Backend) time.Duration {
		var all []time.Duration
		for range n {
			d := &discard{}
			t0 := time.Now()
			if err := b.ChatCompletions(context.Background(), req, d); err != nil || d.n != chunks {
				log.Fatalf("stream: %v (%d chunks)", err, d.n)
			}
			all = append(all, time.Since(t0))
		}
		slices.Sort(all)
		return all[len(all)/2]
	}
	run(plugin)
	tb, tp := run(base), run(plugin)
	per := func(d time.Duration) time.Duration { return d / time.Duration(chunks) }
	fmt.Printf("  stream     per chunk base %9s  plugin %9s  added %9s   (goal: <= 20µs per chunk)\n", per(tb), per(tp), per(tp)-per(tb))
}
