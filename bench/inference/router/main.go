// Command router benchmarks the inference router side by side with a
// client calling the backend directly, in the same run: the client goes
// through the egress proxy (as an agent in a sandbox does, over loopback
// to the proxy listener) to inference.local, the router, an in-process
// OpenAI-compatible backend (inferencetest.HTTPBackend, what the vLLM
// plugin does minus the plugin's gRPC hop) and a fake OpenAI server; the
// direct path is the same client to the same fake server. It prints the
// added time to first byte (p50/p99), the added time per chunk over a
// 1,000-chunk stream, and small non-streamed requests per second.
//
//	go run ./bench/inference/router [-n 2000] [-d 5s] [-c 16]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
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
)

type provider struct{ b *inferencetest.HTTPBackend }

func (p provider) Backend(ctx context.Context, r inference.Route) (sdk.Backend, error) {
	return p.b, p.b.Configure(ctx, r.Config)
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench inference router:", err)
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

func run() error {
	short, err := serve(&inferencetest.FakeOpenAI{Chunks: 1, Quiet: true})
	if err != nil {
		return err
	}
	longURL, err := serve(&inferencetest.FakeOpenAI{Chunks: *chunks, Quiet: true})
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	// Every call is audited, as in a sandbox: to a scratch audit log.
	auditFile, err := os.CreateTemp("", "nemoclaw-bench-inference-audit-*.jsonl")
	if err != nil {
		return err
	}
	defer os.Remove(auditFile.Name())
	var px *egress.Proxy
	rt, err := inference.NewRouter(inference.RouterConfig{
		Audit: func(e inference.AuditEvent) {
			px.AuditInference(egress.InferenceEvent{Route: e.Route, Model: e.Model, Method: e.Method, Path: e.Path, Status: e.Status,
				Stream: e.Stream, Latency: e.Latency, TTFB: e.TTFB, PromptTokens: e.Usage.PromptTokens, CompletionTokens: e.Usage.CompletionTokens})
		},
		Routes: []inference.Route{
			{Profile: "short", Plugin: "http", Config: sdk.Config{Endpoint: short + "/v1", Model: "m", Credential: "k"}},
			{Profile: "long", Plugin: "http", Config: sdk.Config{Endpoint: longURL + "/v1", Model: "m", Credential: "k"}},
		},
		Active:   "short",
		Provider: provider{&inferencetest.HTTPBackend{Client: hc}},
	})
	if err != nil {
		return err
	}
	p, err := egress.New(egress.Config{Sandbox: "bench", Policy: &policy.Policy{Version: 1}, Inference: rt, AuditLog: auditFile,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	px = p
	p2, err := egress.New(egress.Config{Sandbox: "bench", Policy: &policy.Policy{Version: 1}, Inference: mustRouter(hc, longURL),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	proxyURL, err := listenProxy(p)
	if err != nil {
		return err
	}
	proxy2URL, err := listenProxy(p2)
	if err != nil {
		return err
	}
	direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	via := func(pu *url.URL) *http.Client {
		return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: 256}}
	}
	routed, routedLong := via(proxyURL), via(proxy2URL)
	streamBody := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	smallBody := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	const inf = "http://inference.local/v1/chat/completions"

	fmt.Printf("inference router vs direct, same run (%d streamed requests, %d streams of %d chunks, %s of small requests at c=%d)\n", *n, *long, *chunks, *dur, *conc)
	// Interleaved so that both paths see the same machine.
	var dT, rT []time.Duration
	for range *n {
		d, err := ttfb(direct, short+"/v1/chat/completions", streamBody)
		if err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		r, err := ttfb(routed, inf, streamBody)
		if err != nil {
			return fmt.Errorf("routed: %w", err)
		}
		dT, rT = append(dT, d), append(rT, r)
	}
	dp50, dp99, rp50, rp99 := pct(dT, 50), pct(dT, 99), pct(rT, 50), pct(rT, 99)
	fmt.Printf("TTFB       direct p50 %8s p99 %8s | routed p50 %8s p99 %8s | added p50 %8s p99 %8s\n", us(dp50), us(dp99), us(rp50), us(rp99), us(rp50-dp50), us(rp99-dp99))

	var dL, rL []time.Duration
	for range *long {
		d, err := whole(direct, longURL+"/v1/chat/completions", streamBody, *chunks)
		if err != nil {
			return fmt.Errorf("direct long: %w", err)
		}
		r, err := whole(routedLong, inf, streamBody, *chunks)
		if err != nil {
			return fmt.Errorf("routed long: %w", err)
		}
		dL, rL = append(dL, d), append(rL, r)
	}
	dm, rm := pct(dL, 50), pct(rL, 50)
	fmt.Printf("stream     direct %8s | routed %8s per %d chunks | added per chunk %s\n", us(dm), us(rm), *chunks, us((rm-dm)/time.Duration(*chunks)))

	dq, err := rps(direct, short+"/v1/chat/completions", smallBody)
	if err != nil {
		return err
	}
	rq, err := rps(routed, inf, smallBody)
	if err != nil {
		return err
	}
	fmt.Printf("small req  direct %8.0f/s | routed %8.0f/s | routed/direct %.2f\n", dq, rq, rq/dq)
	return nil
}

func mustRouter(hc *http.Client, longURL string) *inference.Router {
	rt, err := inference.NewRouter(inference.RouterConfig{
		Routes: []inference.Route{{Profile: "long", Plugin: "http", Config: sdk.Config{Endpoint: longURL + "/v1", Model: "m", Credential: "k"}}},
		Active: "long", Provider: provider{&inferencetest.HTTPBackend{Client: hc}},
	})
	if err != nil {
		panic(err)
	}
	return rt
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
