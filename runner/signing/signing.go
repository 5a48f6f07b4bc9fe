// Package signing signs and verifies nemoclaw blueprints with Sigstore bundles.
//
// A blueprint's signature is a Sigstore bundle (media type
// application/vnd.dev.sigstore.bundle.v0.3+json) whose message signature
// covers the exact bytes of the blueprint's OCI manifest, so the bundle's
// message digest is the manifest digest: a signature over any other manifest
// does not verify. Key-based signing is fully offline (an ECDSA P-256 key in
// the same encrypted PEM format cosign uses); verification accepts a public
// key, or a keyless identity (OIDC issuer + certificate SAN) checked against a
// Sigstore trusted_root.json.
//
// Which keys and identities are trusted for which registry/repository is the
// trust policy ($NEMOCLAW_HOME/trust/policy.yaml, see TrustPolicy). Every
// failure is a *VerificationError that names what was refused, which rule
// decided it and what the user can do; callers map it to exit code 3.
package signing

import (
	"errors"
	"fmt"
	"strings"
)

// BundleMediaType is the media type of a Sigstore bundle v0.3, used both as
// the referrer manifest's artifactType and as its layer's media type.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// VerificationError is a refusal: a blueprint's signature is missing, does
// not verify, or was made by someone the trust policy does not trust.
type VerificationError struct {
	// Subject is what was being verified, e.g. "host/repo@sha256:…".
	Subject string
	// Reason says what was wrong.
	Reason string
	// DecidedBy names the rule or flag whose requirement was not met.
	DecidedBy string
	// Hint says what the user can do.
	Hint string
	// Err is the underlying cause, when there is one.
	Err error
}

// Error implements error.
func (e *VerificationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verify %s: refused: %s", e.Subject, e.Reason)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.DecidedBy != "" {
		fmt.Fprintf(&b, " (required by %s)", e.DecidedBy)
	}
	if e.Hint != "" {
		fmt.Fprintf(&b, "; %s", e.Hint)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *VerificationError) Unwrap() error { return e.Err }

// IsVerificationError reports whether err is or wraps a *VerificationError.
func IsVerificationError(err error) bool {
	var ve *VerificationError
	return errors.As(err, &ve)
}
