package inference

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// BinaryPrefix starts the file name of every inference plugin: plugin
// "nvidia" is the executable nemoclaw-inference-nvidia.
const BinaryPrefix = "nemoclaw-inference-"

// validName reports whether s is a plugin name: 1 to 63 of lowercase
// letters, digits, '-' and '_', starting with a letter or digit. (Checked
// by hand: a regexp compiled at package init would cost every nemoclaw
// start.)
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Plugin is one plugin binary found by discovery.
type Plugin struct {
	// Name is the plugin's name (the binary's name without BinaryPrefix).
	Name string
	// Path is where the binary was found (a symlink's own path).
	Path string
	// Dir is the plugin directory it was found in.
	Dir string
	// SHA256 is the binary's checksum as read now (empty when refused before reading).
	SHA256 string
	// Pin is the checksum it must have (from the profile or the lock file), empty when none.
	Pin string
	// PinSource says where Pin came from: the lock file's path or "profile".
	PinSource string
	// Refused says why the plugin may not run (nil when it may): an unsafe
	// directory or file, a symlink out of its directory, no pin, a checksum
	// that differs from its pin.
	Refused error
}

// Trusted reports whether the plugin may be launched.
func (p Plugin) Trusted() bool { return p.Refused == nil }

// ErrUntrusted marks a plugin with no pinned checksum.
var ErrUntrusted = errors.New("plugin not trusted")

// ErrChecksum marks a plugin whose checksum differs from its pin.
var ErrChecksum = errors.New("plugin checksum mismatch")

// ErrUnsafePath marks a plugin directory or file others could write, or a
// symlink leading out of its directory.
var ErrUnsafePath = errors.New("unsafe plugin path")

// ErrNotFound marks a plugin name that no plugin directory holds.
var ErrNotFound = errors.New("plugin not found")

// dirs lists the plugin directories in search order: --plugin-dir first,
// then $NEMOCLAW_HOME/plugins, then the nemoclaw binary's own directory.
func (c *HostConfig) dirs() []string {
	out := append([]string(nil), c.Dirs...)
	if c.Home != "" {
		out = append(out, filepath.Join(c.Home, "plugins"))
	}
	if c.ExecutableDir != "" {
		out = append(out, c.ExecutableDir)
	}
	return out
}

// discover finds every plugin binary; the first directory holding a name wins.
func (h *Host) discover() ([]Plugin, error) {
	lock, lockErr := readLock(h.lockPath())
	var out []Plugin
	seen := map[string]bool{}
	for i, dir := range h.cfg.dirs() {
		ents, err := os.ReadDir(dir)
		if err != nil {
			// Only a directory the user named must exist.
			if errors.Is(err, fs.ErrNotExist) && i >= len(h.cfg.Dirs) {
				continue
			}
			return nil, fmt.Errorf("read plugin directory %s: %w", dir, err)
		}
		dirErr := checkDir(dir)
		for _, e := range ents {
			name, ok := strings.CutPrefix(e.Name(), BinaryPrefix)
			if !ok || !validName(name) || seen[name] {
				continue
			}
			seen[name] = true
			p := Plugin{Name: name, Dir: dir, Path: filepath.Join(dir, e.Name())}
			switch {
			case dirErr != nil:
				p.Refused = dirErr
			case lockErr != nil:
				p.Refused = lockErr
			default:
				h.vet(&p, lock)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// vet checks one found plugin: its file, its checksum, its pin.
func (h *Host) vet(p *Plugin, lock *lockFile) {
	real, err := checkFile(p.Dir, p.Path)
	if err != nil {
		p.Refused = err
		return
	}
	f, err := os.Open(real)
	if err != nil {
		p.Refused = fmt.Errorf("open plugin %s: %w", real, err)
		return
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.Copy(hs, f); err != nil {
		p.Refused = fmt.Errorf("read plugin %s: %w", real, err)
		return
	}
	p.SHA256 = hex.EncodeToString(hs.Sum(nil))
	p.Pin, p.PinSource = h.pin(p, lock)
	p.Refused = checkPin(*p)
}

// pin returns a plugin's pinned checksum: the profile's (HostConfig.Pins)
// before the lock file's, and for a plugin next to the nemoclaw binary the
// checksum that nemoclaw's own build recorded.
func (h *Host) pin(p *Plugin, lock *lockFile) (string, string) {
	if s := h.cfg.Pins[p.Name]; s != "" {
		return strings.ToLower(s), "profile"
	}
	if e, ok := lock.Plugins[p.Name]; ok {
		return e.SHA256, h.lockPath()
	}
	if s := h.cfg.BundledPins[p.Name]; s != "" && h.cfg.ExecutableDir != "" && p.Dir == h.cfg.ExecutableDir {
		return s, BundledPinSource
	}
	return "", ""
}

// BundledPinSource is the PinSource of a plugin pinned by nemoclaw's build.
const BundledPinSource = "this nemoclaw build"

func checkPin(p Plugin) error {
	switch {
	case p.Pin == "":
		return fmt.Errorf("%w: %s (%s, sha256 %s) has no pinned checksum; check it, then run `nemoclaw inference plugins --trust %s` or set sha256 in the profile", ErrUntrusted, p.Name, p.Path, p.SHA256, p.Name)
	case p.Pin != p.SHA256 && p.PinSource == "profile":
		// The profile's pin wins over the lock: --trust would not help.
		return fmt.Errorf("%w: %s (%s) has sha256 %s but the blueprint profile pins %s; if this binary is the one you meant, set the profile's sha256 to %s, else reinstall the plugin it pins", ErrChecksum, p.Name, p.Path, p.SHA256, p.Pin, p.SHA256)
	case p.Pin != p.SHA256:
		return fmt.Errorf("%w: %s (%s) has sha256 %s but %s pins %s; if the new binary is the one you meant, trust it again with `nemoclaw inference plugins --trust %s`", ErrChecksum, p.Name, p.Path, p.SHA256, p.PinSource, p.Pin, p.Name)
	}
	return nil
}

// checkDir refuses a plugin directory that anyone but its owner (root or
// this user) could write, or that sits below such a directory: whoever can
// write there can swap the binary or the directory. A sticky directory
// (/tmp) may be world-writable above it, since others cannot rename our
// entries in it; the plugin directory itself never.
func checkDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve plugin directory %s: %w", dir, err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return fmt.Errorf("resolve plugin directory %s: %w", dir, err)
	}
	for p, first := real, true; ; p, first = filepath.Dir(p), false {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check plugin directory %s: %w", p, err)
		}
		if err := safeOwner(st, p); err != nil {
			return err
		}
		m := st.Mode()
		if m.Perm()&0o022 != 0 && (first || m&fs.ModeSticky == 0) {
			what := "plugin directory " + p
			if !first {
				what = fmt.Sprintf("directory %s, above plugin directory %s,", p, dir)
			}
			return fmt.Errorf("%w: %s is writable by group or others (mode %04o); run chmod go-w %s", ErrUnsafePath, what, m.Perm(), p)
		}
		if p == "/" {
			return nil
		}
	}
}

// checkFile refuses a plugin file others could write, one that is not a
// regular executable, and a symlink that leads out of its directory. It
// returns the file's real path.
func checkFile(dir, path string) (string, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return "", fmt.Errorf("check plugin %s: %w", path, err)
	}
	real := path
	if st.Mode()&fs.ModeSymlink != 0 {
		real, err = filepath.EvalSymlinks(path)
		if err != nil {
			return "", fmt.Errorf("resolve plugin symlink %s: %w", path, err)
		}
		rdir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", fmt.Errorf("resolve plugin directory %s: %w", dir, err)
		}
		if rel, err := filepath.Rel(rdir, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			return "", fmt.Errorf("%w: %s is a symlink to %s, outside %s; copy the binary into the plugin directory instead", ErrUnsafePath, path, real, dir)
		}
		if st, err = os.Stat(real); err != nil {
			return "", fmt.Errorf("check plugin %s: %w", real, err)
		}
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file (%s)", ErrUnsafePath, real, st.Mode().Type())
	}
	if err := safeOwner(st, real); err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("%w: %s is writable by group or others (mode %04o); run chmod go-w %s", ErrUnsafePath, real, st.Mode().Perm(), real)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w: %s is not executable (mode %04o)", ErrUnsafePath, real, st.Mode().Perm())
	}
	return real, nil
}

// safeOwner refuses a file or directory owned by anyone but root or this user.
func safeOwner(st fs.FileInfo, path string) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("check owner of %s: no stat data", path)
	}
	if sys.Uid != 0 && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, neither root nor this user (uid %d)", ErrUnsafePath, path, sys.Uid, os.Geteuid())
	}
	return nil
}
