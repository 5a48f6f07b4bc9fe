// Command router benchmarks the inference router side by side with a
// client calling the backend directly, in the same run: the client goes
// through the egress proxy (as an agent in a sandbox does, over loopback
// to the proxy listener) to inference.local, the router, an in-process
// OpenAI-compatible backend (inferencetest.HTTPBackend, what the vLLM
// plugin does minus the plugin's gRPC hop) and a fake OpenAI server; with
// -plugin-dir, also through nemoclaw's plugin host and the real vLLM
// plugin process (gRPC, AutoMTLS) to the same fake; the direct path is the
// same client to the same fake server. It prints the
// added time to first byte (p50/p99), the added time per chunk over a
// 1,000-chunk stream, and small non-streamed requests per second.
//
//	bench/inference/run.sh [-n 2000] [-d 5s] [-c 16]
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/inference/inferencetest"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

var (
	n      = flag.Int("n", 2000, "sequential streamed requests for the time to first byte")
	long   = flag.Int("long", 30, "1,000-chunk streams per path")
	dur    = flag.Duration("d", 5*time.Second, "duration of the requests/s measurement")
	conc   = flag.Int("c", 16, "concurrent clients for requests/s")
	chunks = flag.Int("chunks", 1000, "chunks of the long stream")
	// pluginDir holds nemoclaw-inference-vllm: with it, a third path goes
	// through nemoclaw's plugin host and that real plugin process.
	pluginDir = flag.String("plugin-dir", "", "directory with nemoclaw-inference-vllm (run.sh builds it): also measure through the real plugin process")
	// cpuProfile profiles this process (client, proxy, router, plugin host
	// and fake servers together); run.sh's PLUGIN_CPUPROFILE profiles the
	// plugin process.
	// plugins names the plugins in -plugin-dir to measure, each a path of
	// its own in the same run (run.sh's BASE_REV adds "vllmbase", the vLLM
	// plugin built at another commit, for before/after figures).
	plugins = flag.String("plugins", "vllm", "comma-separated plugins in -plugin-dir to measure through")
	// fakeProc runs the fake OpenAI servers in a process of their own, as
	// a real backend is: in the bench's own process, the direct and
	// in-process paths never cross a process, and the plugin's call to the
	// fake paid two process wake-ups that the direct path did not.
	fakeProc = flag.Bool("fake-proc", true, "run the fake OpenAI servers in a separate process")
	// serveFake is the child's mode: serve a fake with this many chunks
	// and print its URL.
	serveFake  = flag.Int("serve-fake", 0, "internal: serve a fake OpenAI server with this many chunks, print its URL, run until stdin closes")
	cpuProfile = flag.String("cpuprofile", "", "write this process's CPU profile to the file")
)

type provider struct{ b *inferencetest.HTTPBackend }

func (p provider) Backend(ctx context.Context, r inference.Route) (sdk.Backend, error) {
	return p.b, p.b.Configure(ctx, r.Config)
}

func main() {
	flag.Parse()
	if *serveFake > 0 {
		u, err := serve(&inferencetest.FakeOpenAI{Chunks: *serveFake, Quiet: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench inference router: fake:", err)
			os.Exit(1)
		}
		fmt.Println(u)
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent goes
		return
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench inference router: cpu profile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench inference router:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// serve serves h on a loopback port and returns its base URL.
func serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(l, h) }()
	return "http://" + l.Addr().String(), nil
}

// path is one way from the client to the fake server: its clients for
// the short and the long answers, and the base URLs they call.
type path struct {
	name              string
	short, long       *http.Client
	shortURL, longURL string
}

// routed returns the clients that reach the fake servers through an egress
// proxy and a router whose backends come from prov: one router per fake,
// each audited to a scratch audit log as in a sandbox.
func routed(name string, prov inference.Provider, plugin, short, long string) (path, func(), error) {
	var cleanup []func()
	done := func() {
		for _, f := range cleanup {
			f()
		}
	}
	client := func(endpoint string) (*http.Client, error) {
		auditFile, err := os.CreateTemp("", "nemoclaw-bench-inference-audit-*.jsonl")
		if err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { auditFile.Close(); os.Remove(auditFile.Name()) })
		var px *egress.Proxy
		rt, err := inference.NewRouter(inference.RouterConfig{
			Audit: func(e inference.AuditEvent) {
				px.AuditInference(egress.InferenceEvent{Route: e.Route, Model: e.Model, Method: e.Method, Path: e.Path, Status: e.Status,
					Stream: e.Stream, Latency: e.Latency, TTFB: e.TTFB, PromptTokens: e.Usage.PromptTokens, CompletionTokens: e.Usage.CompletionTokens})
			},
			Routes:   []inference.Route{{Profile: "p", Plugin: plugin, Config: sdk.Config{Endpoint: endpoint + "/v1", Model: "m", Credential: "k", TimeoutSecs: 60}}},
			Active:   "p",
			Provider: prov,
		})
		if err != nil {
			return nil, err
		}
		p, err := egress.New(egress.Config{Sandbox: "bench", Policy: &policy.Policy{Version: 1}, Inference: rt, AuditLog: auditFile,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return nil, err
		}
		px = p
		pu, err := listenProxy(p)
		if err != nil {
			return nil, err
		}
		return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 256}}, nil
	}
	sc, err := client(short)
	if err != nil {
		done()
		return path{}, nil, err
	}
	lc, err := client(long)
	if err != nil {
		done()
		return path{}, nil, err
	}
	const inf = "http://inference.local"
	return path{name: name, short: sc, long: lc, shortURL: inf, longURL: inf}, done, nil
}

// pluginHost starts nemoclaw's plugin host on dir, with the named plugins
// in it pinned to their checksums.
func pluginHost(dir string, names []string) (*inference.Host, error) {
	pins := map[string]string{}
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, inference.BinaryPrefix+name))
		if err != nil {
			return nil, fmt.Errorf("the %s plugin (bench/inference/run.sh builds it): %w", name, err)
		}
		sum := sha256.Sum256(data)
		pins[name] = hex.EncodeToString(sum[:])
	}
	home, err := os.MkdirTemp("", "nemoclaw-bench-home-")
	if err != nil {
		return nil, err
	}
	return inference.NewHost(inference.HostConfig{Home: home, Dirs: []string{dir}, Pins: pins,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// fake serves a fake OpenAI server answering with chunks chunks, in a
// child process when -fake-proc (ended when stop is called).
func fake(chunks int) (u string, stop func(), err error) {
	if !*fakeProc {
		u, err := serve(&inferencetest.FakeOpenAI{Chunks: chunks, Quiet: true})
		return u, func() {}, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(self, "-serve-fake", strconv.Itoa(chunks))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start fake server: %w", err)
	}
	stop = func() { stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("fake server's URL: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

func run() error {
	short, stopShort, err := fake(1)
	if err != nil {
		return err
	}
	defer stopShort()
	longURL, stopLong, err := fake(*chunks)
	if err != nil {
		return err
	}
	defer stopLong()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	paths := []path{{name: "direct", short: direct, long: direct, shortURL: short, longURL: longURL}}
	inproc, done, err := routed("in-process", provider{&inferencetest.HTTPBackend{Client: hc}}, "http", short, longURL)
	if err != nil {
		return err
	}
	defer done()
	paths = append(paths, inproc)
	if *pluginDir != "" {
		names := strings.Split(*plugins, ",")
		h, err := pluginHost(*pluginDir, names)
		if err != nil {
			return err
		}
		defer h.Close()
		for _, name := range names {
			label := "plugin"
			if len(names) > 1 {
				label = name
			}
			viaPlugin, done, err := routed(label, h, name, short, longURL)
			if err != nil {
				return err
			}
			defer done()
			paths = append(paths, viaPlugin)
		}
	}
	streamBody := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	smallBody := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	const chat = "/v1/chat/completions"

	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = p.name
	}
	fmt.Printf("inference router: %s, same run (%d streamed requests, %d streams of %d chunks, %s of small requests at c=%d)\n",
		strings.Join(names, " vs "), *n, *long, *chunks, *dur, *conc)
	// Interleaved so that every path sees the same machine.
	ttfbs := make([][]time.Duration, len(paths))
	for range *n {
		for i, p := range paths {
			d, err := ttfb(p.short, p.shortURL+chat, streamBody)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			ttfbs[i] = append(ttfbs[i], d)
		}
	}
	d50, d99 := pct(ttfbs[0], 50), pct(ttfbs[0], 99)
	fmt.Printf("TTFB       %-10s p50 %8s p99 %8s\n", "direct", us(d50), us(d99))
	for i, p := range paths[1:] {
		r50, r99 := pct(ttfbs[i+1], 50), pct(ttfbs[i+1], 99)
		fmt.Printf("TTFB       %-10s p50 %8s p99 %8s | added p50 %8s p99 %8s\n", p.name, us(r50), us(r99), us(r50-d50), us(r99-d99))
	}

	wholes := make([][]time.Duration, len(paths))
	for range *long {
		for i, p := range paths {
			d, err := whole(p.long, p.longURL+chat, streamBody, *chunks)
			if err != nil {
				return fmt.Errorf("%s long: %w", p.name, err)
			}
			wholes[i] = append(wholes[i], d)
		}
	}
	dm := pct(wholes[0], 50)
	fmt.Printf("stream     %-10s %8s per %d chunks\n", "direct", us(dm), *chunks)
	for i, p := range paths[1:] {
		rm := pct(wholes[i+1], 50)
		fmt.Printf("stream     %-10s %8s per %d chunks | added per chunk %s\n", p.name, us(rm), *chunks, us((rm-dm)/time.Duration(*chunks)))
	}

	var dq float64
	for i, p := range paths {
		q, err := rps(p.short, p.shortURL+chat, smallBody)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if i == 0 {
			dq = q
			fmt.Printf("small req  %-10s %8.0f/s\n", p.name, q)
			continue
		}
		fmt.Printf("small req  %-10s %8.0f/s | /direct %.2f\n", p.name, q, q/dq)
	}
	return nil
}

func listenProxy(p *egress.Proxy) (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() { _ = p.Serve(l) }()
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}

// ttfb is the time to the first response body byte of a streamed call;
// the rest is read and checked.
func ttfb(c *http.Client, u, body string) (time.Duration, error) {
	start := time.Now()
	res, err := c.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	if _, err := br.ReadByte(); err != nil {
		return 0, err
	}
	d := time.Since(start)
	rest, err := io.ReadAll(br)
	if err != nil {
		return 0, err
	}
	if res.StatusCode != 200 || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		return 0, fmt.Errorf("%d %q", res.StatusCode, rest)
	}
	return d, nil
}

// whole is the time to read a whole stream of want content chunks.
func whole(c *http.Client, u, body string, want int) (time.Duration, error) {
	start := time.Now()
	res, err := c.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if got := strings.Count(string(b), `"content":"hi "`); got != want {
		return 0, fmt.Errorf("%d content chunks, want %d", got, want)
	}
	return d, nil
}

// rps runs small non-streamed calls from *conc clients for *dur.
func rps(c *http.Client, u, body string) (float64, error) {
	var count atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				res, err := c.Post(u, "application/json", strings.NewReader(body))
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return 0, e
	}
	return float64(count.Load()) / dur.Seconds(), nil
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d.Nanoseconds())/1e3) }
