package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// TestWorkdirKeepsItsOwner is `sudo nemoclaw sandbox run --workdir
// ~/project`: the agent (uid 10001) edits the owner's files and git works
// inside, and on the host nothing changes hands: what the agent edits or
// makes is the owner's. Files of other users stay theirs, read-only to the
// agent. The directory's group is the agent's only when it is the owner's
// private group; a shared one (here 0) shows as nogroup, and what the agent
// makes gets the agent's gid, so that it can make no setgid file of it.
func TestWorkdirKeepsItsOwner(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "mounting a workdir idmapped needs a root launcher")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (make deps installs it): %v", err)
	}
	const owner = 1000
	// uid 1000's private group, where the host has one (Debian makes one
	// per user); without a user 1000 the group 1000 is shared as any.
	private := hasPrivateGroup(t, owner)
	for _, tc := range []struct {
		name            string
		group           int
		insideGroup     string // the directory's group seen inside
		madeGroupOnHost uint32 // the group of what the agent makes
	}{
		{"owner's group", owner, map[bool]string{true: "10001", false: "65534"}[private], map[bool]uint32{true: owner, false: 10001}[private]},
		{"shared group 0", 0, "65534", 10001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			w := filepath.Join(base, "project")
			if err := os.Mkdir(w, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, content := range map[string]string{"notes": "orig\n", "root-file": "root's\n"} {
				if err := os.WriteFile(filepath.Join(w, name), []byte(content), 0o664); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range []string{w, filepath.Join(w, "notes")} {
				if err := os.Chown(p, owner, tc.group); err != nil {
					t.Fatal(err)
				}
			}
			script := `awk '$5 == "/sandbox" { print $6 }' /proc/self/mountinfo
id -u
stat -c '%u:%g' /sandbox /sandbox/notes /sandbox/root-file
echo edited >> /sandbox/notes && echo made > /sandbox/made && echo wrote
echo x >> /sandbox/root-file 2>/dev/null || echo root-file-refused
chmod u+s,g+s /sandbox/notes /sandbox/made 2>/dev/null
mkdir /sandbox/repo && cp /sandbox/notes /sandbox/repo/ && cd /sandbox/repo && git init -q && git add -A && git -c user.email=a@b -c user.name=agent commit -qm first && echo committed`
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
			g := tc.insideGroup
			want := "10001\n10001:" + g + "\n10001:" + g + "\n65534:65534\nwrote\nroot-file-refused\ncommitted\n"
			if rest != want {
				t.Fatalf("inside the sandbox:\n%s\nwant:\n%s\nstderr: %s", rest, want, stderr)
			}
			// On the host: the owner's, all of it, the repository
			// included; root's file stays root's.
			err := filepath.Walk(w, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				st := fi.Sys().(*syscall.Stat_t)
				wantUID, wantGID := uint32(owner), tc.madeGroupOnHost
				switch p {
				case filepath.Join(w, "root-file"):
					wantUID, wantGID = 0, 0
				case w, filepath.Join(w, "notes"):
					wantGID = uint32(tc.group)
				}
				if st.Uid != wantUID || st.Gid != wantGID {
					t.Errorf("%s is %d:%d on the host, want %d:%d", p, st.Uid, st.Gid, wantUID, wantGID)
				}
				// The agent's chmod u+s,g+s: setuid to the owner
				// only, setgid only to a group mapped to the agent
				// (the owner's private one), never a shared group's.
				if st.Mode&syscall.S_ISGID != 0 && st.Gid != owner && st.Gid != 10001 {
					t.Errorf("%s is setgid to the shared group %d on the host", p, st.Gid)
				}
				if st.Mode&syscall.S_ISUID != 0 && st.Uid != owner {
					t.Errorf("%s is setuid to %d on the host", p, st.Uid)
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
		})
	}
}

// hasPrivateGroup reports whether the host's uid has a primary group of
// its own name.
func hasPrivateGroup(t *testing.T, uid int) bool {
	t.Helper()
	field := func(path string, match func(f []string) bool) []string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Split(l, ":"); len(f) > 3 && match(f) {
				return f
			}
		}
		return nil
	}
	u := field("/etc/passwd", func(f []string) bool { return f[2] == strconv.Itoa(uid) })
	if u == nil {
		return false
	}
	return field("/etc/group", func(f []string) bool { return f[2] == u[3] && f[0] == u[0] }) != nil
}

// rootLauncherWorkdirOwner owns the workspaces the e2e suite gives a root
// launcher: a root-owned one is refused (TestWorkdirRootOwned).
const rootLauncherWorkdirOwner = 1000

// TestWorkdirRootOwned: host root is never mapped to the agent (it would
// write files as root, setuid-root ones included), and a root-owned
// directory is not given to the agent either (its top changed hands on
// the host, and the agent could rename, replace and delete root's files
// in it): a root launcher refuses it (exit 3), says what to do, and leaves
// the directory and its contents exactly as they were.
func TestWorkdirRootOwned(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "only a root launcher meets root-owned workspaces")
	}
	w := t.TempDir() // root's
	if err := os.Chmod(w, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w, "root-file"), []byte("root's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		var b strings.Builder
		for _, p := range []string{w, filepath.Join(w, "root-file")} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			fmt.Fprintf(&b, "%s %d:%d %v %d\n", p, st.Uid, st.Gid, fi.Mode(), st.Ino)
		}
		ents, _ := os.ReadDir(w)
		fmt.Fprintf(&b, "%d entries\n", len(ents))
		return b.String()
	}
	before := snapshot()
	cmd := exec.Command(Bin("nemoclaw"), "sandbox", "run", "--no-tty", "--workdir", w, "--", "/bin/sh", "-c",
		`mv /sandbox/root-file /sandbox/x; echo evil > /sandbox/root-file`)
	cmd.Env = []string{"NEMOCLAW_HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	_, stderr, code := runCmd(t, cmd)
	if code != 3 || !strings.Contains(stderr, w+" is owned by root") || !strings.Contains(stderr, "what to do: give the directory to the user whose work it is") {
		t.Fatalf("exit %d, stderr %q; want exit 3, a refusal naming %s and what to do", code, stderr, w)
	}
	if after := snapshot(); after != before {
		t.Fatalf("the refused workspace changed on the host:\n%s->\n%s", before, after)
	}
}

// TestWorkdirRefusals checks the workspaces a root launcher will not mount:
// a root-owned directory overlapping a path the policy keeps read-only
// (refused, exit 3), and a user's directory on a filesystem that cannot be
// idmapped (ramfs; a failed step, exit 1). Each names the directory and
// says what to do, and leaves the directory as it was.
func TestWorkdirRefusals(t *testing.T) {
	requireSandboxKernel(t)
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "the refusals concern root launchers")
	}
	ramfs := t.TempDir()
	if err := syscall.Mount("none", ramfs, "ramfs", 0, ""); err != nil {
		t.Fatalf("mount ramfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(ramfs, syscall.MNT_DETACH) })
	userDir := filepath.Join(ramfs, "w")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(userDir, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir, msg string
		code     int
	}{
		{"/etc", "/etc is owned by root and overlaps /etc, which filesystem_policy.read_only keeps read-only", 3},
		{"/usr/local", "overlaps /usr", 3},
		{userDir, userDir + " (owned by 1000:1000, for the agent's 10001:10001): its filesystem cannot be idmapped", 1},
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

// TestWorkdirHidesNemoclawHome gives the agent a workspace that holds
// $NEMOCLAW_HOME, nemoclaw's own state: the agent finds an empty,
// read-only directory there, so its own control socket (with which it
// could approve its own egress) and the trust configuration are out of
// reach. A workspace inside $NEMOCLAW_HOME is refused, untouched.
func TestWorkdirHidesNemoclawHome(t *testing.T) {
	requireSandboxKernel(t)
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		base := filepath.Dir(r.home)
		if uid < 0 && os.Geteuid() == 0 {
			// A root launcher refuses a root-owned workspace.
			if err := os.Chown(base, rootLauncherWorkdirOwner, rootLauncherWorkdirOwner); err != nil {
				t.Fatal(err)
			}
		}
		out, stderr, code := r.run(t, []string{"--workdir", base, "--name", "hid"}, "/bin/sh", "-c",
			`ls -A /sandbox/home | wc -l; touch /sandbox/home/x 2>&1; ls /sandbox/home/sandboxes/hid 2>&1; ls /sandbox/work/attack; curl -s -o /dev/null http://denied.example/`)
		lines := strings.Split(out, "\n")
		want := []string{"0", "Read-only file system", "No such file or directory", "/sandbox/work/attack"}
		for i, w := range want {
			if i >= len(lines) || !strings.Contains(lines[i], w) {
				t.Fatalf("exit %d; want the lines to hold %q:\n%s\n%s", code, want, out, stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(r.home, "sandboxes", "hid", "audit.jsonl")); err != nil {
			t.Errorf("the run's own state on the host (its audit log of the refused request): %v", err)
		}
		before, err := os.Stat(r.home)
		if err != nil {
			t.Fatal(err)
		}
		_, stderr, code = r.run(t, []string{"--workdir", r.home}, "/bin/true")
		if code != 3 || !strings.Contains(stderr, "is $NEMOCLAW_HOME, nemoclaw's own state") || !strings.Contains(stderr, "what to do:") {
			t.Errorf("--workdir $NEMOCLAW_HOME: exit %d, want 3 naming it and what to do:\n%s", code, stderr)
		}
		after, err := os.Stat(r.home)
		if err != nil {
			t.Fatal(err)
		}
		if b, a := before.Sys().(*syscall.Stat_t), after.Sys().(*syscall.Stat_t); a.Uid != b.Uid || after.Mode() != before.Mode() {
			t.Errorf("the refused workspace changed: %d %v -> %d %v", b.Uid, before.Mode(), a.Uid, after.Mode())
		}
	})
}

// TestNestedReadOnlyHolds runs NemoClaw's own openclaw-sandbox.yaml, whose
// read_only /sandbox/.openclaw lies inside the read_write /sandbox:
// Landlock alone adds the two up and leaves the agent free to rewrite its
// gateway configuration (NVIDIA/NemoClaw#514, #3387). Here it cannot: it
// can neither write, create, rename nor replace anything in it, while
// /sandbox and .openclaw-data stay writable.
func TestNestedReadOnlyHolds(t *testing.T) {
	requireSandboxKernel(t)
	pol, err := filepath.Abs(filepath.Join("..", "runner", "blueprint", "testdata", "nemoclaw-blueprint", "policies", "openclaw-sandbox.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		for _, d := range []string{".openclaw", ".openclaw-data"} {
			if err := os.Mkdir(filepath.Join(r.workdir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cfg := filepath.Join(r.workdir, ".openclaw", "openclaw.json")
		if err := os.WriteFile(cfg, []byte(`{"gateway":{"auth":{"token":"s3cret"}}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		// The directories are their owner's: as root, a user's
		// (mounted with the agent acting as that user), rootless, the
		// caller's.
		owner := uid
		if owner < 0 && os.Geteuid() == 0 {
			owner = 1000
		}
		if owner >= 0 {
			for _, p := range []string{"", ".openclaw", ".openclaw-data", ".openclaw/openclaw.json"} {
				if err := os.Chown(filepath.Join(r.workdir, p), owner, owner); err != nil {
					t.Fatal(err)
				}
			}
		}
		script := `try() { if "$@" 2>/dev/null; then echo "$*: WROTE"; else echo "$*: refused"; fi; }
try sh -c 'echo {} > /sandbox/.openclaw/openclaw.json'
try touch /sandbox/.openclaw/new
try mv /sandbox/.openclaw/openclaw.json /sandbox/stolen.json
try mv /sandbox/.openclaw /sandbox/moved
try rm -rf /sandbox/.openclaw
try touch /sandbox/.openclaw-data/ok
try touch /sandbox/ok`
		out, stderr, code := r.run(t, []string{"--policy", pol}, "/bin/sh", "-c", script)
		want := "sh -c echo {} > /sandbox/.openclaw/openclaw.json: refused\n" +
			"touch /sandbox/.openclaw/new: refused\n" +
			"mv /sandbox/.openclaw/openclaw.json /sandbox/stolen.json: refused\n" +
			"mv /sandbox/.openclaw /sandbox/moved: refused\n" +
			"rm -rf /sandbox/.openclaw: refused\n" +
			"touch /sandbox/.openclaw-data/ok: WROTE\n" +
			"touch /sandbox/ok: WROTE\n"
		if code != 0 || out != want {
			t.Fatalf("exit %d, got:\n%s\nwant:\n%s\nstderr:\n%s", code, out, want, stderr)
		}
		if b, err := os.ReadFile(cfg); err != nil || !strings.Contains(string(b), "s3cret") {
			t.Fatalf("the configuration changed on the host: %q %v", b, err)
		}
	})
}

// TestWorkdirHostExecutablesReadOnly is issue 13's host code execution:
// the agent set core.fsmonitor in the workspace's .git/config and the
// owner's next `git status` on the host ran it. By default the files host
// tools run code from are read-only inside (as root, idmapped, and
// rootless): config, hooks, renaming .git away, the owner's .envrc; git's reading
// commands work, its writing ones fail on the read-only .git. The absent
// names' placeholders are gone from the host after the run. With
// filesystem_policy.allow_host_executable_writes the agent may write them.
func TestWorkdirHostExecutablesReadOnly(t *testing.T) {
	requireSandboxKernel(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (make deps installs it): %v", err)
	}
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		git := func(args ...string) string {
			cmd := exec.Command("git", append([]string{"-c", "safe.directory=*", "-C", r.workdir}, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		if err := os.WriteFile(filepath.Join(r.workdir, ".envrc"), []byte("export PROJECT=1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		git("init", "-q")
		git("add", "attack")
		git("-c", "user.email=o@x", "-c", "user.name=owner", "commit", "-qm", "first")
		owner := uid
		if owner < 0 && os.Geteuid() == 0 {
			owner = rootLauncherWorkdirOwner
		}
		if owner >= 0 {
			if err := exec.Command("chown", "-R", fmt.Sprintf("%d:%d", owner, owner), r.workdir).Run(); err != nil {
				t.Fatal(err)
			}
		}
		config, err := os.ReadFile(filepath.Join(r.workdir, ".git", "config"))
		if err != nil {
			t.Fatal(err)
		}
		script := `cd /sandbox
try() { out=$("$@" 2>&1); echo "$1: ${out:-OK}"; }
try git config core.fsmonitor 'touch /sandbox/pwned'
try sh -c 'echo evil > .git/hooks/post-checkout'
try mv .git .git.orig
try sh -c 'echo evil > .envrc'
try git status --porcelain --untracked-files=no
try git log --format=%s
try git -c user.email=a@b -c user.name=agent commit -q --allow-empty -m agent`
		out, stderr, code := r.run(t, nil, "/bin/sh", "-c", script)
		want := []string{
			"git: error: could not lock config file .git/config: Read-only file system",
			"sh: sh: 1: cannot create .git/hooks/post-checkout: Read-only file system",
			"mv: mv: cannot move '.git' to '.git.orig': Device or resource busy",
			"sh: sh: 1: cannot create .envrc: Read-only file system",
			"git: OK",
			"git: first",
			"git: fatal: Unable to create '/sandbox/.git/index.lock': Read-only file system",
		}
		if got := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || !slices.Equal(got, want) {
			t.Fatalf("exit %d, got:\n%s\nwant:\n%s\nstderr: %s", code, out, strings.Join(want, "\n"), stderr)
		}
		if b, _ := os.ReadFile(filepath.Join(r.workdir, ".git", "config")); string(b) != string(config) {
			t.Errorf(".git/config changed on the host:\n%s", b)
		}
		ents, err := os.ReadDir(r.workdir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != ".git" && e.Name() != ".envrc" && e.Name() != "attack" && e.Name() != "suid-attack" {
				t.Errorf("%s left in the workspace on the host after the run", e.Name())
			}
		}

		// The policy switch: the agent may write them (and commit).
		pol := filepath.Join(filepath.Dir(r.home), "allow.yaml") // readable by the launcher
		if err := os.WriteFile(pol, []byte("version: 1\nfilesystem_policy:\n  include_workdir: true\n  allow_host_executable_writes: true\n"+
			"  read_only: [/usr, /bin, /sbin, /lib, /lib64, /etc, /proc]\n  read_write: [/tmp, /dev/null]\nprocess:\n  run_as_user: sandbox\n  run_as_group: sandbox\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, stderr, code = r.run(t, []string{"--policy", pol}, "/bin/sh", "-c",
			`cd /sandbox && ls -A | grep -c '^\.' && git config core.fsmonitor false && git -c user.email=a@b -c user.name=agent commit -q --allow-empty -m agent && echo committed`)
		if code != 0 || out != "2\ncommitted\n" {
			t.Fatalf("with allow_host_executable_writes: exit %d, out %q (want only .git and .envrc among the dot files, and a commit), stderr %s", code, out, stderr)
		}
	})
}
