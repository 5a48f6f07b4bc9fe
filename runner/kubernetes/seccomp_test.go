package kubernetes

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	seccomp "github.com/seccomp/libseccomp-golang"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// underProfileEnv makes the test binary a stand-in for the pod's
// container runtime: it becomes the supervisor's uid with no capabilities
// and no_new_privs, loads the shipped seccomp profile (plus the system
// calls named in underProfileDenyEnv) and executes the rest of its
// arguments.
const (
	underProfileEnv     = "NEMOCLAW_TEST_UNDER_PROFILE"
	underProfileDenyEnv = "NEMOCLAW_TEST_UNDER_PROFILE_DENY"
)

func TestMain(m *testing.M) {
	if os.Getenv(underProfileEnv) == "1" {
		if err := execUnderProfile(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "under profile:", err)
			os.Exit(125)
		}
	}
	os.Exit(m.Run())
}

// profileDenied lists the system calls the shipped profile refuses.
func profileDenied() ([]string, error) {
	var p struct {
		DefaultAction string `json:"defaultAction"`
		Syscalls      []struct {
			Names  []string `json:"names"`
			Action string   `json:"action"`
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(SeccompProfileJSON, &p); err != nil {
		return nil, err
	}
	if p.DefaultAction != "SCMP_ACT_ALLOW" {
		return nil, fmt.Errorf("defaultAction %s", p.DefaultAction)
	}
	var out []string
	for _, s := range p.Syscalls {
		if s.Action != "SCMP_ACT_ERRNO" {
			return nil, fmt.Errorf("action %s", s.Action)
		}
		out = append(out, s.Names...)
	}
	return out, nil
}

func execUnderProfile(argv []string) error {
	runtime.LockOSThread()
	deny, err := profileDenied()
	if err != nil {
		return err
	}
	if extra := os.Getenv(underProfileDenyEnv); extra != "" {
		deny = append(deny, strings.Split(extra, ",")...)
	}
	// The pod's identity: uid/gid 65532, no groups; leaving root drops
	// every capability.
	if err := syscall.Setgroups(nil); err != nil {
		return err
	}
	if err := syscall.Setresgid(SupervisorUID, SupervisorUID, SupervisorUID); err != nil {
		return err
	}
	if err := syscall.Setresuid(SupervisorUID, SupervisorUID, SupervisorUID); err != nil {
		return err
	}
	f, err := seccomp.NewFilter(seccomp.ActAllow)
	if err != nil {
		return err
	}
	if err := f.SetNoNewPrivsBit(true); err != nil {
		return err
	}
	for _, name := range deny {
		sc, err := seccomp.GetSyscallFromName(name)
		if err != nil {
			continue // not a system call of this architecture (vm86, stime...)
		}
		if err := f.AddRule(sc, seccomp.ActErrno.SetReturnCode(int16(syscall.EPERM))); err != nil {
			return fmt.Errorf("rule %s: %w", name, err)
		}
	}
	if err := f.Load(); err != nil {
		return err
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}

// TestSeccompProfileLetsNemoclawSandbox runs nemoclaw as the pod would (uid
// 65532, no capabilities, no_new_privs, under the shipped Localhost
// profile) and has it build a whole sandbox: its namespaces, Landlock and
// seccomp. With mount also refused, as RuntimeDefault refuses it to a
// container without CAP_SYS_ADMIN, the same start fails: the profile is
// what makes it work.
func TestSeccompProfileLetsNemoclawSandbox(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "Becoming the pod's uid 65532 needs root.")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		testutil.SkipOrFail(t, "Unprivileged user namespaces are disabled (user.max_user_namespaces=0).")
	}
	dir := t.TempDir()
	// The pod's uid must reach the binary: t.TempDir's parent is 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "nemoclaw")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/nemoclaw").CombinedOutput(); err != nil {
		t.Fatalf("build nemoclaw: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := func(extraDeny string) (string, error) {
		home := filepath.Join(dir, "home-"+strings.ReplaceAll(extraDeny, ",", "-"))
		cmd := exec.Command(self, bin, "sandbox", "run", "--no-tty", "--", "/bin/sh", "-c", "echo uid=$(id -u); grep ^Seccomp: /proc/self/status")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "NEMOCLAW_HOME=" + home, underProfileEnv + "=1", underProfileDenyEnv + "=" + extraDeny}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "Seccomp:\t2") {
		t.Fatalf("nemoclaw under the shipped profile: %v\n%s", err, out)
	}
	denied, _ := profileDenied()
	if slices.Contains(denied, "mount") {
		t.Fatal("the profile denies mount")
	}
	if out, err := run("mount"); err == nil {
		t.Errorf("with mount refused too, the sandbox still started:\n%s", out)
	} else if t.Logf("with mount refused: %s", out); !strings.Contains(out, "mount") {
		t.Errorf("with mount refused, the failure does not name mount:\n%s", out)
	}
}
