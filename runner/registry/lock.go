package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"
)

// DefaultLockFile is the lock file's name, in the current directory unless
// --lock says otherwise.
const DefaultLockFile = "nemoclaw.lock"

// Lock is nemoclaw.lock: the digests a project's blueprints are pinned to.
// It is YAML:
//
//	version: 1
//	blueprints:
//	  - ref: registry.example.com/team/bp
//	    constraint: ~> 1.2
//	    tag: 1.2.3
//	    version: 1.2.3
//	    digest: sha256:…
//	    signer: key sha256:…
type Lock struct {
	// Version is the format version; only 1 exists.
	Version int `yaml:"version"`
	// Blueprints has one entry per repository, sorted by Ref.
	Blueprints []LockEntry `yaml:"blueprints"`
}

// LockEntry pins one repository.
type LockEntry struct {
	// Ref is the repository, host/repo.
	Ref string `yaml:"ref"`
	// Constraint is the semver constraint it was resolved with, if any.
	Constraint string `yaml:"constraint,omitempty"`
	// Tag is the tag that was resolved, if any.
	Tag string `yaml:"tag,omitempty"`
	// Version is the blueprint's version (its manifest annotation).
	Version string `yaml:"version"`
	// Digest is the manifest digest; an apply with a lock uses only this.
	Digest string `yaml:"digest"`
	// Signer is who signed it ("key sha256:…", "SUBJECT (issuer URL)"),
	// or "unverified" when it was accepted with --insecure-skip-verify.
	Signer string `yaml:"signer"`
}

// ReadLock reads a lock file strictly; a missing file is an empty lock.
func ReadLock(path string) (*Lock, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Lock{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return ParseLock(path, data)
}

// ParseLock decodes lock file data; path is used in messages.
func ParseLock(path string, data []byte) (*Lock, error) {
	l := &Lock{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(l); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("lock %s: %w (valid keys: version, blueprints[].ref, constraint, tag, version, digest, signer)", path, err)
	}
	if l.Version == 0 && len(l.Blueprints) == 0 {
		l.Version = 1
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("lock %s: version %d: want version: 1", path, l.Version)
	}
	seen := map[string]bool{}
	for i, e := range l.Blueprints {
		if _, err := ParseReference(e.Ref); err != nil || e.Ref == "" {
			return nil, fmt.Errorf("lock %s: blueprints[%d].ref %q: want host/repo", path, i, e.Ref)
		}
		if seen[e.Ref] {
			return nil, fmt.Errorf("lock %s: blueprints[%d].ref %q appears twice", path, i, e.Ref)
		}
		seen[e.Ref] = true
		if _, err := parseDigest(e.Digest); err != nil {
			return nil, fmt.Errorf("lock %s: blueprints[%d].digest %q: %w", path, i, e.Digest, err)
		}
	}
	return l, nil
}

// Find returns the entry for repository (host/repo), or nil.
func (l *Lock) Find(repository string) *LockEntry {
	for i := range l.Blueprints {
		if l.Blueprints[i].Ref == repository {
			return &l.Blueprints[i]
		}
	}
	return nil
}

// Set adds or replaces the entry for e.Ref.
func (l *Lock) Set(e LockEntry) {
	if old := l.Find(e.Ref); old != nil {
		*old = e
		return
	}
	l.Blueprints = append(l.Blueprints, e)
	sort.Slice(l.Blueprints, func(i, j int) bool { return l.Blueprints[i].Ref < l.Blueprints[j].Ref })
}

// Write saves the lock atomically (temp file + rename).
func (l *Lock) Write(path string) error {
	l.Version = 1
	var buf bytes.Buffer
	buf.WriteString("# nemoclaw.lock: blueprint digests pinned by 'nemoclaw blueprint pull'.\n# Change it with 'nemoclaw blueprint update', not by hand.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(l); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if err := writeFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return nil
}

// writeFileAtomic writes data to path through a temp file in the same
// directory, so readers see the old or the new file, never a torn one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}
