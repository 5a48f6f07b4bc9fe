package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

func TestPlanLandlock(t *testing.T) {
	base := func(compat string, restrict bool) *policy.Policy {
		p := testPolicy()
		p.Landlock = &policy.LandlockPolicy{Compatibility: compat, RestrictConnectToProxy: restrict}
		return p
	}
	tests := []struct {
		name       string
		pol        *policy.Policy
		abi        int
		refused    bool
		notes      []string // substrings that must appear in the notes
		handled    uint64
		scoped     bool
		tcpPorts   int
		ruleAccess map[string]uint64
	}{
		{name: "full ABI 7", pol: base(policy.BestEffort, false), abi: 7, handled: 1<<16 - 1, scoped: true,
			ruleAccess: map[string]uint64{"/usr": fsReadOnly, "/sandbox": 1<<16 - 1, "/dev/null": 1<<16 - 1}},
		{name: "ABI 9 adds resolve_unix", pol: base(policy.BestEffort, false), abi: 9, handled: 1<<17 - 1, scoped: true},
		{name: "hard requirement met", pol: base(policy.HardRequirement, false), abi: 6, handled: 1<<16 - 1, scoped: true},
		{name: "hard requirement refused on ABI 5", pol: base(policy.HardRequirement, false), abi: 5, refused: true},
		{name: "strict is hard", pol: base("strict", false), abi: 3, refused: true},
		{name: "hard requirement refused without landlock", pol: base(policy.HardRequirement, false), abi: 0, refused: true},
		{name: "best effort without landlock", pol: base(policy.BestEffort, false), abi: 0, notes: []string{"unavailable"}},
		{name: "best effort ABI 3 drops ioctl and scoping", pol: base(policy.BestEffort, false), abi: 3, handled: 1<<15 - 1,
			notes: []string{"ioctl", "scoping need ABI 6"}},
		{name: "best effort ABI 1", pol: base(policy.BestEffort, false), abi: 1, handled: 1<<13 - 1, notes: []string{"refer", "truncate"}},
		{name: "tcp opt-in", pol: base(policy.BestEffort, true), abi: 7, handled: 1<<16 - 1, scoped: true, tcpPorts: 2},
		{name: "tcp opt-in dropped on ABI 3", pol: base(policy.BestEffort, true), abi: 3, handled: 1<<15 - 1, notes: []string{"restrict_connect_to_proxy needs ABI 4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan, notes, err := planLandlock(tc.pol, tc.abi, NetworkConfig{Proxy: true, ProxyPort: 3128, DNS: true}, []string{"/etc/resolv.conf"})
			if tc.refused {
				var se *StepError
				if !errors.As(err, &se) || !se.Refused || !IsRefused(err) || se.Hint == "" {
					t.Fatalf("want a refusal with a hint, got %v", err)
				}
				if !strings.Contains(err.Error(), "hard_requirement") {
					t.Errorf("refusal does not name the deciding field: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(notes, "\n")
			for _, n := range tc.notes {
				if !strings.Contains(all, n) {
					t.Errorf("notes lack %q:\n%s", n, all)
				}
			}
			if plan.HandledFS != tc.handled {
				t.Errorf("handled fs %#x, want %#x", plan.HandledFS, tc.handled)
			}
			if (plan.Scoped != 0) != tc.scoped {
				t.Errorf("scoped %#x, want scoping=%v", plan.Scoped, tc.scoped)
			}
			if len(plan.Ports) != tc.tcpPorts {
				t.Errorf("tcp rules %v, want %d", plan.Ports, tc.tcpPorts)
			}
			got := map[string]uint64{}
			for _, r := range plan.Rules {
				got[r.Path] = r.Access
				if r.Access&^plan.HandledFS != 0 {
					t.Errorf("rule %s grants unhandled rights %#x", r.Path, r.Access)
				}
			}
			for p, want := range tc.ruleAccess {
				if got[p] != want {
					t.Errorf("rule %s: access %#x, want %#x", p, got[p], want)
				}
			}
			if tc.abi > 0 && got["/etc/resolv.conf"]&unix.LANDLOCK_ACCESS_FS_READ_FILE == 0 {
				t.Errorf("bind-mounted file is not readable: %v", got)
			}
		})
	}
}

func TestResolveIDs(t *testing.T) {
	tests := []struct {
		name     string
		p        *policy.ProcessPolicy
		rootless bool
		uid, gid int
		mapped   bool
		err      bool
	}{
		{"unknown user mapped", &policy.ProcessPolicy{RunAsUser: "sandbox", RunAsGroup: "sandbox"}, false, mappedID, mappedID, true, false},
		{"host user", &policy.ProcessPolicy{RunAsUser: "nobody"}, false, 65534, 65534, false, false},
		{"numeric", &policy.ProcessPolicy{RunAsUser: "1234", RunAsGroup: "4321"}, false, 1234, 4321, false, false},
		{"default as root", nil, false, mappedID, mappedID, true, false},
		{"root refused", &policy.ProcessPolicy{RunAsUser: "root"}, false, 0, 0, false, true},
		{"rootless mapped", &policy.ProcessPolicy{RunAsUser: "sandbox"}, true, mappedID, mappedID, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid, note, err := resolveIDs(tc.p, tc.rootless, newHostDB())
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err != nil {
				return
			}
			if uid != tc.uid || gid != tc.gid || (note != "") != tc.mapped {
				t.Fatalf("got %d:%d note %q; want %d:%d mapped=%v", uid, gid, note, tc.uid, tc.gid, tc.mapped)
			}
		})
	}
}

func TestSeccompProgram(t *testing.T) {
	bpf, err := seccompProgram()
	if err != nil {
		t.Fatal(err)
	}
	if len(bpf) == 0 || len(bpf)%8 != 0 {
		t.Fatalf("program of %d bytes is not a list of 8-byte BPF instructions", len(bpf))
	}
}

func TestProbe(t *testing.T) {
	f := Probe()
	checks := f.Checks()
	if len(checks) < 5 {
		t.Fatalf("want at least 5 checks, got %d", len(checks))
	}
	for _, c := range checks {
		if c.Name == "" || c.Detail == "" || c.Enables == "" || c.Without == "" {
			t.Errorf("check %+v lacks a field", c)
		}
	}
	if f.LandlockABI != landlockABI() {
		t.Errorf("probe ABI %d != %d", f.LandlockABI, landlockABI())
	}
	// mount_setattr came in Linux 5.12.
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		t.Fatal(err)
	}
	if want := major > 5 || major == 5 && minor >= 12; f.IdmapMounts != want {
		t.Errorf("IdmapMounts = %v on Linux %d.%d, want %v", f.IdmapMounts, major, minor, want)
	}
}

// TestMakeCgroup checks the cgroup v2 files written for a sandbox's limits,
// on a directory laid out like a delegated cgroup (this host's cgroup v2 has
// no memory or pids controller to try it for real).
func TestMakeCgroup(t *testing.T) {
	parent := t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "cgroup.subtree_control"), []byte("pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := makeCgroup(parent, "nemoclaw-x", 512<<20, 64, 1500)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		"memory.max": "536870912", "memory.swap.max": "0", "pids.max": "64", "cpu.max": "150000 100000",
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q (%v), want %q", file, b, err, want)
		}
	}
	// Missing controllers are enabled in the parent (the last write wins
	// on this plain directory; cgroupfs accumulates them).
	if b, _ := os.ReadFile(filepath.Join(parent, "cgroup.subtree_control")); string(b) != "+cpu" {
		t.Errorf("subtree_control = %q, want the last enable to be +cpu", b)
	}
	rp, err := planResources(&policy.Resources{Memory: "1Gi", Pids: 10, CPU: "2", OpenFiles: 99}, CgroupInfo{Reason: "test: not delegated"}, "x", MemoryAuto)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, r := range rp.rlimits {
		got[r.Name] = r.Value
	}
	want := map[string]uint64{"RLIMIT_CORE": 0, "RLIMIT_NOFILE": 99, "RLIMIT_NPROC": 10}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %d (present %v), want %d", k, g, ok, v)
		}
	}
	// Not RLIMIT_DATA: it counts V8's and Go's reservations (issue 17).
	if _, ok := got["RLIMIT_DATA"]; ok || rp.watchMemory != 1<<30 {
		t.Errorf("memory without a cgroup: RLIMIT_DATA set %v, watch %d; want the supervisor's watch of 1Gi and no RLIMIT_DATA", ok, rp.watchMemory)
	}
	if _, err := planResources(&policy.Resources{Memory: "1Gi"}, CgroupInfo{Reason: "test: not delegated"}, "x", MemoryCgroup); err == nil || !strings.Contains(err.Error(), "test: not delegated") {
		t.Errorf("cgroup asked for, none available: %v, want an error with the reason", err)
	}
	// Root's parent under the v2 root is made, with the controllers
	// handed down to it.
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rootPlan, err := planResources(&policy.Resources{Memory: "1Gi"}, CgroupInfo{Delegated: true, Dir: root, Parent: filepath.Join(root, rootCgroupDir)}, "x", MemoryAuto)
	if err != nil || rootPlan.cgroupDir != filepath.Join(root, rootCgroupDir, "nemoclaw-x") || rootPlan.watchMemory != 0 {
		t.Fatalf("root cgroup plan: %+v, %v", rootPlan, err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "cgroup.subtree_control")); len(b) == 0 {
		t.Errorf("controllers not enabled in the v2 root")
	}
	if s := strings.Join(rp.summary, "\n"); !strings.Contains(s, "cpu=2 NOT applied") || !strings.Contains(s, "not delegated") {
		t.Errorf("summary does not say what applied:\n%s", s)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"sb-0a1b2c3d", true}, {"agent.v2_x", true}, {"9lives", true},
		{strings.Repeat("a", 63), true}, {strings.Repeat("a", 64), false},
		{"", false}, {"-x", false}, {".x", false}, {"_x", false}, {"Bad", false},
		{"a b", false}, {"a/b", false}, {"é", false}, {"a\x00", false},
	} {
		if got := ValidName(tc.name); got != tc.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestHostTopNeeded(t *testing.T) {
	pol := func(ro, rw []string) *policy.Policy {
		return &policy.Policy{Filesystem: &policy.FilesystemPolicy{ReadOnly: ro, ReadWrite: rw}}
	}
	for _, tc := range []struct {
		name  string
		p     *policy.Policy
		files []string
		want  []string // nil: everything
	}{
		{"default-like", pol([]string{"/usr", "/bin", "/etc", "/proc", "/dev/null"}, []string{"/tmp"}), []string{"/etc/resolv.conf", "/run/nemoclaw/ca.pem"}, []string{"bin", "dev", "etc", "proc", "run", "tmp", "usr"}},
		{"deep path", pol(nil, []string{"/home/alice/project/"}), nil, []string{"home"}},
		{"root read-only binds all", pol([]string{"/"}, nil), nil, nil},
		{"no filesystem policy", &policy.Policy{}, nil, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := hostTopNeeded(tc.p, tc.files)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("got %v, want every entry (nil)", got)
				}
				return
			}
			var names []string
			for n := range got {
				names = append(names, n)
			}
			sort.Strings(names)
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", names, tc.want)
			}
		})
	}
}

func TestNewName(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		n := NewName()
		if !ValidName(n) || len(n) != len("sb-01234567") {
			t.Fatalf("NewName() = %q, not a valid sb-<8 hex> name", n)
		}
		if seen[n] {
			t.Fatalf("NewName() repeated %q within 1000 names", n)
		}
		seen[n] = true
	}
}

// TestReadOnlyOverlap checks which workspaces overlap a read-only path of
// the policy: under it, equal to it, or containing it, symlinks followed;
// the sandbox's own directories are not the host's.
func TestReadOnlyOverlap(t *testing.T) {
	pol := &policy.Policy{Filesystem: &policy.FilesystemPolicy{
		ReadOnly:  []string{"/usr", "/etc/", "/bin", "/tmp/cfg", "/sandbox/ro"},
		ReadWrite: []string{"/home/alice"},
	}}
	binReal, _ := filepath.EvalSymlinks("/bin")
	for _, tc := range []struct {
		ws, want string
	}{
		{"/etc", "/etc"},
		{"/usr/local/src", "/usr"},
		{"/", "/usr"},
		{"/home/alice/project", ""},
		{"/etcetera", ""},
		{"/tmp/cfg", ""}, // the sandbox's own /tmp
		{"/tmp/work", ""},
		{"/sandbox/ro", ""},
		{binReal + "/sub", "/usr"}, // /bin -> usr/bin on merged-/usr hosts: /usr comes first
	} {
		if got := readOnlyOverlap(tc.ws, pol); got != tc.want {
			t.Errorf("readOnlyOverlap(%q) = %q, want %q", tc.ws, got, tc.want)
		}
	}
	if got := readOnlyOverlap("/etc", &policy.Policy{}); got != "" {
		t.Errorf("no filesystem policy: got %q", got)
	}
	// The symlink's target counts: a policy naming only /bin covers
	// /usr/bin where /bin links there.
	if binReal != "/bin" {
		only := &policy.Policy{Filesystem: &policy.FilesystemPolicy{ReadOnly: []string{"/bin"}}}
		if got := readOnlyOverlap(binReal+"/sub", only); got != "/bin" {
			t.Errorf("readOnlyOverlap(%q) with read_only [/bin] = %q, want /bin", binReal+"/sub", got)
		}
	}
}

// TestAccessBinds: read_only paths on a writable mount (inside read_write
// ones, which Landlock alone would leave writable, and whose metadata
// Landlock never guards) are bound read-only, each of their parents up to
// the mount's root pinned; read_write host paths are bound again from the
// host (the host's directories are mounted read-only); read_write paths
// inside read_only binds, read-write again; paths in agent-writable trees
// carry the outermost one as their anchor.
func TestAccessBinds(t *testing.T) {
	ro := func(p, anchor string) accessBind { return accessBind{Path: p, ReadOnly: true, Anchor: anchor} }
	pin := func(p, anchor string) accessBind { return accessBind{Path: p, Pin: true, Anchor: anchor} }
	for _, tc := range []struct {
		name string
		fs   policy.FilesystemPolicy
		want []accessBind
	}{
		{"NemoClaw's openclaw-sandbox.yaml", policy.FilesystemPolicy{
			IncludeWorkdir: true,
			ReadOnly:       []string{"/usr", "/lib", "/proc", "/dev/urandom", "/app", "/etc", "/var/log", "/sandbox/.openclaw"},
			ReadWrite:      []string{"/sandbox", "/tmp", "/dev/null", "/sandbox/.openclaw-data"},
		}, []accessBind{ro("/sandbox/.openclaw", "/sandbox")}},
		{"the workdir alone makes it writable", policy.FilesystemPolicy{
			IncludeWorkdir: true, ReadOnly: []string{"/sandbox/cfg/"},
		}, []accessBind{ro("/sandbox/cfg", "/sandbox")}},
		{"the workspace is writable without a rule, and read_only /sandbox binds it read-only", policy.FilesystemPolicy{
			ReadOnly: []string{"/sandbox", "/sandbox/x/y"},
		}, []accessBind{ro("/sandbox", "")}},
		{"parents pinned, 2 and 3 levels deep, shared ones once", policy.FilesystemPolicy{
			IncludeWorkdir: true, ReadOnly: []string{"/sandbox/b/c", "/sandbox/d/e/f", "/sandbox/d/e/g"},
		}, []accessBind{
			pin("/sandbox/b", "/sandbox"), ro("/sandbox/b/c", "/sandbox"),
			pin("/sandbox/d", "/sandbox"), pin("/sandbox/d/e", "/sandbox"), ro("/sandbox/d/e/f", "/sandbox"), ro("/sandbox/d/e/g", "/sandbox"),
		}},
		{"nested both ways on the host", policy.FilesystemPolicy{
			ReadOnly:  []string{"/data/a", "/data/a/b/c", "/etc"},
			ReadWrite: []string{"/data", "/data/a/b"},
		}, []accessBind{
			{Path: "/data", FromHost: true}, ro("/data/a", "/data"),
			{Path: "/data/a/b", FromHost: true, Anchor: "/data"}, ro("/data/a/b/c", "/data"),
			ro("/sandbox", ""),
		}},
		{"nested both ways in the workspace", policy.FilesystemPolicy{
			IncludeWorkdir: true, ReadOnly: []string{"/sandbox/a", "/sandbox/a/b/c"}, ReadWrite: []string{"/sandbox/a/b"},
		}, []accessBind{ro("/sandbox/a", "/sandbox"), {Path: "/sandbox/a/b", Anchor: "/sandbox"}, ro("/sandbox/a/b/c", "/sandbox")}},
		{"read_only inside read_only inside read_write", policy.FilesystemPolicy{
			ReadOnly:  []string{"/data/a", "/data/a/b"},
			ReadWrite: []string{"/data"},
		}, []accessBind{{Path: "/data", FromHost: true}, ro("/data/a", "/data"), ro("/sandbox", "")}},
		{"read_only in a read_write host path, two levels down", policy.FilesystemPolicy{
			ReadOnly:  []string{"/home/u/proj/cfg/gateway"},
			ReadWrite: []string{"/home/u/proj"},
		}, []accessBind{{Path: "/home/u/proj", FromHost: true}, pin("/home/u/proj/cfg", "/home/u/proj"), ro("/home/u/proj/cfg/gateway", "/home/u/proj"), ro("/sandbox", "")}},
		{"read_write inside read_only host directory: bound from the host", policy.FilesystemPolicy{
			ReadOnly:  []string{"/usr"},
			ReadWrite: []string{"/usr/local/cache"},
		}, []accessBind{ro("/sandbox", ""), {Path: "/usr/local/cache", FromHost: true}}},
		{"a workspace in no rule is bound read-only, a read_write path in it writable again", policy.FilesystemPolicy{
			ReadOnly: []string{"/usr"}, ReadWrite: []string{"/sandbox/out"},
		}, []accessBind{ro("/sandbox", ""), {Path: "/sandbox/out", Anchor: "/sandbox"}}},
		{"the default policy", policy.FilesystemPolicy{
			IncludeWorkdir: true,
			ReadOnly:       []string{"/usr", "/bin", "/etc", "/proc", "/dev/urandom"},
			ReadWrite:      []string{"/tmp", "/dev/null", "/dev/pts"},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := accessBinds(&tc.fs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("accessBinds =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
	if got := accessBinds(nil); got != nil {
		t.Errorf("no filesystem policy: %+v", got)
	}
}

// TestHiddenState: $NEMOCLAW_HOME is hidden in the workspace that holds
// it and at its own path wherever a mounted host directory holds it, never
// where the sandbox has its own directory (/tmp); inside an agent-writable
// tree its parents are pinned first.
func TestHiddenState(t *testing.T) {
	fs := &policy.FilesystemPolicy{IncludeWorkdir: true, ReadWrite: []string{"/home/u/proj"}}
	for _, tc := range []struct {
		name, home, wsMask string
		hostTop            map[string]bool
		want               []accessBind
	}{
		{"under a mounted host directory", "/home/u/.nemoclaw", "", map[string]bool{"home": true},
			[]accessBind{{Path: "/home/u/.nemoclaw", Hide: true}}},
		{"every host directory mounted", "/home/u/.nemoclaw", "", nil,
			[]accessBind{{Path: "/home/u/.nemoclaw", Hide: true}}},
		{"inside a read_write path: anchored", "/home/u/proj/.nemoclaw", "", map[string]bool{"home": true},
			[]accessBind{{Path: "/home/u/proj/.nemoclaw", Hide: true, Anchor: "/home/u/proj"}}},
		{"host directory not mounted", "/home/u/.nemoclaw", "", map[string]bool{"usr": true}, nil},
		{"the host's /tmp is never mounted", "/tmp/x/.nemoclaw", "", nil, nil},
		{"in the workspace and under a mounted host directory", "/home/u/.nemoclaw", "u/.nemoclaw", map[string]bool{"home": true},
			[]accessBind{{Path: "/sandbox/u", Pin: true, Anchor: "/sandbox"}, {Path: "/sandbox/u/.nemoclaw", Hide: true, Anchor: "/sandbox"}, {Path: "/home/u/.nemoclaw", Hide: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hiddenState(tc.home, tc.wsMask, tc.hostTop, fs)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("hiddenState = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// TestRuleAnchors: Landlock rules inside the workspace or a read_write
// host path are anchored at the outermost such tree; others are not.
func TestRuleAnchors(t *testing.T) {
	p := testPolicy()
	p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, "/sandbox/cfg", "/data/rw/inner/ro")
	p.Filesystem.ReadWrite = append(p.Filesystem.ReadWrite, "/data/rw", "/data/rw/inner", "/dev", "/tmp")
	plan, _, err := planLandlock(p, 7, NetworkConfig{}, []string{"/tmp/x"})
	if err != nil {
		t.Fatal(err)
	}
	// /dev and /tmp are made afresh for each sandbox: nothing planted
	// there (and /dev/ptmx is the sandbox's own symlink).
	want := map[string]string{"/usr": "", "/sandbox": "", "/sandbox/cfg": "/sandbox", "/data/rw": "", "/data/rw/inner": "/data/rw", "/data/rw/inner/ro": "/data/rw",
		"/dev/ptmx": "", "/tmp/x": ""}
	got := map[string]string{}
	for _, r := range plan.Rules {
		got[r.Path] = r.Anchor
	}
	for path, anchor := range want {
		if a, ok := got[path]; !ok || a != anchor {
			t.Errorf("rule %s: anchor %q (present %v), want %q", path, a, ok, anchor)
		}
	}
}

// TestStateOverlap: a workspace that holds $NEMOCLAW_HOME gets it masked,
// one inside it is refused unless it is a sandbox's workspace directory,
// and one apart from it is left alone.
func TestStateOverlap(t *testing.T) {
	const home = "/nonexistent/u/.nemoclaw" // not resolved: it does not exist
	for _, tc := range []struct {
		ws, mask string
		refused  bool
	}{
		{"/nonexistent/u", ".nemoclaw", false},
		{"/nonexistent", "u/.nemoclaw", false},
		{"/", "nonexistent/u/.nemoclaw", false},
		{"/nonexistent/u/project", "", false},
		{"/nonexistent/u/.nemoclaw-other", "", false},
		{home, "", true},
		{home + "/sandboxes", "", true},
		{home + "/sandboxes/dev", "", true},
		{home + "/trust", "", true},
		{home + "/sandboxes/dev/workspace", "", false},
		{home + "/sandboxes/dev/workspace/src", "", false},
	} {
		mask, err := stateOverlap(tc.ws, home)
		if mask != tc.mask || (err != nil) != tc.refused {
			t.Errorf("stateOverlap(%q) = %q, %v; want %q, refused %v", tc.ws, mask, err, tc.mask, tc.refused)
		}
		if err != nil && (!IsRefused(err) || !strings.Contains(err.Error(), "$NEMOCLAW_HOME")) {
			t.Errorf("stateOverlap(%q): %v is not a refusal naming $NEMOCLAW_HOME", tc.ws, err)
		}
	}
}

// TestIdmapLines checks the workspace's id maps: the owner becomes the
// agent; the directory's group is the agent's only when it is the owner's
// private group, else it shows as nogroup and the agent's files get the
// agent's gid; no maps when the agent owns the directory already.
func TestIdmapLines(t *testing.T) {
	ids := &hostDB{raw: map[string][]byte{}, entries: map[string][]dbEntry{
		"/etc/passwd": {{name: "alice", id: 1000, gid: 1000}, {name: "bob", id: 1001, gid: 100}},
		"/etc/group":  {{name: "alice", id: 1000, gid: -1}, {name: "users", id: 100, gid: -1}, {name: "docker", id: 998, gid: -1}},
	}}
	const agent = 10001
	for _, tc := range []struct {
		name           string
		uid, gid       int
		agentGID       int
		wantUID, wantG string
	}{
		{"private group", 1000, 1000, agent, "1000 10001 1\n", "1000 10001 1\n"},
		{"shared primary group", 1001, 100, agent, "1001 10001 1\n", "100 65534 1\n10001 10001 1\n"},
		{"privileged group", 1000, 998, agent, "1000 10001 1\n", "998 65534 1\n10001 10001 1\n"},
		{"group 0", 1000, 0, agent, "1000 10001 1\n", "0 65534 1\n10001 10001 1\n"},
		{"unknown owner", 2000, 2000, agent, "2000 10001 1\n", "2000 65534 1\n10001 10001 1\n"},
		{"agent owns it, other group", agent, 0, agent, "10001 10001 1\n", "0 65534 1\n10001 10001 1\n"},
		{"agent's group already", 1000, agent, agent, "1000 10001 1\n", "10001 10001 1\n"},
		{"agent is nogroup", 1000, 0, 65534, "1000 10001 1\n", "0 65533 1\n65534 65534 1\n"},
		{"agent owns it", agent, agent, agent, "", ""},
	} {
		u, g := idmapLines(hostDir{uid: tc.uid, gid: tc.gid}, agent, tc.agentGID, ids)
		if u != tc.wantUID || g != tc.wantG {
			t.Errorf("%s: got %q %q, want %q %q", tc.name, u, g, tc.wantUID, tc.wantG)
		}
	}
}
