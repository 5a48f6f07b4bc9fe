package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestPlanTmpfs: every tmpfs is sized from the memory limit, with inodes
// capped, so that tmpfs cannot hold more than the limit.
func TestPlanTmpfs(t *testing.T) {
	for _, tc := range []struct {
		mem  uint64
		want tmpfsLimits
	}{
		{0, tmpfsLimits{Run: "size=16777216,nr_inodes=4096"}},
		{64 << 20, tmpfsLimits{Tmp: "size=67108864,nr_inodes=16384", Shm: "size=33554432,nr_inodes=8192", Run: "size=16777216,nr_inodes=4096"}},
		{4 << 20, tmpfsLimits{Tmp: "size=4194304,nr_inodes=1024", Shm: "size=2097152,nr_inodes=1024", Run: "size=4194304,nr_inodes=1024"}},
	} {
		if got := planTmpfs(tc.mem); got != tc.want {
			t.Errorf("planTmpfs(%d) = %+v, want %+v", tc.mem, got, tc.want)
		}
	}
}

func testWorkspace(t *testing.T) hostDir {
	t.Helper()
	d, err := hostWorkspace(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n []string
	for _, e := range ents {
		n = append(n, e.Name())
	}
	return n
}

// TestProtectWorkspace: every name host tools run code from that exists is
// protected; an absent .git gets an empty placeholder, which the last run
// on the workspace removes (not one that another run still uses, nor one
// someone filled); other absent names get none.
func TestProtectWorkspace(t *testing.T) {
	home := t.TempDir()
	p := &policy.Policy{Filesystem: &policy.FilesystemPolicy{IncludeWorkdir: true}}
	d := testWorkspace(t)
	if err := os.Mkdir(filepath.Join(d.path, ".vscode"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := protectWorkspace(d, p, os.Geteuid() != 0, home)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.paths, []string{"/sandbox/.git", "/sandbox/.vscode"}) {
		t.Fatalf("protected %v, want the .git placeholder and the existing .vscode", a.paths)
	}
	if got := names(t, d.path); !slices.Equal(got, []string{".git", ".vscode"}) {
		t.Fatalf("workspace holds %v, want a .git placeholder beside .vscode", got)
	}
	b, err := protectWorkspace(d, p, os.Geteuid() != 0, home) // a second run on it
	if err != nil {
		t.Fatal(err)
	}
	a.removePlaceholders() // b still runs: they stay
	if got := names(t, d.path); !slices.Equal(got, []string{".git", ".vscode"}) {
		t.Fatalf("the first run out removed the placeholder the second uses: %v", got)
	}
	if err := os.WriteFile(filepath.Join(d.path, ".git", "mine"), nil, 0o644); err != nil && !errors.Is(err, os.ErrPermission) {
		t.Fatal(err)
	}
	kept := b.removePlaceholders()
	want := []string{".vscode"}
	if _, err := os.Stat(filepath.Join(d.path, ".git", "mine")); err == nil {
		want, kept = []string{".git", ".vscode"}, append(kept, "(kept)")
	}
	if got := names(t, d.path); !slices.Equal(got, want) {
		t.Fatalf("after the last run the workspace holds %v (kept %v), want %v", got, kept, want)
	}

	// A symlink among them is refused; the switch turns it all off.
	d2 := testWorkspace(t)
	if err := os.Symlink("/etc", filepath.Join(d2.path, ".envrc")); err != nil {
		t.Fatal(err)
	}
	hp, err := protectWorkspace(d2, p, os.Geteuid() != 0, home)
	if !IsRefused(err) {
		t.Fatalf("symlinked .envrc: %v, want a refusal", err)
	}
	hp.removePlaceholders()
	if got := names(t, d2.path); !slices.Equal(got, []string{".envrc"}) {
		t.Fatalf("a refused start left %v", got)
	}
	p.Filesystem.AllowHostExecutableWrites = true
	if hp, err := protectWorkspace(d2, p, os.Geteuid() != 0, home); err != nil || len(hp.paths) != 0 {
		t.Fatalf("with allow_host_executable_writes: %v %v, want nothing protected", hp.paths, err)
	}
}
