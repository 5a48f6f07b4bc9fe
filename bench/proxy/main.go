// Command proxy benchmarks nemoclaw's egress proxy side by side with direct
// connections, tinyproxy and squid in the same run: plain HTTP forward
// proxying with wrk (keep-alive), intercepted HTTPS with a keep-alive Go
// client (wrk cannot speak CONNECT), and the proxy's resident memory with
// 1,000 concurrent connections. It prints requests/s, p50/p99 and ratios.
// A floor row forwards plain HTTP with net/http's server and nothing else
// (no policy, audit or ReverseProxy): what the standard server alone costs.
//
//	go run ./bench/proxy [-d 10s] [-c 32] [-t 2]
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

var (
	mode     = flag.String("mode", "", "internal: origin or proxy (child processes)")
	dur      = flag.Duration("d", 10*time.Second, "duration of each measurement")
	conns    = flag.Int("c", 32, "concurrent keep-alive connections")
	threads  = flag.Int("t", 2, "wrk threads")
	rssConns = flag.Int("rss-conns", 1000, "concurrent connections for the memory measurement")
	plainP   = flag.Int("plain-port", 0, "internal: origin plain port")
	tlsP     = flag.Int("tls-port", 0, "internal: origin TLS port")
	caFile   = flag.String("ca", "", "internal: origin CA file")
	dir      = flag.String("dir", "", "internal: scratch directory")
)

func main() {
	flag.Parse()
	var err error
	switch *mode {
	case "origin":
		err = serveOrigin()
	case "proxy":
		err = serveProxy()
	case "floor":
		err = serveFloor()
	default:
		err = orchestrate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench proxy:", err)
		os.Exit(1)
	}
}

// serveOrigin serves a tiny response over plain HTTP and HTTPS and prints
// "plainPort tlsPort".
func serveOrigin() error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	cert, err := tls.LoadX509KeyPair(filepath.Join(*dir, "origin.pem"), filepath.Join(*dir, "origin.key"))
	if err != nil {
		return err
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(pl, h) }()
	s := &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = s.ServeTLS(tl, "", "") }()
	fmt.Printf("%d %d\n", pl.Addr().(*net.TCPAddr).Port, tl.Addr().(*net.TCPAddr).Port)
	select {}
}

// serveProxy runs nemoclaw's egress proxy with L7 rules and audit logging
// on, allowing the origin, and prints its port; the CA goes to dir/ca.pem.
func serveProxy() error {
	pem, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pol := &policy.Policy{Version: 1, NetworkPolicies: map[string]*policy.NetworkPolicy{
		"origin": {Endpoints: []*policy.Endpoint{
			{Host: "127.0.0.1", Port: *plainP, Protocol: "rest", Rules: []*policy.Rule{{Allow: &policy.Matcher{Method: "GET", Path: "/**"}}},
				DenyRules: []*policy.Matcher{{Method: "*", Path: "/admin/**"}}},
			{Host: "127.0.0.1", Port: *tlsP, Protocol: "rest", TLS: "terminate", Rules: []*policy.Rule{{Allow: &policy.Matcher{Method: "GET", Path: "/**"}}},
				DenyRules: []*policy.Matcher{{Method: "*", Path: "/admin/**"}}},
		}},
	}}
	audit, err := os.Create(filepath.Join(*dir, "audit.jsonl"))
	if err != nil {
		return err
	}
	p, err := egress.New(egress.Config{Sandbox: "bench", Policy: pol, AuditLog: audit, UpstreamRoots: roots,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	caPEM, err := p.CACertPEM()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*dir, "ca.pem"), caPEM, 0o644); err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if f := os.Getenv("NEMOCLAW_BENCH_CPUPROFILE"); f != "" {
		// Profile the first plain-HTTP measurement only.
		out, err := os.Create(f)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			return err
		}
		time.AfterFunc(*dur, func() { pprof.StopCPUProfile(); out.Close() })
	}
	fmt.Printf("%d\n", l.Addr().(*net.TCPAddr).Port)
	return p.Serve(l)
}

// floorName is the row of serveFloor: what net/http's server costs with
// no policy, no audit and no ReverseProxy.
const floorName = "floor: net/http server + bare forward (no policy)"

// serveFloor forwards bodiless absolute-form requests with net/http's
// server and one pooled upstream connection per request in flight, with
// the standard serializer and parser, and nothing else: the lower bound of
// a proxy on the standard server. It prints its port.
func serveFloor() error {
	type upConn struct {
		c  net.Conn
		br *bufio.Reader
		bw *bufio.Writer
	}
	var (
		mu   sync.Mutex
		idle []*upConn
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		var uc *upConn
		if n := len(idle); n > 0 {
			uc, idle = idle[n-1], idle[:n-1]
		}
		mu.Unlock()
		if uc == nil {
			c, err := net.Dial("tcp", r.URL.Host)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			uc = &upConn{c: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c)}
		}
		out := r.Clone(r.Context())
		out.RequestURI, out.Body = "", nil
		if err := out.Write(uc.bw); err != nil || uc.bw.Flush() != nil {
			uc.c.Close()
			http.Error(w, "write upstream", http.StatusBadGateway)
			return
		}
		res, err := http.ReadResponse(uc.br, out)
		if err != nil {
			uc.c.Close()
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, err = io.Copy(w, res.Body)
		res.Body.Close()
		if err != nil || res.Close {
			uc.c.Close()
			return
		}
		mu.Lock()
		idle = append(idle, uc)
		mu.Unlock()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("%d\n", l.Addr().(*net.TCPAddr).Port)
	return http.Serve(l, h)
}

type result struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	note     string
	// cpuPerReq is the proxy process's CPU time (user + system) per
	// request, a measure that a busy machine disturbs less than req/s.
	cpuPerReq time.Duration
}

func orchestrate() error {
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 65536, Max: 65536})
	for _, tool := range []string{"wrk", "tinyproxy"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is required (apt-get install %s)", tool, tool)
		}
	}
	scratch, err := os.MkdirTemp("", "nemoclaw-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	_ = os.Chmod(scratch, 0o755)
	caPEM, err := writeOriginPKI(scratch)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var kids []*exec.Cmd
	defer func() {
		for _, k := range kids {
			_ = k.Process.Kill()
			_, _ = k.Process.Wait()
		}
	}()
	start := func(name string, args ...string) (*exec.Cmd, *bufio.Reader, error) {
		cmd := exec.Command(name, args...)
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, nil, fmt.Errorf("start %s: %w", name, err)
		}
		kids = append(kids, cmd)
		return cmd, bufio.NewReader(out), nil
	}
	_, or, err := start(self, "-mode", "origin", "-dir", scratch)
	if err != nil {
		return err
	}
	line, err := or.ReadString('\n')
	if err != nil {
		return fmt.Errorf("origin: %w", err)
	}
	var plainPort, tlsPort int
	fmt.Sscanf(line, "%d %d", &plainPort, &tlsPort)
	proxy, pr, err := start(self, "-mode", "proxy", "-dir", scratch, "-ca", filepath.Join(scratch, "origin-ca.pem"),
		"-plain-port", strconv.Itoa(plainPort), "-tls-port", strconv.Itoa(tlsPort))
	if err != nil {
		return err
	}
	line, err = pr.ReadString('\n')
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	ourPort, _ := strconv.Atoi(strings.TrimSpace(line))
	tinyPort, err := startTinyproxy(scratch, tlsPort, &kids)
	if err != nil {
		return err
	}
	pids := map[int]int{ourPort: proxy.Process.Pid, tinyPort: kids[len(kids)-1].Process.Pid}
	floor, fr, err := start(self, "-mode", "floor")
	if err != nil {
		return err
	}
	line, err = fr.ReadString('\n')
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	floorPort, _ := strconv.Atoi(strings.TrimSpace(line))
	pids[floorPort] = floor.Process.Pid
	squidPort, squidErr := startSquid(scratch, tlsPort, &kids)
	if squidErr != nil {
		fmt.Printf("squid: not measured: %v\n", squidErr)
	} else {
		pids[squidPort] = kids[len(kids)-1].Process.Pid
	}
	if err := waitPort(ourPort); err != nil {
		return err
	}

	target := fmt.Sprintf("http://127.0.0.1:%d/", plainPort)
	fmt.Printf("plain HTTP, wrk -t%d -c%d -d%s, keep-alive, tiny responses (%s)\n", *threads, *conns, *dur, time.Now().Format(time.RFC3339))
	var plain []result
	r, err := wrkRun("direct", target, 0, *conns, scratch)
	if err != nil {
		return err
	}
	plain = append(plain, r)
	for _, p := range []struct {
		name string
		port int
	}{{"nemoclaw (L7 rules + audit)", ourPort}, {"tinyproxy", tinyPort}, {"squid", squidPort}, {floorName, floorPort}} {
		if p.port == 0 {
			continue
		}
		cpu0 := cpuTime(pids[p.port])
		r, err := wrkRun(p.name, target, p.port, *conns, scratch)
		if err != nil {
			return err
		}
		if n := r.rps * dur.Seconds(); n > 0 {
			r.cpuPerReq = time.Duration(float64(cpuTime(pids[p.port])-cpu0) / n)
		}
		plain = append(plain, r)
	}
	printTable(plain)
	fmt.Println()
	fmt.Printf("added latency at 1 connection (wrk -t1 -c1), plain HTTP\n")
	var single []result
	for _, p := range []struct {
		name string
		port int
	}{{"direct", 0}, {"nemoclaw (L7 rules + audit)", ourPort}, {"tinyproxy", tinyPort}, {"squid", squidPort}} {
		if p.name != "direct" && p.port == 0 {
			continue
		}
		r, err := wrkRunT(p.name, target, p.port, 1, 1, scratch)
		if err != nil {
			return err
		}
		single = append(single, r)
	}
	printTable(single)
	fmt.Println()

	ourCA, err := os.ReadFile(filepath.Join(scratch, "ca.pem"))
	if err != nil {
		return err
	}
	fmt.Printf("HTTPS, Go keep-alive client, %d connections, %s (wrk cannot CONNECT)\n", *conns, *dur)
	tlsTarget := fmt.Sprintf("https://127.0.0.1:%d/", tlsPort)
	var tlsRes []result
	tlsRes = append(tlsRes, goLoad("direct", tlsTarget, 0, caPEM))
	tlsRes = append(tlsRes, goLoad("nemoclaw intercepted (TLS terminated, L7 + audit)", tlsTarget, ourPort, ourCA))
	tlsRes = append(tlsRes, goLoad("tinyproxy CONNECT tunnel (no inspection)", tlsTarget, tinyPort, caPEM))
	if squidPort != 0 {
		tlsRes = append(tlsRes, goLoad("squid CONNECT tunnel (no inspection)", tlsTarget, squidPort, caPEM))
	}
	printTable(tlsRes)
	fmt.Println()

	fmt.Printf("memory: nemoclaw proxy with %d concurrent keep-alive connections (wrk -t2 -c%d -d5s)\n", *rssConns, *rssConns)
	before := rssKB(proxy.Process.Pid, "VmRSS")
	stop := make(chan struct{})
	var peak int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v := rssKB(proxy.Process.Pid, "VmRSS"); v > peak {
				peak = v
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	old := *dur
	*dur = 5 * time.Second
	rr, err := wrkRun("nemoclaw", target, ourPort, *rssConns, scratch)
	*dur = old
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	hwm := rssKB(proxy.Process.Pid, "VmHWM")
	fmt.Printf("  idle RSS %.1f MB, peak RSS under load %.1f MB (VmHWM %.1f MB), %.0f req/s across %d connections; goal < 50 MB\n",
		float64(before)/1024, float64(peak)/1024, float64(hwm)/1024, rr.rps, *rssConns)

	fmt.Println()
	fmt.Println("ratios")
	ours, tiny, direct := plain[1], find(plain, "tinyproxy"), plain[0]
	fmt.Printf("  plain HTTP req/s: nemoclaw / tinyproxy = %.2fx (goal >= 3x)\n", ours.rps/tiny.rps)
	if sq := find(plain, "squid"); sq.rps > 0 {
		fmt.Printf("  plain HTTP req/s: nemoclaw / squid = %.2fx (goal >= 1.5x)\n", ours.rps/sq.rps)
	}
	fmt.Printf("  plain HTTP req/s: nemoclaw / direct = %.2fx\n", ours.rps/direct.rps)
	if sq := find(plain, "squid"); sq.cpuPerReq > 0 && ours.cpuPerReq > 0 {
		fmt.Printf("  plain HTTP CPU per request: squid / nemoclaw = %.2fx (requests per CPU-second, the ratio a busy machine disturbs least)\n", float64(sq.cpuPerReq)/float64(ours.cpuPerReq))
		if fl := find(plain, floorName); fl.cpuPerReq > 0 {
			fmt.Printf("  plain HTTP CPU per request: squid / floor = %.2fx (the most the standard server allows)\n", float64(sq.cpuPerReq)/float64(fl.cpuPerReq))
		}
	}
	fmt.Printf("  p50 added latency at c%d: %s; at c1: %s (goal < 0.5ms)\n", *conns, ours.p50-direct.p50, single[1].p50-single[0].p50)
	fmt.Printf("  intercepted HTTPS req/s: nemoclaw / tinyproxy tunnel = %.2fx, / direct = %.2fx\n", tlsRes[1].rps/tlsRes[2].rps, tlsRes[1].rps/tlsRes[0].rps)
	return nil
}

func find(rs []result, name string) result {
	for _, r := range rs {
		if r.name == name {
			return r
		}
	}
	return result{}
}

func printTable(rs []result) {
	fmt.Printf("  %-52s %12s %10s %10s %12s\n", "", "req/s", "p50", "p99", "CPU/req")
	for _, r := range rs {
		cpu := "-"
		if r.cpuPerReq > 0 {
			cpu = fmt.Sprintf("%.1fus", float64(r.cpuPerReq)/float64(time.Microsecond))
		}
		fmt.Printf("  %-52s %12.0f %10s %10s %12s %s\n", r.name, r.rps, fmtDur(r.p50), fmtDur(r.p99), cpu, r.note)
	}
}

// cpuTime is the user + system CPU time pid has used (all its threads),
// from /proc/PID/stat in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}

func wrkRun(name, target string, proxyPort, c int, scratch string) (result, error) {
	t := *threads
	if c < t {
		t = c
	}
	return wrkRunT(name, target, proxyPort, t, c, scratch)
}

var (
	reqRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

// wrkRunT runs wrk against target directly or, with proxyPort, as a forward
// proxy request (absolute-form request line, set by a Lua script).
func wrkRunT(name, target string, proxyPort, t, c int, scratch string) (result, error) {
	args := []string{"-t" + strconv.Itoa(t), "-c" + strconv.Itoa(c), "-d" + dur.String(), "--latency"}
	url := target
	if proxyPort != 0 {
		u, _ := neturlParse(target)
		script := filepath.Join(scratch, "proxy.lua")
		lua := fmt.Sprintf("wrk.path = %q\nwrk.headers[\"Host\"] = %q\n", target, u)
		if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
			return result{}, err
		}
		args = append(args, "-s", script)
		url = fmt.Sprintf("http://127.0.0.1:%d/", proxyPort)
	}
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %v\n%s", name, err, out)
	}
	s := string(out)
	r := result{name: name}
	if m := reqRE.FindStringSubmatch(s); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range pctRE.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if m := errRE.FindAllString(s, -1); len(m) > 0 {
		r.note = strings.Join(m, "; ")
	}
	return r, nil
}

func neturlParse(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}

// goLoad drives target with *conns keep-alive clients for *dur, through an
// HTTP proxy (CONNECT) when proxyPort is set.
func goLoad(name, target string, proxyPort int, ca []byte) result {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	startAt := time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}
			if proxyPort != 0 {
				pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", proxyPort))
				tr.Proxy = http.ProxyURL(pu)
			}
			c := &http.Client{Transport: tr}
			local := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil {
				t0 := time.Now()
				resp, err := c.Get(target)
				if err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						errs++
						mu.Unlock()
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					mu.Lock()
					errs++
					mu.Unlock()
					continue
				}
				local = append(local, time.Since(t0))
			}
			tr.CloseIdleConnections()
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(startAt)
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	r := result{name: name, rps: float64(len(lats)) / el.Seconds()}
	if n := len(lats); n > 0 {
		r.p50, r.p99 = lats[n/2], lats[n*99/100]
	}
	if errs > 0 {
		r.note = fmt.Sprintf("errors: %d", errs)
	}
	return r
}

func rssKB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			if len(f) > 1 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return 0
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(port int) error {
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on 127.0.0.1:%d", port)
}

func startTinyproxy(scratch string, tlsPort int, kids *[]*exec.Cmd) (int, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	conf := filepath.Join(scratch, "tinyproxy.conf")
	c := fmt.Sprintf("Port %d\nListen 127.0.0.1\nTimeout 600\nMaxClients 4096\nLogLevel Critical\nDisableViaHeader Yes\nAllow 127.0.0.1\nConnectPort %d\nPidFile \"%s/tinyproxy.pid\"\n", port, tlsPort, scratch)
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command("tinyproxy", "-d", "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("tinyproxy: %w", err)
	}
	*kids = append(*kids, cmd)
	return port, waitPort(port)
}

// startSquid runs squid with ACLs, no cache and no access log.
func startSquid(scratch string, tlsPort int, kids *[]*exec.Cmd) (int, error) {
	bin, err := exec.LookPath("squid")
	if err != nil {
		return 0, fmt.Errorf("squid is not installed")
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	conf := filepath.Join(scratch, "squid.conf")
	c := fmt.Sprintf(`http_port 127.0.0.1:%d
acl local src 127.0.0.1
acl tls_port port %d
acl CONNECT method CONNECT
http_access deny CONNECT !tls_port
http_access allow local
http_access deny all
cache deny all
access_log none
cache_store_log none
cache_log %s/squid-cache.log
pid_filename %s/squid.pid
coredump_dir %s
max_filedescriptors 65536
shutdown_lifetime 0 seconds
via off
forwarded_for delete
`, port, tlsPort, scratch, scratch, scratch)
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "-N", "-f", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("squid: %w", err)
	}
	*kids = append(*kids, cmd)
	if err := waitPort(port); err != nil {
		log, _ := os.ReadFile(filepath.Join(scratch, "squid-cache.log"))
		return 0, fmt.Errorf("squid did not start: %v\n%s", err, log)
	}
	return port, nil
}

// writeOriginPKI writes a CA and the origin's certificate into dir.
func writeOriginPKI(dir string) ([]byte, error) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench origin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lt := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, lt, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"origin.pem":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"origin.key":    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		"origin-ca.pem": caPEM,
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}
