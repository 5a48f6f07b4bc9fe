package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

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

// registryError says what went wrong talking to ref's registry for verb
// ("pull", "push", "sign", "verify"): a refusal passes unchanged, the rest
// is explained by explain.
func registryError(verb string, ref Reference, err error) error {
	if err == nil || IsRefusal(err) {
		return err
	}
	return fmt.Errorf("%s %s: %w", verb, ref, explain(ref, err))
}

// explain turns a registry error into its true cause: only a failed
// connection asks whether the registry runs; an HTTP error answer is a
// sentence (oras-go's text ends with the registry's detail as a Go map).
// The result wraps err, so errors.Is and errors.As still see it.
func explain(ref Reference, err error) error {
	var resp *errcode.ErrorResponse
	switch {
	case isConnError(err):
		return &connError{registry: ref.Registry, err: err}
	case errors.As(err, &resp):
		return &httpError{ref: ref, resp: resp}
	case errors.Is(err, errdef.ErrNotFound):
		return &sentenceError{msg: fmt.Sprintf("%s is not in the registry (no such repository, tag or digest)", ref), err: err}
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return &sentenceError{msg: fmt.Sprintf("the registry at %s wants credentials and none are stored for it; log in with 'nemoclaw registry login %s'", ref.Registry, ref.Registry), err: err}
	}
	return err
}

// sentenceError says a cause in a sentence of its own and wraps the error
// it explains.
type sentenceError struct {
	msg string
	err error
}

// Error implements error.
func (e *sentenceError) Error() string { return e.msg }

// Unwrap returns the explained error.
func (e *sentenceError) Unwrap() error { return e.err }

// isConnError reports whether err is a failure to reach a registry at all
// (refused, reset, unreachable, DNS, timeouts), by type, never by text.
func isConnError(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var ne net.Error
	return errors.As(err, &op) || errors.As(err, &dns) || (errors.As(err, &ne) && ne.Timeout())
}

// connError is a registry that could not be reached.
type connError struct {
	registry string
	err      error
}

// Error implements error.
func (e *connError) Error() string {
	return fmt.Sprintf("%v (is the registry at %s running and reachable?)", e.err, e.registry)
}

// Unwrap returns the cause.
func (e *connError) Unwrap() error { return e.err }

// httpError is a registry's error answer, said as a sentence.
type httpError struct {
	ref  Reference
	resp *errcode.ErrorResponse
}

// Error implements error.
func (e *httpError) Error() string {
	code, msg := "", ""
	if len(e.resp.Errors) > 0 {
		code, msg = e.resp.Errors[0].Code, e.resp.Errors[0].Message
	}
	req := e.resp.Method
	if e.resp.URL != nil {
		req += " " + e.resp.URL.Path
	}
	switch st := e.resp.StatusCode; {
	case st == http.StatusNotFound && code == errcode.ErrorCodeNameUnknown:
		return fmt.Sprintf("repository %s does not exist in the registry", e.ref.Repo())
	case st == http.StatusNotFound && code == errcode.ErrorCodeManifestUnknown:
		return fmt.Sprintf("%s is not in the registry (no such tag or digest; the registry answered 404 to %s)", e.ref, req)
	case st == http.StatusNotFound:
		return fmt.Sprintf("not found: the registry answered 404 to %s", req)
	case st == http.StatusUnauthorized:
		return fmt.Sprintf("the registry at %s wants credentials or refused the ones given (401 to %s); log in with 'nemoclaw registry login %s'", e.ref.Registry, req, e.ref.Registry)
	case st == http.StatusForbidden:
		return fmt.Sprintf("the registry at %s denied access to %s (403 to %s); check the account's permissions", e.ref.Registry, e.ref.Repo(), req)
	}
	s := fmt.Sprintf("the registry answered %d %s to %s", e.resp.StatusCode, http.StatusText(e.resp.StatusCode), req)
	if msg != "" {
		s += ": " + strings.ToLower(code) + ": " + msg
	}
	return s
}

// Unwrap returns the registry's answer (errors.Is(err, errdef.ErrNotFound)
// holds for a 404).
func (e *httpError) Unwrap() error { return e.resp }
