package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// HostExecutableNames are the names, at the top of a host workspace, that
// tools on the host run code from without being asked to run anything of
// the project: git (.git/config's core.fsmonitor, core.hooksPath, filter
// and diff drivers, pager; .git/hooks; .git/commondir redirecting to
// another configuration; .git/modules/*/config of submodules, which
// `git status` enters), direnv (.envrc), editors (.vscode tasks run on
// folder open, .idea run configurations, dev containers' lifecycle
// commands), and hook managers that a protected .git/config points at
// (.githooks, .husky, pre-commit's configuration). The agent could
// otherwise plant code that the owner's next `git status`, `cd` or editor
// runs on the host, outside every sandbox. Unless the policy sets
// filesystem_policy.allow_host_executable_writes, each that exists is
// bound read-only onto itself (a mount point, which the agent can neither
// rename nor delete: EBUSY). Of the absent ones only .git gets an empty
// placeholder for the run (placeholderNames).
var HostExecutableNames = []string{
	".git", ".envrc", ".vscode", ".idea", ".devcontainer", ".devcontainer.json",
	".githooks", ".husky", ".pre-commit-config.yaml",
}

// placeholderNames are the HostExecutableNames that get an empty
// read-only placeholder directory when the workspace lacks them, so that
// the agent cannot create them: a .git the agent made would run its
// fsmonitor and hooks in the owner's next `git status` — or in a shell
// prompt that shows git state, on a mere `cd`. The others need no
// placeholder: a new .envrc runs only after `direnv allow`, editors ask
// before trusting a new folder's tasks, and the hook managers run only
// where an existing, protected .git/config points at them. (git ignores
// empty directories, so the placeholder does not show in the owner's
// `git status` during the run.) A repository the agent makes below the
// top of the workspace is not covered: see docs/sandbox.md.
var placeholderNames = []string{".git"}

// placeholder is an empty directory nemoclaw made in a host
// workspace for a run (protectWorkspace); removeHostPlaceholders removes it
// after the run if it is still that empty inode.
type placeholder struct {
	name     string
	dev, ino uint64
}

// hostProtection is what protectWorkspace planned for one run.
type hostProtection struct {
	// paths are the sandbox paths the init binds read-only onto
	// themselves (opProtect), in order.
	paths []string
	// dirfd is the workspace, open (O_PATH) until the placeholders are
	// removed; -1 when it is not protected.
	dirfd int
	// lock is the workspace's record under $NEMOCLAW_HOME/workspaces, held
	// shared for the run (nil when the workspace is not protected): it
	// lists the placeholders runs made, and the last run out (the one
	// that gets it exclusively, without waiting) removes them. A run that removed them
	// while another still ran would take that one's protection away: an
	// rmdir on the host detaches the mounts on it in every namespace.
	lock *os.File
}

// protectWorkspace plans the protection of HostExecutableNames in the host
// workspace d (seen at Workdir) and in every read_write path of p that is
// a git checkout (existing names only: nemoclaw makes nothing in a host
// directory other than the workspace). It makes the workspace's
// placeholders now, owned by the directory's owner, through d's descriptor
// (no path is followed). A protected name that is a symlink is refused:
// host tools would follow it, and a mount onto it would land on its target.
func protectWorkspace(d hostDir, p *policy.Policy, rootless bool, home string) (*hostProtection, error) {
	hp := &hostProtection{dirfd: -1}
	if p.Filesystem != nil && p.Filesystem.AllowHostExecutableWrites {
		return hp, nil
	}
	if d.path != "" {
		if err := hp.lockWorkspace(d, home); err != nil {
			return hp, stepErr("workspace: protect", err)
		}
		for _, n := range HostExecutableNames {
			var st unix.Stat_t
			err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW)
			switch {
			case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
				return hp, symlinkRefusal(filepath.Join(d.path, n))
			case err == nil:
			case errors.Is(err, unix.ENOENT) && !slices.Contains(placeholderNames, n):
				continue // nothing to protect
			case errors.Is(err, unix.ENOENT):
				ph, err := makePlaceholder(d, n, rootless)
				switch {
				case errors.Is(err, unix.EEXIST):
					err = nil // another run made it just now
				case err != nil && agentCannotCreate(d, rootless, err):
					continue // nothing to protect
				case err == nil:
					// One short O_APPEND write: whole, among other runs'.
					_, err = fmt.Fprintf(hp.lock, "%s %d %d\n", ph.name, ph.dev, ph.ino)
				}
				if err != nil {
					return hp, stepErr("workspace: protect", err)
				}
			default:
				return hp, stepErr("workspace: protect", fmt.Errorf("%s: %w", filepath.Join(d.path, n), err))
			}
			hp.paths = append(hp.paths, Workdir+"/"+n)
		}
	}
	if p.Filesystem == nil {
		return hp, nil
	}
	for _, rw := range p.Filesystem.ReadWrite {
		rw = filepath.Clean(rw)
		if rw == Workdir || strings.HasPrefix(rw, Workdir+"/") || underOwnDir(rw+"/") {
			continue // the workspace (above) or the sandbox's own tmpfs
		}
		if fi, err := os.Lstat(filepath.Join(rw, ".git")); err != nil || fi.Mode()&os.ModeSymlink != 0 {
			continue // not a checkout (a symlinked .git is not followed)
		}
		for _, n := range HostExecutableNames {
			host := filepath.Join(rw, n)
			fi, err := os.Lstat(host)
			switch {
			case err != nil:
				continue
			case fi.Mode()&os.ModeSymlink != 0:
				return hp, symlinkRefusal(host)
			}
			hp.paths = append(hp.paths, host)
		}
	}
	return hp, nil
}

func symlinkRefusal(path string) error {
	return &StepError{Step: "workspace: protect", Refused: true,
		Err:  fmt.Errorf("%s is a symlink: host tools run code from it, and nemoclaw keeps it read-only to the agent by binding it, which would follow the link", path),
		Hint: "replace the link with what it points to, or set filesystem_policy.allow_host_executable_writes: true to let the agent write the files host tools run code from"}
}

// agentCannotCreate reports whether err, from making a placeholder in d,
// means that the agent cannot create the name either: a read-only
// filesystem, or (rootless: the agent is the caller) a directory the
// caller may not write and does not own (an owner could chmod it).
func agentCannotCreate(d hostDir, rootless bool, err error) bool {
	if errors.Is(err, unix.EROFS) {
		return true
	}
	return rootless && d.uid != os.Geteuid() && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM))
}

// makePlaceholder makes an empty directory (mode 0555) named name in d,
// given to d's owner, and returns its identity.
func makePlaceholder(d hostDir, name string, rootless bool) (placeholder, error) {
	ph := placeholder{name: name}
	if err := unix.Mkdirat(d.fd, name, 0o555); err != nil {
		return ph, fmt.Errorf("placeholder %s: %w", filepath.Join(d.path, name), err)
	}
	if !rootless {
		// Nothing of the host changes hands: the directory's owner's.
		if err := unix.Fchownat(d.fd, name, d.uid, d.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			_ = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
			return ph, fmt.Errorf("placeholder %s: chown: %w", filepath.Join(d.path, name), err)
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		_ = unix.Unlinkat(d.fd, name, unix.AT_REMOVEDIR)
		return ph, fmt.Errorf("placeholder %s: %w", filepath.Join(d.path, name), err)
	}
	ph.dev, ph.ino = uint64(st.Dev), st.Ino
	return ph, nil
}

// lockWorkspace opens the workspace's record (made on first use) and
// takes it shared, and keeps a descriptor of the workspace. Only a run's
// end takes it exclusively, without waiting, so this waits at most for
// another run's removal of the placeholders (also within one process).
func (hp *hostProtection) lockWorkspace(d hostDir, home string) error {
	dir := filepath.Join(home, "workspaces")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	name := filepath.Join(dir, fmt.Sprintf("%d-%d.placeholders", d.dev, d.ino))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fmt.Errorf("lock %s: %w", name, err)
	}
	if hp.dirfd, err = unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
		f.Close()
		return err
	}
	hp.lock = f
	return nil
}

// removePlaceholders ends the run's hold on the workspace. The last run
// out removes every recorded placeholder that is still the empty directory
// made for it (someone on the host may have put something in one, or
// replaced it: then it stays), by name under the workspace's descriptor,
// never following or opening anything the agent could have left there. It
// returns the names it had to leave.
func (hp *hostProtection) removePlaceholders() []string {
	if hp == nil || hp.lock == nil {
		return nil
	}
	defer func() {
		hp.lock.Close() // releases the lock
		unix.Close(hp.dirfd)
		hp.lock, hp.dirfd = nil, -1
	}()
	if unix.Flock(int(hp.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return nil // another run still uses them; it removes them
	}
	b, err := io.ReadAll(io.NewSectionReader(hp.lock, 0, 1<<20))
	if err != nil {
		return nil
	}
	var kept []string
	for _, line := range strings.Split(string(b), "\n") {
		var ph placeholder
		if n, _ := fmt.Sscanf(line, "%s %d %d", &ph.name, &ph.dev, &ph.ino); n != 3 || !slices.Contains(HostExecutableNames, ph.name) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(hp.dirfd, ph.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
			uint64(st.Dev) != ph.dev || st.Ino != ph.ino {
			continue // gone, or replaced by someone on the host
		}
		// rmdir fails unless it is still empty.
		if err := unix.Unlinkat(hp.dirfd, ph.name, unix.AT_REMOVEDIR); err != nil {
			kept = append(kept, ph.name)
		}
	}
	_ = hp.lock.Truncate(0)
	return kept
}
