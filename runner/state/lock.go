package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
)

// The lock file's model lives here, not in runner/registry, because a
// rollback restores a pin from the lean nemoclaw, which links no registry
// code; runner/registry adds its reference checks (ParseLock's check).

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
	Ref string `yaml:"ref" json:"ref"`
	// Constraint is the semver constraint it was resolved with, if any.
	Constraint string `yaml:"constraint,omitempty" json:"constraint,omitempty"`
	// Tag is the tag that was resolved, if any.
	Tag string `yaml:"tag,omitempty" json:"tag,omitempty"`
	// Version is the blueprint's version (its manifest annotation).
	Version string `yaml:"version" json:"version"`
	// Digest is the manifest digest; an apply with a lock uses only this.
	Digest string `yaml:"digest" json:"digest"`
	// Signer is who signed it ("key sha256:…", "SUBJECT (issuer URL)"),
	// or "unverified" when it was accepted with --insecure-skip-verify.
	Signer string `yaml:"signer" json:"signer"`
}

// sha256Digest is the only digest form a lock holds.
var sha256Digest = pattern("sha256:" + strings.Repeat("f", 64))

// ReadLock reads a lock file strictly; a missing file is an empty lock.
// check, if not nil, is asked about every entry (see ParseLock).
func ReadLock(path string, check func(LockEntry) error) (*Lock, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Lock{Version: 1}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return ParseLock(path, data, check)
}

// ParseLock decodes lock file data; path is used in messages. Every entry
// needs a ref, once, and a sha256 digest; check, if not nil, may refuse an
// entry for more (runner/registry parses the reference).
func ParseLock(path string, data []byte, check func(LockEntry) error) (*Lock, error) {
	l := &Lock{}
	// The strict decoder names file:line:col and the valid keys, and refuses
	// YAML anchors and aliases as for every other nemoclaw file; an empty
	// lock file is an empty lock.
	if _, err := strictyaml.Decode(path, data, l); err != nil && !errors.Is(err, strictyaml.ErrEmpty) {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if l.Version == 0 && len(l.Blueprints) == 0 {
		l.Version = 1
	}
	if l.Version != 1 {
		return nil, fmt.Errorf("lock %s: version %d: want version: 1", path, l.Version)
	}
	seen := map[string]bool{}
	for i, e := range l.Blueprints {
		if e.Ref == "" {
			return nil, fmt.Errorf("lock %s: blueprints[%d].ref is empty: want host/repo", path, i)
		}
		if seen[e.Ref] {
			return nil, fmt.Errorf("lock %s: blueprints[%d].ref %q appears twice", path, i, e.Ref)
		}
		seen[e.Ref] = true
		if !sha256Digest.MatchString(e.Digest) {
			return nil, fmt.Errorf("lock %s: blueprints[%d].digest %q: want sha256:<64 hex digits>", path, i, e.Digest)
		}
		if check != nil {
			if err := check(e); err != nil {
				return nil, fmt.Errorf("lock %s: blueprints[%d]: %w", path, i, err)
			}
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

// Encode returns the lock file's bytes.
func (l *Lock) Encode() ([]byte, error) {
	l.Version = 1
	var buf bytes.Buffer
	buf.WriteString("# nemoclaw.lock: blueprint digests pinned by 'nemoclaw blueprint pull'.\n# Change it with 'nemoclaw blueprint update', not by hand.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(l); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write saves the lock atomically (a synced temporary file renamed over
// path), mode 0644: a project's lock is meant to be committed and shared.
func (l *Lock) Write(path string) error {
	b, err := l.Encode()
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	if err := writeAtomicMode(path, b, 0o644); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return nil
}
