package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

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

// needKernel skips (or fails under NEMOCLAW_STRICT_TESTS) without what
// every sandbox needs.
func needKernel(t *testing.T) {
	t.Helper()
	f := Probe()
	if !f.Seccomp || !f.NetNS || f.LandlockABI == 0 {
		testutil.SkipOrFail(t, "the kernel lacks seccomp filters, network namespaces or Landlock")
	}
	if !f.Root && !f.UnprivilegedUserNS {
		testutil.SkipOrFail(t, "not root and unprivileged user namespaces are disabled")
	}
}

// run starts cfg (with test defaults) and returns the exit code and output.
func run(t *testing.T, cfg Config) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if cfg.Policy == nil {
		cfg.Policy = testPolicy()
	}
	if cfg.Home == "" {
		cfg.Home = t.TempDir()
	}
	cfg.Stdout, cfg.Stderr = &out, &errb
	sb, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer sb.Close()
	code, err := sb.Wait()
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return code, out.String(), errb.String()
}

func TestStartErrors(t *testing.T) {
	needKernel(t)
	home := t.TempDir()
	hard := testPolicy()
	hard.Landlock.Compatibility = policy.HardRequirement
	tests := []struct {
		name    string
		cfg     Config
		step    string
		refused bool
		lowABI  bool
		swapped bool
		exec    int // ExecStatus
	}{
		{name: "no policy", cfg: Config{Command: []string{"true"}}, step: "config"},
		{name: "no command", cfg: Config{Policy: testPolicy()}, step: "config"},
		{name: "bad name", cfg: Config{Policy: testPolicy(), Command: []string{"true"}, Name: "Bad Name"}, step: "config"},
		{name: "missing workdir", cfg: Config{Policy: testPolicy(), Command: []string{"true"}, Workdir: "/nonexistent/nemoclaw"}, step: "workspace"},
		{name: "command not found", cfg: Config{Policy: testPolicy(), Command: []string{"nemoclaw-no-such-command"}}, step: "exec nemoclaw-no-such-command", exec: 127},
		{name: "path not found", cfg: Config{Policy: testPolicy(), Command: []string{"/usr/bin/nemoclaw-no-such-command"}}, step: "exec /usr/bin/nemoclaw-no-such-command", exec: 127},
		{name: "not executable", cfg: Config{Policy: testPolicy(), Command: []string{"/etc/passwd"}}, step: "exec /etc/passwd", exec: 126},
		{name: "a directory", cfg: Config{Policy: testPolicy(), Command: []string{"/usr/bin"}}, step: "exec /usr/bin", exec: 126},
		{name: "relative file path", cfg: Config{Policy: testPolicy(), Command: []string{"true"}, Files: []File{{Path: "etc/x"}}}, step: "files"},
		{name: "file outside own dirs", cfg: Config{Policy: testPolicy(), Command: []string{"true"}, Files: []File{{Path: "/usr/nemoclaw-new-file"}}}, step: "mount: file /usr/nemoclaw-new-file"},
		{name: "file contents fail later", cfg: Config{Policy: testPolicy(), Command: []string{"true"},
			Files: []File{{Path: "/run/nemoclaw/ca.pem", Later: func() ([]byte, error) { return nil, errors.New("no CA") }}}}, step: "files"},
		{name: "hard requirement on old kernel", cfg: Config{Policy: hard, Command: []string{"true"}}, step: "landlock: abi", refused: true, lowABI: true},
		{name: "workspace swapped after the check", cfg: Config{Policy: testPolicy(), Command: []string{"true"}, Workdir: t.TempDir()}, step: "workspace: mount", swapped: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lowABI {
				kernelLandlockABI = func() int { return 3 }
				defer func() { kernelLandlockABI = landlockABI }()
			}
			if tc.swapped {
				// Another directory by the time the init mounts it.
				checkWorkspace = func(ws string) (hostDir, error) {
					d, err := hostWorkspace(ws)
					d.ino++
					return d, err
				}
				// Not root's: a root launcher refuses a root-owned
				// workspace before the mount.
				if os.Geteuid() == 0 {
					if err := os.Chown(tc.cfg.Workdir, 10001, 10001); err != nil {
						t.Fatal(err)
					}
				}
				defer func() { checkWorkspace = hostWorkspace }()
			}
			tc.cfg.Home = home
			sb, err := Start(context.Background(), tc.cfg)
			if err == nil {
				sb.Close()
				t.Fatal("start succeeded")
			}
			var se *StepError
			if !errors.As(err, &se) || se.Step != tc.step {
				t.Fatalf("want step %q, got %v", tc.step, err)
			}
			if got := ExecStatus(err); got != tc.exec {
				t.Fatalf("ExecStatus = %d, want %d (%v)", got, tc.exec, err)
			}
			if IsRefused(err) != tc.refused {
				t.Fatalf("refused = %v, want %v", IsRefused(err), tc.refused)
			}
			if !strings.HasPrefix(err.Error(), "sandbox: "+tc.step+": ") {
				t.Fatalf("message %q does not read sandbox: <step>: <cause>", err)
			}
			if tc.swapped && !strings.Contains(err.Error(), "changed (replaced, or its owner) while the sandbox started") {
				t.Fatalf("message %q does not say the workspace changed", err)
			}
		})
	}
}

func TestRunBasics(t *testing.T) {
	needKernel(t)
	t.Parallel()
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "in.txt"), []byte("from host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// A root launcher refuses a root-owned workspace: a user's.
		if err := os.Chown(ws, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		cfg      Config
		wantCode int
		wantOut  string
	}{
		{name: "exit code", cfg: Config{Command: []string{"/bin/sh", "-c", "exit 3"}}, wantCode: 3},
		{name: "stdin", cfg: Config{Command: []string{"cat"}, Stdin: strings.NewReader("piped\n")}, wantOut: "piped\n"},
		{name: "hostname and cwd", cfg: Config{Name: "unit-host", Command: []string{"/bin/sh", "-c", "echo $(hostname) $(pwd) $HOME"}}, wantOut: "unit-host /sandbox /sandbox\n"},
		{name: "workdir", cfg: Config{Workdir: ws, Command: []string{"cat", "/sandbox/in.txt"}}, wantOut: "from host\n"},
		{name: "environment is built, not inherited", cfg: Config{Env: []string{"A=1", "HOME=/tmp"}, Command: []string{"/bin/sh", "-c", "echo $A $HOME ${GOPATH:-unset} ${PWD}"}}, wantOut: "1 /tmp unset /sandbox\n"},
		{name: "read-only file", cfg: Config{Files: []File{{Path: "/etc/hostname", Data: []byte("x")}, {Path: "/run/nemoclaw/ca.pem", Data: []byte("ca")}},
			Command: []string{"/bin/sh", "-c", "cat /etc/hostname /run/nemoclaw/ca.pem; echo; echo y > /run/nemoclaw/ca.pem || echo refused"}},
			wantOut: "xca\nrefused\n"},
		{name: "file contents made later", cfg: Config{Files: []File{{Path: "/run/nemoclaw/ca.pem", Data: []byte("ignored"), Later: func() ([]byte, error) { return []byte("late CA"), nil }}},
			Command: []string{"cat", "/run/nemoclaw/ca.pem"}},
			wantOut: "late CA"},
		{name: "pid namespace", cfg: Config{Command: []string{"/bin/sh", "-c", "set -- /proc/[0-9]*; echo $# $(cat /proc/1/cmdline | tr '\\0' ' ')"}}, wantOut: "2 /proc/self/exe __sandbox-init\n"},
		{name: "only lo", cfg: Config{Command: []string{"/bin/sh", "-c", "ls /sys/class/net 2>/dev/null || cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"}}, wantOut: "lo\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.cfg)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.wantCode, errs)
			}
			if tc.wantOut != "" && out != tc.wantOut {
				t.Fatalf("stdout %q, want %q; stderr %s", out, tc.wantOut, errs)
			}
		})
	}
}

// TestListenersHandedOut serves the in-sandbox proxy and DNS sockets from
// the host: the agent reaches them on its own 127.0.0.1.
func TestListenersHandedOut(t *testing.T) {
	needKernel(t)
	var out, errb bytes.Buffer
	script := `exec 3<>/dev/tcp/127.0.0.1/3128; read -r line <&3; echo "proxy:$line"
python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(20)
s.sendto(b"q", ("127.0.0.1", 53)); print("dns:" + s.recv(64).decode())
t = socket.create_connection(("127.0.0.1", 53), timeout=20); print("dnstcp:" + t.recv(64).decode())
'`
	sb, err := Start(context.Background(), Config{
		Policy: testPolicy(), Home: t.TempDir(), Command: []string{"/bin/bash", "-c", script},
		Stdout: &out, Stderr: &errb, Network: NetworkConfig{Proxy: true, DNS: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if sb.ProxyListener() == nil || sb.DNSPacketConn() == nil || sb.DNSListener() == nil {
		t.Fatal("listeners missing")
	}
	// Taken: Close leaves them to the caller.
	defer sb.ProxyListener().Close()
	defer sb.DNSPacketConn().Close()
	defer sb.DNSListener().Close()
	// The proxy can see the agent's socket in the sandbox's netns through
	// the init's /proc entry.
	go func() {
		c, err := sb.ProxyListener().Accept()
		if err != nil {
			return
		}
		defer c.Close()
		peer := c.RemoteAddr().(*net.TCPAddr).Port
		tcp, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", sb.Pid()))
		seen := strings.Contains(string(tcp), fmt.Sprintf(":%04X ", peer))
		fmt.Fprintf(c, "hello peer-visible=%v\n", seen)
	}()
	go func() {
		buf := make([]byte, 64)
		n, addr, err := sb.DNSPacketConn().ReadFrom(buf)
		if err == nil {
			sb.DNSPacketConn().WriteTo(append([]byte("answer-"), buf[:n]...), addr)
		}
	}()
	go func() {
		c, err := sb.DNSListener().Accept()
		if err == nil {
			c.Write([]byte("tcp53"))
			c.Close()
		}
	}()
	code, err := sb.Wait()
	if err != nil || code != 0 {
		t.Fatalf("exit %d %v: %s", code, err, errb.String())
	}
	want := "proxy:hello peer-visible=true\ndns:answer-q\ndnstcp:tcp53\n"
	if out.String() != want {
		t.Fatalf("got %q, want %q; stderr %s", out.String(), want, errb.String())
	}
}

// TestCloseLeavesTakenListeners checks that Close closes the listeners no
// caller took and leaves a taken one to its taker.
func TestCloseLeavesTakenListeners(t *testing.T) {
	needKernel(t)
	sb, err := Start(context.Background(), Config{
		Policy: testPolicy(), Home: t.TempDir(), Command: []string{"/bin/true"},
		Network: NetworkConfig{Proxy: true, DNS: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := sb.ProxyListener()
	if ln == nil {
		t.Fatal("no proxy listener")
	}
	defer ln.Close()
	if code, err := sb.Wait(); err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	// Not taken: closed.
	if _, err := sb.dnsLn.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DNS TCP listener after Close: Accept = %v, want net.ErrClosed", err)
	}
	if _, _, err := sb.dnsPC.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("DNS UDP socket after Close: ReadFrom = %v, want net.ErrClosed", err)
	}
	// Taken: still open (an Accept times out instead of failing).
	if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatalf("taken listener after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("taken listener after Close: Accept = %v, want a timeout", err)
	}
}

// TestSignalAndClose checks Signal reaches the agent (128+15) and that
// Close tears down a running sandbox and removes its generated workspace.
func TestSignalAndClose(t *testing.T) {
	needKernel(t)
	home := t.TempDir()
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	// Without Workdir or KeepWorkspace the workspace is a private tmpfs
	// the agent owns: nothing of it reaches the host.
	sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: home, Name: "sig",
		Command: []string{"/bin/sh", "-c", `echo x > /sandbox/f && awk '$5=="/sandbox"{print $9}' /proc/self/mountinfo && [ "$(stat -c %d /sandbox)" = "$(stat -c %d /tmp)" ] && echo shares-tmp; exec sleep 100`}, Stdout: pw})
	pw.Close()
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(pr)
	if line, _ := rd.ReadString('\n'); line != "tmpfs\n" {
		t.Fatalf("want the workspace on a writable tmpfs, got %q", line)
	}
	// One tmpfs for /tmp and the workspace: one size limit for both.
	if line, _ := rd.ReadString('\n'); line != "shares-tmp\n" {
		t.Fatalf("want the workspace in /tmp's tmpfs, got %q", line)
	}
	if _, err := os.Stat(filepath.Join(home, "sandboxes", "sig", "workspace")); !os.IsNotExist(err) {
		t.Fatalf("an in-memory workspace left a host directory: %v", err)
	}
	if err := sb.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, err := sb.Wait()
	if err != nil || code != 130 {
		t.Fatalf("want 130 (SIGINT), got %d %v", code, err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeptWorkspace: KeepWorkspace puts the workspace on the host's disk
// and leaves it there.
func TestKeptWorkspace(t *testing.T) {
	needKernel(t)
	home := t.TempDir()
	sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: home, Name: "kept", KeepWorkspace: true,
		Command: []string{"/bin/sh", "-c", "echo kept > /sandbox/f"}})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := sb.Wait(); err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, "sandboxes", "kept", "workspace", "f"))
	if err != nil || string(b) != "kept\n" {
		t.Fatalf("kept workspace: %q %v", b, err)
	}
}

// TestWorkdirIdmapped checks a root launcher's workspace through the exec
// path's init (the CLI's pre-spawned one is covered in e2e): inside, the
// directory's owner (uid 1000) is the agent; on the host what the agent
// made is uid 1000's.
func TestWorkdirIdmapped(t *testing.T) {
	needKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "mounting a workdir idmapped needs a root launcher")
	}
	ws := t.TempDir()
	if err := os.Chown(ws, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	code, out, errb := run(t, Config{Workdir: ws, Command: []string{"/bin/sh", "-c", "stat -c %u:%g /sandbox && echo made > /sandbox/made"}})
	if code != 0 || out != "10001:10001\n" {
		t.Fatalf("exit %d, out %q, want the workspace as the agent's 10001:10001; stderr %s", code, out, errb)
	}
	fi, err := os.Stat(filepath.Join(ws, "made"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1000 {
		t.Fatalf("the agent's file is %d:%d on the host, want the directory owner's 1000:1000", st.Uid, st.Gid)
	}
}

// TestFileOverSymlink places a file over a host symlink that points into
// /run (as /etc/resolv.conf does under systemd-resolved): it must land on
// the link's target inside the sandbox's own /run.
func TestFileOverSymlink(t *testing.T) {
	needKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "placing a test symlink in the host's /etc needs root")
	}
	link := fmt.Sprintf("/etc/nemoclaw-test-link-%d", os.Getpid())
	if err := os.Symlink("../run/nemoclaw-test/resolv.conf", link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)
	code, out, errs := run(t, Config{
		Files:   []File{{Path: link, Data: []byte("nameserver 127.0.0.1\n")}},
		Command: []string{"cat", link},
	})
	if code != 0 || out != "nameserver 127.0.0.1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
}

func TestSandboxPath(t *testing.T) {
	dir := t.TempDir() // under /tmp: the sandbox has its own, so host links there are not followed
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "rel")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"/etc/hostname", "/etc/hostname"},
		{"/run/a", "/run/a"},
		{filepath.Join(dir, "rel"), filepath.Join(dir, "rel")},
		{"/nonexistent/x", "/nonexistent/x"},
	}
	for _, tc := range tests {
		if got := sandboxPath(tc.in); got != tc.want {
			t.Errorf("sandboxPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFileFrom: a File's From host file comes first, read by the init (not
// the launcher), then Data; an unreadable From leaves Data and a note.
func TestFileFrom(t *testing.T) {
	needKernel(t)
	dir, err := os.MkdirTemp("/var/tmp", "nemoclaw-from-") // not /tmp: the init reads it under the host's root
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	host := filepath.Join(dir, "bundle")
	if err := os.WriteFile(host, bytes.Repeat([]byte("host line\n"), 30000), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from string
		lines      string
	}{
		{"host file then data", link, "30001"},
		{"missing host file", filepath.Join(dir, "nope"), "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			sb, err := Start(context.Background(), Config{Policy: testPolicy(), Home: t.TempDir(), Stdout: &out,
				Files:   []File{{Path: "/run/x/bundle", From: tc.from, Data: []byte("added\n")}},
				Command: []string{"/bin/sh", "-c", "wc -l < /run/x/bundle; tail -n 1 /run/x/bundle"}})
			if err != nil {
				t.Fatal(err)
			}
			if code, err := sb.Wait(); err != nil || code != 0 {
				t.Fatalf("exit %d %v", code, err)
			}
			sb.Close()
			if want := tc.lines + "\nadded\n"; out.String() != want {
				t.Errorf("got %q, want %q", out.String(), want)
			}
		})
	}
}

// TestRulePathSymlinkRefused: through the exec path's init (the CLI's
// pre-spawned one is covered in e2e), a symlink where a read_only path of
// the workspace should be refuses the start, naming the link and its
// target, instead of pointing the rule at the target.
func TestRulePathSymlinkRefused(t *testing.T) {
	needKernel(t)
	ws := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(ws, "cfg")); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 { // a root-owned workspace is refused before the rules
		if err := os.Chown(ws, 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	p := testPolicy()
	p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, "/sandbox/cfg")
	sb, err := Start(context.Background(), Config{Policy: p, Home: t.TempDir(), Workdir: ws, Command: []string{"/bin/true"}})
	if err == nil {
		sb.Close()
		t.Fatal("started with a symlinked read_only path")
	}
	var se *StepError
	if !errors.As(err, &se) || !se.Refused || se.Hint == "" || !strings.Contains(err.Error(), "/sandbox/cfg is a symlink to /etc") {
		t.Fatalf("want a refusal naming /sandbox/cfg -> /etc with a hint, got %v (%+v)", err, se)
	}
}

// TestFileFromNotRegular: a File.From that is a FIFO (with no writer) or a
// device node, as an agent could leave one in a directory a policy lets it
// write, neither blocks the init's open nor is read: the placed file holds
// only nemoclaw's data, and the log says why.
func TestFileFromNotRegular(t *testing.T) {
	needKernel(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{fifo, "/dev/zero"} {
		t.Run(filepath.Base(from), func(t *testing.T) {
			var logb bytes.Buffer
			code, out, errb := run(t, Config{
				Logger:  slog.New(slog.NewTextHandler(&logb, nil)),
				Files:   []File{{Path: "/run/nemoclaw/extra.pem", From: from, Data: []byte("ours\n")}},
				Command: []string{"cat", "/run/nemoclaw/extra.pem"},
			})
			if code != 0 || out != "ours\n" {
				t.Fatalf("exit %d, out %q, want only nemoclaw's data; stderr %s", code, out, errb)
			}
			if !strings.Contains(logb.String(), "not a regular file") {
				t.Errorf("the log does not say why %s was not read:\n%s", from, logb.String())
			}
		})
	}
}
