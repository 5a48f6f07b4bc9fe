package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// RefusedError is a fail-closed refusal that is not about signatures:
// content that does not match its digest, a tag moved after locking, a
// downgrade below the lock. The CLI maps it (like
// *signing.VerificationError) to exit code 3.
type RefusedError struct {
	// Subject is what was refused, e.g. "host/repo@sha256:…".
	Subject string
	// Reason says what was wrong.
	Reason string
	// DecidedBy names the check, file or rule that decided.
	DecidedBy string
	// Hint says what the user can do.
	Hint string
	// Err is the underlying cause, when there is one.
	Err error
}

// Error implements error.
func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: refused: %s", e.Subject, e.Reason)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.DecidedBy != "" {
		fmt.Fprintf(&b, " (decided by %s)", e.DecidedBy)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "; %s", e.Hint)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *RefusedError) Unwrap() error { return e.Err }

// IsRefusal reports whether err is a refusal by verification (a
// *RefusedError or a *signing.VerificationError), as opposed to an
// operational error such as an unreachable registry.
func IsRefusal(err error) bool {
	var re *RefusedError
	return errors.As(err, &re) || signing.IsVerificationError(err)
}
