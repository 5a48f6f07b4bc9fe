package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// memHelperEnv makes the test binary a memory hog inside the sandbox:
// "RESERVE_MIB COMMIT_MIB TOUCH_MIB" reserves RESERVE_MIB of address space
// with PROT_NONE and makes its first COMMIT_MIB writable without touching
// them (as V8, Go and JVMs reserve and commit heaps: what RLIMIT_DATA
// counts), then makes TOUCH_MIB resident, a MiB at a time, says
// "touched", and exits 0.
const memHelperEnv = "NEMOCLAW_TEST_MEMHOG"

// memHog is the helper's body (TestMain runs it).
func memHog(spec string) int {
	var reserve, commit, touch int
	if _, err := fmt.Sscanf(spec, "%d %d %d", &reserve, &commit, &touch); err != nil {
		fmt.Fprintln(os.Stderr, "memhog:", err)
		return 2
	}
	if reserve > 0 {
		r, err := unix.Mmap(-1, 0, reserve<<20, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			fmt.Fprintln(os.Stderr, "memhog: reserve:", err)
			return 3
		}
		if err := unix.Mprotect(r[:commit<<20], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			fmt.Fprintln(os.Stderr, "memhog: commit:", err)
			return 5
		}
	}
	for i := 0; i < touch; i++ {
		b, err := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fmt.Fprintln(os.Stderr, "memhog: touch:", err)
			return 4
		}
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
	}
	fmt.Println("touched")
	return 0
}

// errCgroupRefused is startMemHog's code when the cgroup mechanism was
// (rightly) refused on a host without cgroup v2 delegation.
const errCgroupRefused = -1000

// startMemHog runs the helper (copied into the workspace) in a sandbox
// with limit and the given mechanism.
func startMemHog(t *testing.T, how MemoryEnforcement, limit string, reserveMiB, commitMiB, touchMiB int) (int, string, error, string) {
	t.Helper()
	needKernel(t)
	ws := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "memhog"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// A root launcher refuses a root-owned workspace: a user's.
		for _, p := range []string{ws, filepath.Join(ws, "memhog")} {
			if err := os.Chown(p, 1000, 1000); err != nil {
				t.Fatal(err)
			}
		}
	}
	pol := testPolicy()
	pol.Resources = &policy.Resources{Memory: limit}
	var out, logs testutil.Buffer
	sb, err := Start(context.Background(), Config{
		Policy: pol, Home: t.TempDir(), Workdir: ws, MemoryEnforcement: how,
		Command: []string{"/sandbox/memhog"},
		Env:     []string{memHelperEnv + "=" + strconv.Itoa(reserveMiB) + " " + strconv.Itoa(commitMiB) + " " + strconv.Itoa(touchMiB)},
		Stdout:  &out, Stderr: &out,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if how == MemoryCgroup && !CgroupDelegation().Delegated {
		// A host whose memory controller is not on cgroup v2 (this VM
		// binds it to v1): asking for the cgroup mechanism must be refused
		// with the reason, never fall back quietly. That is what runs here.
		if err == nil || !strings.Contains(err.Error(), `memory enforcement "cgroup" was asked for`) {
			t.Fatalf("cgroup enforcement on a host without cgroup v2 delegation: err %v; want a refusal that says why", err)
		}
		t.Logf("cgroup v2 not delegated here; refused as it must be: %v", err)
		return errCgroupRefused, "", nil, ""
	}
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer sb.Close()
	if how == MemoryCgroup && sb.Cgroup() == "" {
		t.Fatal("memory enforcement cgroup started without a cgroup")
	}
	code, werr := sb.Wait()
	return code, out.String(), werr, logs.String()
}

// TestMemoryLimitReservationsNotCounted: address space that is reserved
// but not touched (8 GiB PROT_NONE, 4 GiB of it made writable) does not
// count against a 1Gi limit, under both mechanisms. The control: the same
// program under RLIMIT_DATA=1Gi, the old fallback, fails to commit.
func TestMemoryLimitReservationsNotCounted(t *testing.T) {
	if _, err := exec.LookPath("prlimit"); err == nil {
		self, _ := os.Executable()
		cmd := exec.Command("prlimit", fmt.Sprintf("--data=%d", 1<<30), self)
		cmd.Env = []string{memHelperEnv + "=8192 4096 64"}
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "commit") {
			t.Errorf("control: under RLIMIT_DATA=1Gi the hog got %v, %q; want its commit refused (else this test proves nothing)", err, out)
		}
	}
	for _, how := range []MemoryEnforcement{MemorySupervisor, MemoryCgroup} {
		t.Run(string(how), func(t *testing.T) {
			code, out, err, logs := startMemHog(t, how, "1Gi", 8<<10, 4<<10, 64)
			if code == errCgroupRefused {
				return
			}
			if code != 0 || err != nil || !strings.Contains(out, "touched") {
				t.Fatalf("8 GiB reserved, 4 GiB committed, 64 MiB touched under 1Gi: exit %d, err %v, output %q\nlog:\n%s", code, err, out, logs)
			}
			if !strings.Contains(logs, "resident memory") && !strings.Contains(logs, "cgroup v2") {
				t.Errorf("the run log does not say which mechanism holds the memory limit:\n%s", logs)
			}
		})
	}
}

// TestMemoryLimitExceeded: a program that makes more memory resident
// than the limit is killed, and the error and the log say why.
func TestMemoryLimitExceeded(t *testing.T) {
	for _, how := range []MemoryEnforcement{MemorySupervisor, MemoryCgroup} {
		t.Run(string(how), func(t *testing.T) {
			code, out, err, logs := startMemHog(t, how, "128Mi", 0, 0, 512)
			if code == errCgroupRefused {
				return
			}
			var me *MemoryLimitError
			if !errors.As(err, &me) || me.Mechanism != string(how) || code != 137 {
				t.Fatalf("512 MiB touched under 128Mi: exit %d, err %v, want a MemoryLimitError from %s and exit 137; output %q\nlog:\n%s", code, err, how, out, logs)
			}
			if strings.Contains(out, "touched") {
				t.Errorf("the hog finished: the limit did not hold")
			}
			if !strings.Contains(err.Error(), "memory limit exceeded") || !strings.Contains(logs, "memory limit exceeded") {
				t.Errorf("error %q or log does not say \"memory limit exceeded\":\n%s", err, logs)
			}
			if how == MemorySupervisor && me.Used <= me.Limit {
				t.Errorf("measured %d bytes, limit %d: killed under the limit", me.Used, me.Limit)
			}
			t.Logf("%s: killed at %d MiB resident (limit %d MiB)", how, me.Used>>20, me.Limit>>20)
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
	}{
		{"Name:\tx\nRssAnon:\t    1024 kB\nRssFile:\t 9999 kB\nRssShmem:\t 8 kB\n", (1024 + 8) << 10},
		{"RssAnon:\t1 MB\n", 0},                    // unknown unit: not guessed
		{"RssAnon:\t-5 kB\nRssShmem: x kB\n", 0},   // garbage
		{"RssAnon:\t99999999999999999999 kB\n", 0}, // overflow
		{"RssAnon: 4 kB", 4 << 10},                 // no final newline
		{"", 0},
	} {
		if got := parseStatusRSS([]byte(tc.in)); got != tc.want {
			t.Errorf("parseStatusRSS(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestMemoryEnforcementSwitch(t *testing.T) {
	t.Setenv(MemoryEnforcementEnv, "supervisor")
	if got, err := memoryEnforcement(MemoryAuto); err != nil || got != MemorySupervisor {
		t.Errorf("env supervisor: %q, %v", got, err)
	}
	if got, err := memoryEnforcement(MemoryCgroup); err != nil || got != MemoryCgroup {
		t.Errorf("config beats env: %q, %v", got, err)
	}
	t.Setenv(MemoryEnforcementEnv, "rlimit")
	if _, err := memoryEnforcement(MemoryAuto); err == nil || !strings.Contains(err.Error(), MemoryEnforcementEnv) {
		t.Errorf("bad value: %v, want an error naming %s", err, MemoryEnforcementEnv)
	}
}

// BenchmarkTreeResident is one poll of the watch on a host of this
// machine's processes: a /proc/PID/stat read per process, a status read
// per process of the tree (init's: every process descends from it).
func BenchmarkTreeResident(b *testing.B) {
	for b.Loop() {
		if _, err := treeResident(1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTreeResidentSmall is a poll whose tree is this one process: the
// cost of the scan, plus one status read.
func BenchmarkTreeResidentSmall(b *testing.B) {
	for b.Loop() {
		if _, err := treeResident(os.Getpid()); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseStatPPid(t *testing.T) {
	for in, want := range map[string]int{
		"123 (sh) S 45 123 123 0": 45,
		"7 (a) b) (c) R 9 7 7":    9,
		"8 (x\n) 1 2) S 3 8":      3,
		"9 (no close S 3 9":       0,
		"10 (x) S -1 1":           0,
		"11 (x) S":                0,
		"":                        0,
	} {
		if got := parseStatPPid([]byte(in)); got != want {
			t.Errorf("parseStatPPid(%q) = %d, want %d", in, got, want)
		}
	}
}

// FuzzParseStatusRSS: any status text parses without panicking, and the
// sum never exceeds what its lines could say (each value < 2^44 kB).
func FuzzParseStatusRSS(f *testing.F) {
	f.Add([]byte("RssAnon:\t 1024 kB\nRssShmem:\t 8 kB\n"))
	f.Add([]byte("RssAnon: 99999999999999999999 kB"))
	f.Add([]byte("RssShmem:\n\n\x00RssAnon: 1 kB kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got := parseStatusRSS(b)
		lines := uint64(strings.Count(string(b), "\n") + 1)
		if got > lines*(1<<54) {
			t.Fatalf("parseStatusRSS = %d from %d lines", got, lines)
		}
	})
}

func FuzzParseStatPPid(f *testing.F) {
	f.Add([]byte("123 (sh) S 45 123 123 0"))
	f.Add([]byte("1 ()) S 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if parseStatPPid(b) < 0 {
			t.Fatal("negative ppid")
		}
	})
}
