package inference

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

// built holds the plugin binaries TestMain builds once: echo (the guide's
// example) and testplugin (pid, environment, held streams).
var built = map[string]string{}

// childHostEnv makes the test binary a host that starts testplugin from
// the plugin directory it names, prints the plugin's pid and waits to be
// killed (TestNoPluginOutlivesHost).
const childHostEnv = "NEMOCLAW_TEST_CHILD_HOST"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childHostEnv); dir != "" {
		childHost(dir)
		return
	}
	tmp, err := os.MkdirTemp("", "inference-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, pkg := range map[string]string{"echo": "../../plugins/examples/echo", "testplugin": "./testdata/testplugin"} {
		out := filepath.Join(tmp, BinaryPrefix+name)
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, b)
			os.RemoveAll(tmp)
			os.Exit(1)
		}
		built[name] = out
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func childHost(dir string) {
	h, err := NewHost(HostConfig{Dirs: []string{dir}, Pins: map[string]string{"testplugin": os.Getenv("PIN")}})
	if err == nil {
		var b sdk.Backend
		if b, err = h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin"}); err == nil {
			var pid int
			if pid, err = pluginPid(b); err == nil {
				fmt.Println(pid)
				select {}
			}
		}
	}
	fmt.Println("error:", err)
	os.Exit(1)
}

// install copies the built plugin name into a fresh plugin directory.
func install(t *testing.T, name string) (dir, path string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, BinaryPrefix+name)
	copyFile(t, built[name], path)
	return dir, path
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func newHost(t *testing.T, cfg HostConfig) *Host {
	t.Helper()
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func trusted(t *testing.T, name string) (*Host, sdk.Backend) {
	t.Helper()
	dir, _ := install(t, name)
	h := newHost(t, HostConfig{Dirs: []string{dir}})
	if _, err := h.Trust(name); err != nil {
		t.Fatal(err)
	}
	b, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: name, Config: sdk.Config{Model: "m", Credential: "key-123"}})
	if err != nil {
		t.Fatal(err)
	}
	return h, b
}

func pluginPid(b sdk.Backend) (int, error) {
	ms, err := b.ListModels(context.Background())
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if s, ok := strings.CutPrefix(m.ID, "pid="); ok {
			return strconv.Atoi(s)
		}
	}
	return 0, errors.New("plugin reported no pid")
}

// TestEchoPluginThroughHost is the guide's path: the example plugin,
// trusted into the lock, launched and called through the host.
func TestEchoPluginThroughHost(t *testing.T) {
	h, b := trusted(t, "echo")
	chunks, err := sdktest.Chat(context.Background(), b, "m", false, `{"model":"m","messages":[{"role":"user","content":"hello"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 1 || !strings.Contains(string(chunks[0].Data), `"content":"echo: hello"`) {
		t.Fatalf("chunks = %+v", chunks)
	}
	d, err := h.Describe(context.Background(), "echo")
	if err != nil || d.Name != "echo" || !d.Has(sdk.CapChat) || d.Has(sdk.CapEmbeddings) {
		t.Fatalf("Describe = %+v, %v", d, err)
	}
	var se *sdk.Error
	if _, err := b.Embeddings(context.Background(), &sdk.Request{Body: []byte(`{}`)}); !errors.As(err, &se) || se.Status != 501 {
		t.Fatalf("Embeddings on echo = %v, want a 501 *sdk.Error", err)
	}
	ps, err := h.Plugins()
	if err != nil || len(ps) != 1 || !ps[0].Trusted() || ps[0].SHA256 == "" || ps[0].PinSource != h.lockPath() {
		t.Fatalf("Plugins = %+v, %v", ps, err)
	}
}

// TestSkipHostEnv: the plugin starts with none of the host's environment;
// its one secret is the credential Configure sent.
func TestSkipHostEnv(t *testing.T) {
	t.Setenv("NEMOCLAW_TEST_HOST_SECRET", "must-not-leak")
	_, b := trusted(t, "testplugin")
	ms, err := b.ListModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	cred := ""
	for _, m := range ms {
		if s, ok := strings.CutPrefix(m.ID, "env="); ok {
			env = append(env, s)
		}
		if s, ok := strings.CutPrefix(m.ID, "credential="); ok {
			cred = s
		}
	}
	for _, e := range env {
		// go-plugin's own handshake variables are all the plugin may see.
		if !strings.HasPrefix(e, "PLUGIN_") && e != sdk.Handshake().MagicCookieKey {
			t.Errorf("plugin sees host variable %s (all: %v)", e, env)
		}
	}
	if cred != "key-123" {
		t.Errorf("plugin's credential = %q, want the route's", cred)
	}
}

// TestDiscoveryRefusals: what discovery refuses to launch, and that each
// refusal says which rule decided.
func TestDiscoveryRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir, path string, cfg *HostConfig)
		want    error
		wantMsg string
	}{
		{"unpinned", func(*testing.T, string, string, *HostConfig) {}, ErrUntrusted, "--trust testplugin"},
		{"world-writable dir", func(t *testing.T, dir, _ string, _ *HostConfig) { chmod(t, dir, 0o777) }, ErrUnsafePath, "writable by group or others"},
		{"group-writable file", func(t *testing.T, _, path string, _ *HostConfig) { chmod(t, path, 0o775) }, ErrUnsafePath, "chmod go-w"},
		{"writable parent", func(t *testing.T, dir, _ string, _ *HostConfig) { chmod(t, filepath.Dir(dir), 0o777) }, ErrUnsafePath, "above plugin directory"},
		{"symlink out", func(t *testing.T, _, path string, _ *HostConfig) {
			other := filepath.Join(t.TempDir(), "elsewhere")
			copyFile(t, built["testplugin"], other)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, path); err != nil {
				t.Fatal(err)
			}
		}, ErrUnsafePath, "outside"},
		{"not executable", func(t *testing.T, _, path string, _ *HostConfig) { chmod(t, path, 0o644) }, ErrUnsafePath, "not executable"},
		{"checksum mismatch (profile pin)", func(_ *testing.T, _, _ string, cfg *HostConfig) {
			cfg.Pins = map[string]string{"testplugin": strings.Repeat("ab", 32)}
		}, ErrChecksum, "profile pins"},
		// The profile's pin wins over the lock: --trust would not help.
		{"checksum mismatch (profile pin) says to edit the profile", func(_ *testing.T, _, _ string, cfg *HostConfig) {
			cfg.Pins = map[string]string{"testplugin": strings.Repeat("ab", 32)}
		}, ErrChecksum, "set the profile's sha256 to"},
		{"checksum mismatch (binary replaced after trust)", func(t *testing.T, dir, path string, cfg *HostConfig) {
			h := newHost(t, HostConfig{Dirs: []string{dir}, Home: cfg.Home})
			if _, err := h.Trust("testplugin"); err != nil {
				t.Fatal(err)
			}
			copyFile(t, built["echo"], path+".new")
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, ErrChecksum, "plugins.lock pins"},
		{"world-writable lock", func(t *testing.T, dir, _ string, cfg *HostConfig) {
			h := newHost(t, HostConfig{Dirs: []string{dir}, Home: cfg.Home})
			if _, err := h.Trust("testplugin"); err != nil {
				t.Fatal(err)
			}
			chmod(t, filepath.Join(cfg.Home, LockFileName), 0o666)
		}, ErrUnsafePath, "plugins lock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := install(t, "testplugin")
			cfg := HostConfig{Dirs: []string{dir}, Home: t.TempDir()}
			tc.setup(t, dir, path, &cfg)
			h := newHost(t, cfg)
			_, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin"})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Backend = %v; want %v mentioning %q", err, tc.want, tc.wantMsg)
			}
			ps, err := h.Plugins()
			if err != nil || len(ps) != 1 || ps[0].Trusted() {
				t.Fatalf("Plugins = %+v, %v; want one refused plugin", ps, err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestPluginNotFound names the directories searched.
func TestPluginNotFound(t *testing.T) {
	dir, _ := install(t, "echo")
	h := newHost(t, HostConfig{Dirs: []string{dir}})
	_, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "nvidia"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Backend = %v; want ErrNotFound naming %s", err, dir)
	}
	if _, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "../x"}); err == nil {
		t.Fatal("a plugin name with a path was accepted")
	}
}

// TestPluginKilledMidStream: a plugin that dies mid-stream ends that
// response with a typed error (after the chunks already sent), and the next
// request is served by a restarted plugin.
func TestPluginKilledMidStream(t *testing.T) {
	_, b := trusted(t, "testplugin")
	pid, err := pluginPid(b)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan sdk.Chunk, 16)
	w := writer(func(c sdk.Chunk) error {
		got <- c
		return nil
	})
	done := make(chan error, 1)
	go func() {
		done <- b.ChatCompletions(context.Background(), &sdk.Request{Stream: true, Body: []byte(`{"chunks":3,"hold":true}`)}, w)
	}()
	for i := 0; i < 3; i++ {
		if c := <-got; string(c.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("chunk %d = %s", i, c.Data)
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var se *sdk.Error
	if !errors.Is(err, ErrPluginExited) || !errors.As(err, &se) || se.Status != 502 {
		t.Fatalf("stream after kill = %v; want ErrPluginExited holding a 502 *sdk.Error", err)
	}
	pid2, err := pluginPid(b)
	if err != nil {
		t.Fatalf("request after the kill: %v", err)
	}
	if pid2 == pid {
		t.Fatalf("request after the kill served by pid %d, the killed one", pid2)
	}
	chunks, err := sdktest.Chat(context.Background(), b, "m", true, `{"chunks":2}`)
	if err != nil || len(chunks) != 2 {
		t.Fatalf("stream on the restarted plugin = %d chunks, %v", len(chunks), err)
	}
}

type writer func(sdk.Chunk) error

func (f writer) Send(c sdk.Chunk) error { return f(c) }

// TestRestartAfterIdleDeath: a plugin that died while idle is noticed and
// replaced.
func TestRestartAfterIdleDeath(t *testing.T) {
	_, b := trusted(t, "testplugin")
	pid, err := pluginPid(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The first call may meet the dead process before go-plugin noticed
	// the exit: then it fails cleanly and the second is served.
	pid2, err := pluginPid(b)
	if err != nil {
		if !errors.Is(err, ErrPluginExited) {
			t.Fatalf("first call after the kill = %v; want success or ErrPluginExited", err)
		}
		pid2, err = pluginPid(b)
	}
	if err != nil || pid2 == pid {
		t.Fatalf("after the kill: pid %d (was %d), %v", pid2, pid, err)
	}
}

// TestNoPluginOutlivesHost: a host killed with SIGKILL (no cleanup runs)
// takes its plugins with it.
func TestNoPluginOutlivesHost(t *testing.T) {
	dir, path := install(t, "testplugin")
	p := Plugin{Name: "testplugin", Dir: dir, Path: path}
	new(Host).vet(&p, &lockFile{})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childHostEnv+"="+dir, "PIN="+p.SHA256)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("child host: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("child host said %q", line)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("plugin pid %d not running before the host was killed: %v", pid, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	cmd.Wait()
	// Liveness bound, not a timing assertion: the kernel delivers the
	// parent-death signal at once; the loop only waits for the reaping.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if !alive(pid) {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("plugin pid %d outlived its host", pid)
		}
	}
}

// alive reports whether pid runs (a zombie, dead but not yet reaped by
// init, counts as gone).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestCloseStopsPlugins: Close kills every plugin it started.
func TestCloseStopsPlugins(t *testing.T) {
	h, b := trusted(t, "testplugin")
	pid, err := pluginPid(b)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin pid %d runs after Close", pid)
		}
	}
	if _, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin"}); err == nil {
		t.Fatal("Backend after Close succeeded")
	}
}

// TestBackendIsStable: Backend returns the same handle for a route every
// time, so that the router describes a plugin once, not on every call (a
// gRPC round trip that cost ~0.7 ms of time to first byte per call).
func TestBackendIsStable(t *testing.T) {
	h, b := trusted(t, "testplugin")
	b2, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin", Config: sdk.Config{Model: "m", Credential: "key-123"}})
	if err != nil {
		t.Fatal(err)
	}
	if b != b2 {
		t.Fatal("two Backend calls for one route returned two handles")
	}
	b3, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin", Config: sdk.Config{Model: "other", Credential: "key-123"}})
	if err != nil {
		t.Fatal(err)
	}
	if b3 == b {
		t.Fatal("two routes share a handle")
	}
}

// TestCloseIsGraceful: Close asks each plugin to exit and it does; it is
// not SIGKILLed by its parent-death signal, which fires as soon as the
// launcher thread ends (and logged an ERROR at the end of every
// foreground run that made an inference call).
func TestCloseIsGraceful(t *testing.T) {
	dir, _ := install(t, "testplugin")
	var buf testutil.Buffer
	h := newHost(t, HostConfig{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := h.Trust("testplugin"); err != nil {
		t.Fatal(err)
	}
	b, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin", Config: sdk.Config{Model: "m"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pluginPid(b); err != nil {
		t.Fatal(err)
	}
	h.Close()
	if log := buf.String(); !strings.Contains(log, `msg="plugin process exited"`) || strings.Contains(log, "signal: killed") {
		t.Fatalf("the plugin did not exit on its own at Close:\n%s", log)
	}
}

// TestRoutesGetTheirOwnProcess: two routes on one plugin with different
// credentials run in two processes; the same route twice shares one.
func TestRoutesGetTheirOwnProcess(t *testing.T) {
	h, b1 := trusted(t, "testplugin")
	b2, err := h.Backend(context.Background(), Route{Profile: "q", Plugin: "testplugin", Config: sdk.Config{Model: "m", Credential: "other-key"}})
	if err != nil {
		t.Fatal(err)
	}
	b3, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin", Config: sdk.Config{Model: "m", Credential: "key-123"}})
	if err != nil {
		t.Fatal(err)
	}
	p1, _ := pluginPid(b1)
	p2, _ := pluginPid(b2)
	p3, _ := pluginPid(b3)
	if p1 == 0 || p1 == p2 || p1 != p3 {
		t.Fatalf("pids: route p %d, route q %d, route p again %d", p1, p2, p3)
	}
}

func TestPluginFor(t *testing.T) {
	tests := []struct {
		providerType, plugin, want string
		wantErr                    bool
	}{
		{"nvidia", "", "nvidia", false},
		{"nim", "", "nvidia", false},
		{"openai", "", "vllm", false},
		{"vllm", "", "vllm", false},
		{"ollama", "", "ollama", false},
		{"custom", "echo", "echo", false},
		{"custom", "nemoclaw-inference-echo", "echo", false},
		{"openai", "echo", "echo", false},
		{"anthropic", "", "", true},
		{"", "../../bin/sh", "", true},
		{"", "Echo", "", true},
	}
	for _, tc := range tests {
		got, err := PluginFor(tc.providerType, tc.plugin)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("PluginFor(%q, %q) = %q, %v; want %q (error %v)", tc.providerType, tc.plugin, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestLockFileInvalid: a lock that cannot be trusted refuses every plugin
// with the reason.
func TestLockFileInvalid(t *testing.T) {
	ents, err := os.ReadDir("testdata/locks")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			home := t.TempDir()
			data, err := os.ReadFile(filepath.Join("testdata/locks", e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, LockFileName), data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readLock(filepath.Join(home, LockFileName)); err == nil {
				t.Fatalf("lock %s was accepted", e.Name())
			} else if !strings.Contains(err.Error(), LockFileName) {
				t.Fatalf("error %v does not name the lock", err)
			}
		})
	}
}

// TestRestartBackoff: a plugin that keeps failing to start is not started
// again on every request: after the second failure in a row requests are
// refused until the backoff has passed, saying why.
func TestRestartBackoff(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A program that is no plugin: it exits before the handshake.
	copyFile(t, "/bin/true", filepath.Join(dir, BinaryPrefix+"broken"))
	h := newHost(t, HostConfig{Dirs: []string{dir}, RestartBackoff: time.Hour})
	if _, err := h.Trust("broken"); err != nil {
		t.Fatal(err)
	}
	r := Route{Profile: "p", Plugin: "broken"}
	for i := 0; i < 2; i++ {
		if _, err := h.Backend(context.Background(), r); err == nil || !strings.Contains(err.Error(), "start plugin broken") {
			t.Fatalf("start %d = %v; want a start failure", i+1, err)
		}
	}
	_, err := h.Backend(context.Background(), r)
	var se *sdk.Error
	if !errors.As(err, &se) || se.Status != 503 || !strings.Contains(se.Message, "failed 2 times in a row") || !strings.Contains(se.Message, "next start in") {
		t.Fatalf("third request = %v; want a 503 naming the backoff", err)
	}
}

func TestNamesAndPins(t *testing.T) {
	for s, want := range map[string]bool{"echo": true, "a": true, "nim-local_2": true, strings.Repeat("a", 63): true,
		"": false, "-x": false, "_x": false, "Echo": false, "a/b": false, "..": false, "a b": false, strings.Repeat("a", 64): false} {
		if validName(s) != want {
			t.Errorf("validName(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{strings.Repeat("0a", 32): true, strings.Repeat("0A", 32): false, strings.Repeat("0a", 31): false, strings.Repeat("g", 64): false} {
		if isSHA256Hex(s) != want {
			t.Errorf("isSHA256Hex(%q) = %v", s, !want)
		}
	}
}

// TestHungPluginReplaced: a plugin that stops answering (SIGSTOP) fails its
// health check and is killed; the call stuck in it ends with
// ErrPluginExited and the next call is served by a new process.
func TestHungPluginReplaced(t *testing.T) {
	dir, _ := install(t, "testplugin")
	h := newHost(t, HostConfig{Dirs: []string{dir}, HealthInterval: 50 * time.Millisecond, HealthTimeout: 200 * time.Millisecond})
	if _, err := h.Trust("testplugin"); err != nil {
		t.Fatal(err)
	}
	b, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin"})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := pluginPid(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	// kill returns before every thread of the target has stopped; a call
	// made now could still be answered. Wait for the stopped state.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'T' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin %d did not stop: %s", pid, st)
		}
	}
	if _, err := pluginPid(b); !errors.Is(err, ErrPluginExited) {
		t.Fatalf("call into the stopped plugin = %v; want ErrPluginExited", err)
	}
	pid2, err := pluginPid(b)
	if err != nil || pid2 == pid {
		t.Fatalf("after the health check: pid %d (was %d), %v", pid2, pid, err)
	}
}

// TestPluginLogs: a plugin's sdk.Logger lines reach the host's logger with
// their level, message and fields; a stderr line that would panic
// go-plugin's own parser is logged as text and the host lives on.
func TestPluginLogs(t *testing.T) {
	dir, _ := install(t, "testplugin")
	var buf testutil.Buffer
	h := newHost(t, HostConfig{Dirs: []string{dir}, Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if _, err := h.Trust("testplugin"); err != nil {
		t.Fatal(err)
	}
	b, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin", Config: sdk.Config{Model: "model-7"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pluginPid(b); err != nil {
		t.Fatal(err)
	}
	want := []string{`level=WARN msg=configured plugin=testplugin model=model-7`, `msg="{\"@message\": 1,`}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		log := buf.String()
		if strings.Contains(log, want[0]) && strings.Contains(log, want[1]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host log lacks %q:\n%s", want, log)
		}
	}
}

// TestIdleStop: a route's plugin unused for IdleStop is stopped; a handle
// kept from before still works and gets a new process.
func TestIdleStop(t *testing.T) {
	dir, _ := install(t, "testplugin")
	h := newHost(t, HostConfig{Dirs: []string{dir}, HealthInterval: 20 * time.Millisecond, IdleStop: 100 * time.Millisecond})
	if _, err := h.Trust("testplugin"); err != nil {
		t.Fatal(err)
	}
	b, err := h.Backend(context.Background(), Route{Profile: "p", Plugin: "testplugin"})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := pluginPid(b)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); alive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("idle plugin pid %d still runs", pid)
		}
	}
	pid2, err := pluginPid(b)
	if err != nil || pid2 == pid {
		t.Fatalf("after the idle stop: pid %d (was %d), %v", pid2, pid, err)
	}
}

// TestSealedCopy: what the host executes is a copy whose bytes cannot
// change after they were hashed (F_SEAL_WRITE, _GROW, _SHRINK, _SEAL).
func TestSealedCopy(t *testing.T) {
	mf, sum, err := sealedCopy(built["echo"], "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	p := Plugin{Name: "echo", Dir: filepath.Dir(built["echo"]), Path: built["echo"]}
	new(Host).vet(&p, &lockFile{})
	if sum != p.SHA256 {
		t.Fatalf("memfd hash %s, file hash %s", sum, p.SHA256)
	}
	if _, err := mf.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("wrote into the sealed copy")
	}
	if err := mf.Truncate(1); err == nil {
		t.Fatal("shrank the sealed copy")
	}
	if _, err := unix.FcntlInt(mf.Fd(), unix.F_ADD_SEALS, 0); err == nil {
		// F_SEAL_SEAL: no seal can be added or removed any more.
		t.Fatal("the seals can still be changed")
	}
}
