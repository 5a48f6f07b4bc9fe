package supervisor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// clientHelperEnv makes the test binary a control client of the socket it
// names (run in another pid namespace by TestControlPeerOtherPidNS).
const clientHelperEnv = "NEMOCLAW_SUPERVISOR_TEST_CLIENT"

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	if path := os.Getenv(clientHelperEnv); path != "" {
		c := &Client{egress.Client{Path: path, Timeout: 10 * time.Second}}
		if _, err := c.Status(context.Background()); err != nil {
			os.Stdout.WriteString("refused: " + err.Error() + "\n")
			os.Exit(0)
		}
		os.Stdout.WriteString("served\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testPolicy() *policy.Policy {
	return &policy.Policy{
		Version: 1,
		Filesystem: &policy.FilesystemPolicy{
			IncludeWorkdir: true,
			ReadOnly:       []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc"},
			ReadWrite:      []string{"/tmp"},
		},
		Landlock: &policy.LandlockPolicy{Compatibility: policy.BestEffort},
		Process:  &policy.ProcessPolicy{RunAsUser: "sandbox", RunAsGroup: "sandbox"},
	}
}

func needKernel(t *testing.T) {
	t.Helper()
	f := sandbox.Probe()
	if !f.Seccomp || !f.NetNS || f.LandlockABI == 0 {
		testutil.SkipOrFail(t, "the kernel lacks seccomp filters, network namespaces or Landlock")
	}
	if !f.Root && !f.UnprivilegedUserNS {
		testutil.SkipOrFail(t, "not root and unprivileged user namespaces are disabled")
	}
}

// start runs a supervisor for cmd under a new home and waits for it to be
// ready.
func start(t *testing.T, cfg Config) *Supervisor {
	t.Helper()
	needKernel(t)
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	if cfg.Policy == nil {
		cfg.Policy = testPolicy()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		_ = s.Close()
		t.Fatal(err)
	}
	<-s.Ready()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestSupervisorLifecycle runs a detached-style sandbox through the whole
// API: the record and control socket appear, status answers over the
// socket, stop ends the agent, Close records the end, Destroy leaves
// nothing.
func TestSupervisorLifecycle(t *testing.T) {
	home := t.TempDir()
	s := start(t, Config{Name: "life", Home: home, Command: []string{"sleep", "60"}, Detached: true, Blueprint: "embedded:default", BlueprintVersion: "1.2.3"})
	ctx := context.Background()
	in, err := Inspect(ctx, home, "life", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if in.State != StateRunning || in.Pid != s.Sandbox().Pid() || in.SupervisorPid != os.Getpid() || in.Generation != 1 || in.Blueprint != "embedded:default" || in.Version != "1.2.3" || in.Problem != "" {
		t.Fatalf("running sandbox inspected as %+v", in)
	}
	st, err := os.Stat(filepath.Join(home, "sandboxes", "life", ControlSocket))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v", st, err)
	}
	c := NewClient(home, "life")
	r, err := c.Status(ctx)
	if err != nil || r.V != APIVersion || r.Info == nil || r.Info.Name != "life" || r.Info.Pending != 0 {
		t.Fatalf("status: %+v %v", r, err)
	}
	if err := Destroy(ctx, DestroyConfig{Home: home, Name: "life"}); err == nil || !strings.Contains(err.Error(), "is running") {
		t.Fatalf("destroy of a running sandbox without force: %v", err)
	}
	if err := c.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, err := s.Wait(); err != nil || code != 128+15 {
		t.Fatalf("stopped agent: exit %d, %v (want 143: SIGTERM)", code, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	in, err = Inspect(ctx, home, "life", time.Second)
	if err != nil || in.State != StateStopped || in.ExitCode == nil || *in.ExitCode != 143 || in.Ended.IsZero() {
		t.Fatalf("after stop: %+v %v", in, err)
	}
	if _, err := os.Stat(filepath.Join(in.Dir, ControlSocket)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("control socket left after the run: %v", err)
	}
	if err := Destroy(ctx, DestroyConfig{Home: home, Name: "life"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(in.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory left after destroy: %v", err)
	}
}

// TestStopTimeoutKills: an agent that ignores SIGTERM is killed once the
// stop request's timeout has passed.
func TestStopTimeoutKills(t *testing.T) {
	s := start(t, Config{Name: "stubborn", Command: []string{"sh", "-c", "trap '' TERM; echo ready; sleep 60 & wait; sleep 60"}, Detached: true, StopTimeout: -1})
	// Stopped once the trap is set: a SIGTERM before it ends sh at once.
	for {
		if b, _ := os.ReadFile(filepath.Join(s.Dir(), AgentLogFile)); strings.Contains(string(b), "ready") {
			break
		}
		select {
		case <-s.Sandbox().Done():
			t.Fatal("the agent ended before it was ready")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := s.Stop(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if code, err := s.Wait(); err != nil || code != 128+9 {
		t.Fatalf("exit %d, %v (want 137: killed after the stop timeout)", code, err)
	}
}

// TestQuickRunLeavesNothing: a foreground run that logged nothing removes
// its record and directory, as runs did before the supervisor had one.
func TestQuickRunLeavesNothing(t *testing.T) {
	home := t.TempDir()
	s := start(t, Config{Name: "quick", Home: home, Command: []string{"true"}})
	if code, err := s.Wait(); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "sandboxes", "quick")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a quick run left its directory: %v", err)
	}
}

// TestControlAPIRefusals: a newer API version, an exec sent without its
// files and an unknown operation are refused with a reason.
func TestControlAPIRefusals(t *testing.T) {
	home := t.TempDir()
	start(t, Config{Name: "api", Home: home, Command: []string{"sleep", "60"}, Detached: true})
	c := NewClient(home, "api")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"exec without files", Request{ControlRequest: egress.ControlRequest{Op: OpExec}}, "send it with its files"},
		{"unknown op", Request{ControlRequest: egress.ControlRequest{Op: "format-disk"}}, `unknown operation "format-disk"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Call(ctx, tc.req)
			var ce *egress.ControlError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a ControlError with %q", err, tc.want)
			}
		})
	}
	// A client from the future: Call stamps APIVersion, so the check is
	// exercised on the server side directly.
	s := &Supervisor{cfg: Config{Name: "api"}}
	if r := s.control(Request{V: APIVersion + 1, ControlRequest: egress.ControlRequest{Op: egress.OpStatus}}); r.OK || !strings.Contains(r.Error, "API version 2 requested") {
		t.Fatalf("newer version: %+v", r)
	}
	// The proxy's own client (no "v") still speaks to the supervisor.
	if _, err := c.Client.Pending(ctx, 0); err != nil {
		t.Fatalf("egress client on the supervisor's socket: %v", err)
	}
}

// TestControlPeerOtherPidNS: the supervisor's socket keeps the proxy's
// peer check. A client with the owner's uid but in another pid namespace
// (where every agent runs) is refused; the same client in the
// supervisor's namespace is served.
func TestControlPeerOtherPidNS(t *testing.T) {
	home := t.TempDir()
	start(t, Config{Name: "peer", Home: home, Command: []string{"sleep", "60"}, Detached: true})
	sock := filepath.Join(home, "sandboxes", "peer", ControlSocket)
	uid, gid := os.Getuid(), os.Getgid()
	for _, tc := range []struct {
		name string
		attr *syscall.SysProcAttr
		want string
	}{
		{"same pid namespace", nil, "served"},
		{"other pid namespace, same uid", &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWPID | syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}},
		}, "runs in another pid namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe)
			cmd.Env = []string{clientHelperEnv + "=" + sock}
			cmd.SysProcAttr = tc.attr
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("client: %v, output %q, want %q", err, out, tc.want)
			}
		})
	}
}

// TestInspectStates covers how a record and the living combine.
func TestInspectStates(t *testing.T) {
	home := t.TempDir()
	self, err := procStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	code := 3
	for _, tc := range []struct {
		name  string
		rec   *Record
		want  string
		extra func(Info) bool
	}{
		{"running and alive", &Record{State: StateRunning, SupervisorPid: os.Getpid(), SupervisorStart: self}, StateRunning, nil},
		{"running, pid gone", &Record{State: StateRunning, SupervisorPid: gone.Process.Pid, SupervisorStart: 1}, StateDead, func(i Info) bool { return !i.DiedAfter.IsZero() }},
		{"running, pid reused", &Record{State: StateRunning, SupervisorPid: os.Getpid(), SupervisorStart: self + 1}, StateDead, nil},
		{"stopped", &Record{State: StateStopped, ExitCode: &code}, StateStopped, func(i Info) bool { return i.Summary() == "stopped (exit 3)" }},
		{"starting and alive", &Record{State: StateStarting, SupervisorPid: os.Getpid(), SupervisorStart: self}, StateStarting, func(i Info) bool {
			return i.Summary() == "starting (supervisor pid "+strconv.Itoa(os.Getpid())+")"
		}},
		{"starting, pid gone", &Record{State: StateStarting, SupervisorPid: gone.Process.Pid, SupervisorStart: 1}, StateDead, func(i Info) bool {
			return i.DiedWhile == StateStarting && strings.HasPrefix(i.Summary(), "supervisor died at ") &&
				strings.HasSuffix(i.Summary(), " while starting (pid "+strconv.Itoa(gone.Process.Pid)+")")
		}},
		{"no record", nil, StateStopped, nil},
		{"newer record", &Record{State: StateRunning, V: recordVersion + 1}, StateStopped, func(i Info) bool { return strings.Contains(i.Problem, "upgrade nemoclaw") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(tc.name, " ", "-")
			name = strings.ReplaceAll(name, ",", "")
			dir := Dir(home, name)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.rec != nil {
				v := tc.rec.V
				if err := writeRecord(dir, tc.rec); err != nil {
					t.Fatal(err)
				}
				if v != 0 { // writeRecord stamps the current version
					os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"v":`+strconv.Itoa(v)+`,"state":"running"}`), 0o600)
				}
			}
			in := inspectDir(dir, name)
			if in.State != tc.want || (tc.extra != nil && !tc.extra(in)) {
				t.Fatalf("got %+v, want state %s", in, tc.want)
			}
		})
	}
	all, err := List(context.Background(), home, 100*time.Millisecond)
	if err != nil || len(all) != 8 {
		t.Fatalf("list: %d entries, %v", len(all), err)
	}
}

// TestCheckName refuses names that would leave $NEMOCLAW_HOME/sandboxes.
func TestCheckName(t *testing.T) {
	for _, n := range []string{"..", "a/b", "../x", "", "UPPER", "a..b"} {
		if checkName(n) == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	if _, err := Inspect(context.Background(), t.TempDir(), "../etc", time.Second); err == nil {
		t.Fatal("Inspect of ../etc accepted")
	}
	if err := Destroy(context.Background(), DestroyConfig{Home: t.TempDir(), Name: "..", Force: true}); err == nil {
		t.Fatal("Destroy of .. accepted")
	}
}

// FuzzParseStat: whatever /proc/PID/stat holds (a command name may hold
// spaces and parentheses), the parser neither panics nor reads the start
// time from inside the name.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("123 (sh) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 4242 1000 10"))
	f.Add([]byte("1 (a) b) Z 0"))
	f.Add([]byte(") ) )"))
	f.Fuzz(func(t *testing.T, b []byte) {
		start, err := parseStat(b)
		if err == nil && !strings.Contains(string(b[strings.LastIndexByte(string(b), ')'):]), strconv.FormatUint(start, 10)) {
			t.Fatalf("start %d is not after the name in %q", start, b)
		}
	})
}
