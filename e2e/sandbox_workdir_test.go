package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// TestWorkdirKeepsItsOwner is `sudo nemoclaw sandbox run --workdir
// ~/project`: the agent (uid 10001) edits the owner's files and git works
// inside, and on the host nothing changes hands: the directory, the files
// the agent edited and the ones it made belong to the directory's owner.
// Files of other users stay theirs, read-only to the agent.
func TestWorkdirKeepsItsOwner(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "mounting a workdir idmapped needs a root launcher")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (make deps installs it): %v", err)
	}
	const owner = 1000
	base := t.TempDir()
	w := filepath.Join(base, "project")
	if err := os.Mkdir(w, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"notes": "orig\n", "root-file": "root's\n"} {
		if err := os.WriteFile(filepath.Join(w, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{w, filepath.Join(w, "notes")} {
		if err := os.Chown(p, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	script := `awk '$5 == "/sandbox" { print $6 }' /proc/self/mountinfo
id -u
stat -c '%u:%g' /sandbox /sandbox/notes /sandbox/root-file
echo edited >> /sandbox/notes && echo made > /sandbox/made && echo wrote
echo x >> /sandbox/root-file 2>/dev/null || echo root-file-refused
cd /sandbox && git init -q && git add -A && git -c user.email=a@b -c user.name=agent commit -qm first && echo committed`
	cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--workdir", w, "--", "/bin/sh", "-c", script)
	cmd.Env = []string{"NEMOCLAW_HOME=" + filepath.Join(base, "home"), "PATH=" + os.Getenv("PATH")}
	out, stderr, code := runCmd(t, cmd)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	opts, rest, _ := strings.Cut(out, "\n")
	for _, o := range []string{"nosuid", "nodev", "idmapped"} {
		if !strings.Contains(","+opts+",", ","+o+",") {
			t.Errorf("/sandbox is mounted %q, want %s", opts, o)
		}
	}
	want := "10001\n10001:10001\n10001:10001\n65534:65534\nwrote\nroot-file-refused\ncommitted\n"
	if rest != want {
		t.Fatalf("inside the sandbox:\n%s\nwant:\n%s\nstderr: %s", rest, want, stderr)
	}
	// On the host: the owner's, all of it, the repository included.
	err := filepath.Walk(w, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		wantUID := uint32(owner)
		if p == filepath.Join(w, "root-file") {
			wantUID = 0
		}
		if st.Uid != wantUID || st.Gid != wantUID {
			t.Errorf("%s is %d:%d on the host, want %d:%d", p, st.Uid, st.Gid, wantUID, wantUID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(w, "notes")); string(b) != "orig\nedited\n" {
		t.Errorf("notes = %q, want the agent's edit", b)
	}
	if b, _ := os.ReadFile(filepath.Join(w, "root-file")); string(b) != "root's\n" {
		t.Errorf("root-file = %q, want it unchanged", b)
	}
}

// TestWorkdirRefusals checks the workspaces a root launcher will not mount:
// a root-owned directory overlapping a path the policy keeps read-only
// (refused, exit 3), and one on a filesystem that cannot be idmapped (a
// failed step, exit 1). Each names the directory and says what to do, and
// leaves the directory as it was.
func TestWorkdirRefusals(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the refusals concern root launchers")
	}
	for _, tc := range []struct {
		dir, msg string
		code     int
	}{
		{"/etc", "/etc is owned by root and overlaps /etc, which filesystem_policy.read_only keeps read-only", 3},
		{"/usr/local", "overlaps /usr", 3},
		{"/sys/fs", "/sys/fs (owned by 0:0, for the agent's 10001:10001): its filesystem cannot be idmapped", 1},
	} {
		before, err := os.Stat(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--workdir", tc.dir, "--", "/bin/true")
		cmd.Env = []string{"NEMOCLAW_HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		_, stderr, code := runCmd(t, cmd)
		if code != tc.code || !strings.Contains(stderr, tc.msg) || !strings.Contains(stderr, "what to do:") {
			t.Errorf("--workdir %s: exit %d, stderr %q; want exit %d naming %q and what to do", tc.dir, code, stderr, tc.code, tc.msg)
		}
		after, err := os.Stat(tc.dir)
		if err != nil {
			t.Fatal(err)
		}
		b, a := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t)
		if a.Uid != b.Uid || a.Gid != b.Gid || after.Mode() != before.Mode() {
			t.Errorf("--workdir %s changed the directory: %d:%d %v -> %d:%d %v", tc.dir, b.Uid, b.Gid, before.Mode(), a.Uid, a.Gid, after.Mode())
		}
	}
}
