package inference

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// LockFileName is the plugins lock in $NEMOCLAW_HOME: the SHA-256 each
// trusted plugin must have before it is launched.
const LockFileName = "plugins.lock"

// lockFile is the lock's JSON form.
type lockFile struct {
	Version int                  `json:"version"`
	Plugins map[string]lockEntry `json:"plugins"`
}

// lockEntry pins one plugin.
type lockEntry struct {
	SHA256    string    `json:"sha256"`
	Path      string    `json:"path"`
	TrustedAt time.Time `json:"trusted_at"`
}

// isSHA256Hex reports whether s is a SHA-256 in 64 lowercase hex digits.
func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (h *Host) lockPath() string {
	if h.cfg.Home == "" {
		return ""
	}
	return filepath.Join(h.cfg.Home, LockFileName)
}

// readLock reads the lock; a missing lock is an empty one. A lock others
// could write is refused: it decides what runs.
func readLock(path string) (*lockFile, error) {
	l := &lockFile{Version: 1, Plugins: map[string]lockEntry{}}
	if path == "" {
		return l, nil
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugins lock: %w", err)
	}
	if err := safeOwner(st, path); err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: plugins lock %s is writable by group or others (mode %04o); run chmod 600 %s", ErrUnsafePath, path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plugins lock: %w", err)
	}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("parse plugins lock %s: %w; fix or remove it and trust the plugins again", path, err)
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("parse plugins lock %s: version %d is not 1; this nemoclaw cannot read it", path, l.Version)
	}
	for name, e := range l.Plugins {
		if !isSHA256Hex(e.SHA256) {
			return nil, fmt.Errorf("parse plugins lock %s: plugin %s has sha256 %q, not 64 lowercase hex digits", path, name, e.SHA256)
		}
	}
	if l.Plugins == nil {
		l.Plugins = map[string]lockEntry{}
	}
	return l, nil
}

// writeLock replaces the lock atomically, readable by this user only.
func writeLock(path string, l *lockFile) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encode plugins lock: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write plugins lock: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), LockFileName+".*")
	if err != nil {
		return fmt.Errorf("write plugins lock: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write plugins lock %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write plugins lock %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write plugins lock: %w", err)
	}
	return nil
}

// Trust pins plugin name at the checksum its binary has now, in the lock
// file. It refuses a plugin whose directory or file is unsafe (pinning a
// file others can rewrite pins nothing).
func (h *Host) Trust(name string) (Plugin, error) {
	if h.lockPath() == "" {
		return Plugin{}, errors.New("trust plugin: no NEMOCLAW_HOME to hold the plugins lock")
	}
	p, err := h.find(name)
	if err != nil {
		return Plugin{}, err
	}
	if p.SHA256 == "" {
		return p, fmt.Errorf("trust plugin %s: %w", name, p.Refused)
	}
	lock, err := readLock(h.lockPath())
	if err != nil {
		return p, fmt.Errorf("trust plugin %s: %w", name, err)
	}
	lock.Plugins[name] = lockEntry{SHA256: p.SHA256, Path: p.Path, TrustedAt: time.Now().UTC().Truncate(time.Second)}
	if err := writeLock(h.lockPath(), lock); err != nil {
		return p, fmt.Errorf("trust plugin %s: %w", name, err)
	}
	p.Pin, p.PinSource, p.Refused = p.SHA256, h.lockPath(), nil
	if pin := h.cfg.Pins[name]; pin != "" {
		p.Pin, p.PinSource = pin, "profile"
		p.Refused = checkPin(p)
	}
	return p, nil
}
