package registry

import (
	"fmt"

	"github.com/nemoclaw/nemoclaw/runner/state"
)

// DefaultLockFile is the lock file's name, in the current directory unless
// --lock says otherwise.
const DefaultLockFile = state.DefaultLockFile

// Lock is nemoclaw.lock (state.Lock: a rollback restores pins from the
// lean nemoclaw, which links no registry code).
type Lock = state.Lock

// LockEntry pins one repository (state.LockEntry).
type LockEntry = state.LockEntry

// ReadLock reads a lock file strictly; a missing file is an empty lock.
func ReadLock(path string) (*Lock, error) { return state.ReadLock(path, checkLockEntry) }

// ParseLock decodes lock file data; path is used in messages.
func ParseLock(path string, data []byte) (*Lock, error) {
	return state.ParseLock(path, data, checkLockEntry)
}

// checkLockEntry refuses an entry whose ref is not a repository or whose
// digest is not a sha256 digest.
func checkLockEntry(e LockEntry) error {
	if _, err := ParseReference(e.Ref); err != nil {
		return fmt.Errorf("ref %q: want host/repo", e.Ref)
	}
	if _, err := parseDigest(e.Digest); err != nil {
		return fmt.Errorf("digest %q: %w", e.Digest, err)
	}
	return nil
}
