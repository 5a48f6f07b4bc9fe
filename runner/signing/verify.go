package signing

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
)

// timeZero leaves a trusted key's validity unbounded: a key is trusted until
// it is removed from the trust policy.
var timeZero time.Time

// Identity is a keyless signer: the OIDC issuer and the certificate's
// subject alternative name (an email, a workflow URI), each exact or a
// regular expression.
type Identity struct {
	// Issuer is the exact OIDC issuer URL.
	Issuer string `yaml:"issuer,omitempty" json:"issuer,omitempty"`
	// IssuerRegexp matches the OIDC issuer when Issuer is empty.
	IssuerRegexp string `yaml:"issuer_regexp,omitempty" json:"issuer_regexp,omitempty"`
	// Subject is the exact certificate SAN.
	Subject string `yaml:"subject,omitempty" json:"subject,omitempty"`
	// SubjectRegexp matches the SAN when Subject is empty.
	SubjectRegexp string `yaml:"subject_regexp,omitempty" json:"subject_regexp,omitempty"`
}

// String implements fmt.Stringer.
func (i Identity) String() string {
	s, is := i.Subject, i.Issuer
	if s == "" {
		s = "~" + i.SubjectRegexp
	}
	if is == "" {
		is = "~" + i.IssuerRegexp
	}
	return s + " from " + is
}

// TrustedKey is a public key trusted to sign, with the name it came from.
type TrustedKey struct {
	// Name is where the key came from (its file), for messages.
	Name string
	// Key is the public key.
	Key crypto.PublicKey
}

// Requirement is what a blueprint's signature must satisfy: made by one of
// Keys, or by one of Identities under TrustedRoot. It is built from a trust
// policy rule or from one-off command-line flags.
type Requirement struct {
	// Keys are the trusted public keys.
	Keys []TrustedKey
	// Identities are the trusted keyless identities.
	Identities []Identity
	// TrustedRoot anchors keyless certificates, transparency logs and
	// timestamps; required when Identities is not empty.
	TrustedRoot root.TrustedMaterial
	// DecidedBy names the rule or flags this requirement came from.
	DecidedBy string
}

// Signer says who made a verified signature.
type Signer struct {
	// KeyFingerprint is set for key-based signatures ("sha256:<hex>").
	KeyFingerprint string
	// Issuer and Subject are set for keyless signatures.
	Issuer, Subject string
}

// String is the signer as recorded in nemoclaw.lock: "key sha256:…" or
// "SUBJECT (issuer ISSUER)".
func (s Signer) String() string {
	if s.KeyFingerprint != "" {
		return "key " + s.KeyFingerprint
	}
	return s.Subject + " (issuer " + s.Issuer + ")"
}

// VerifyBundles checks that at least one of bundles (Sigstore bundle JSON)
// is a valid signature over artifact by a signer r trusts. subject names the
// artifact in errors (e.g. "host/repo@sha256:…").
func (r *Requirement) VerifyBundles(subject string, bundles [][]byte, artifact []byte) (*Signer, error) {
	return r.VerifySignatures(subject, bundles, nil, artifact)
}

// VerifySignatures is VerifyBundles that also tries legacy cosign
// signatures (simple).
func (r *Requirement) VerifySignatures(subject string, bundles [][]byte, simple []SimpleSignature, artifact []byte) (*Signer, error) {
	if len(bundles) == 0 && len(simple) == 0 {
		return nil, &VerificationError{
			Subject:   subject,
			Reason:    "no signature found (no Sigstore bundle referrer on the manifest, no cosign sha256-<hex>.sig tag)",
			DecidedBy: r.DecidedBy,
			Hint:      "sign it with 'nemoclaw blueprint sign REF --key PREFIX.key', or pass --insecure-skip-verify to accept an unsigned blueprint",
		}
	}
	var reasons []string
	for i, raw := range bundles {
		var b bundle.Bundle
		if err := b.UnmarshalJSON(raw); err != nil {
			reasons = append(reasons, fmt.Sprintf("bundle %d: not a valid Sigstore bundle: %v", i+1, err))
			continue
		}
		s, err := r.VerifyEntity(&b, artifact)
		if err == nil {
			return s, nil
		}
		reasons = append(reasons, fmt.Sprintf("bundle %d: %v", i+1, err))
	}
	for i, sig := range simple {
		s, err := r.verifySimple(sig, artifact)
		if err == nil {
			return s, nil
		}
		reasons = append(reasons, fmt.Sprintf("legacy cosign signature %d: %v", i+1, err))
	}
	return nil, &VerificationError{
		Subject:   subject,
		Reason:    "no signature verifies: " + strings.Join(reasons, "; "),
		DecidedBy: r.DecidedBy,
		Hint:      "check that the blueprint was signed by a trusted key or identity and not modified since, or update the trust policy",
	}
}

// VerifyEntity verifies one signed entity (a parsed bundle, or a test
// entity) over artifact against r. Its errors are plain; VerifyBundles wraps
// them into a *VerificationError.
func (r *Requirement) VerifyEntity(entity verify.SignedEntity, artifact []byte) (*Signer, error) {
	vc, err := entity.VerificationContent()
	if err != nil {
		return nil, err
	}
	if vc.PublicKey() != nil {
		return r.verifyKey(entity, artifact)
	}
	if vc.Certificate() != nil {
		return r.verifyIdentity(entity, artifact)
	}
	return nil, errors.New("bundle has neither a public key hint nor a certificate")
}

func (r *Requirement) verifyKey(entity verify.SignedEntity, artifact []byte) (*Signer, error) {
	if len(r.Keys) == 0 {
		return nil, errors.New("signed with a key, but no public key is trusted here (only keyless identities)")
	}
	var errs []string
	for _, k := range r.Keys {
		v, err := signature.LoadVerifier(k.Key, crypto.SHA256)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k.Name, err))
			continue
		}
		ek := root.NewExpiringKey(v, timeZero, timeZero)
		material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return ek, nil })
		verifier, err := verify.NewVerifier(material, verify.WithNoObserverTimestamps())
		if err != nil {
			return nil, err
		}
		var res *verify.VerificationResult
		res, err = verifier.Verify(entity, verify.NewPolicy(artifactPolicy(entity, artifact), verify.WithKey()))
		if err == nil {
			if err = checkStatement(res); err != nil {
				return nil, err
			}
			return &Signer{KeyFingerprint: Fingerprint(k.Key)}, nil
		}
		errs = append(errs, fmt.Sprintf("not signed by %s: %v", k.Name, err))
	}
	return nil, errors.New(strings.Join(errs, "; "))
}

func (r *Requirement) verifyIdentity(entity verify.SignedEntity, artifact []byte) (*Signer, error) {
	if len(r.Identities) == 0 {
		return nil, errors.New("signed keylessly (certificate), but no keyless identity is trusted here (only keys)")
	}
	if r.TrustedRoot == nil {
		return nil, errors.New("keyless signature needs a trusted root (--trusted-root FILE or trusted_root in the trust policy)")
	}
	opts := []verify.PolicyOption{}
	for _, id := range r.Identities {
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, id.IssuerRegexp, id.Subject, id.SubjectRegexp)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", id, err)
		}
		opts = append(opts, verify.WithCertificateIdentity(ci))
	}
	verifier, err := verify.NewVerifier(r.TrustedRoot, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
	if err != nil {
		return nil, err
	}
	res, err := verifier.Verify(entity, verify.NewPolicy(artifactPolicy(entity, artifact), opts...))
	if err != nil {
		return nil, err
	}
	if err := checkStatement(res); err != nil {
		return nil, err
	}
	s := &Signer{}
	if res.Signature != nil && res.Signature.Certificate != nil {
		s.Subject = res.Signature.Certificate.SubjectAlternativeName
		s.Issuer = res.Signature.Certificate.Extensions.Issuer
	}
	return s, nil
}

// artifactPolicy says what entity must sign: a DSSE envelope (cosign's
// form, and nemoclaw's since) an in-toto statement whose subject is the
// manifest's sha256 digest; a message signature (nemoclaw's first form)
// the manifest's bytes.
func artifactPolicy(entity verify.SignedEntity, manifest []byte) verify.ArtifactPolicyOption {
	if sc, err := entity.SignatureContent(); err == nil && sc.EnvelopeContent() != nil {
		sum := sha256.Sum256(manifest)
		return verify.WithArtifactDigest("sha256", sum[:])
	}
	return verify.WithArtifact(bytes.NewReader(manifest))
}

// checkStatement accepts a verified in-toto statement only as a signature
// (SignPredicateType): an attestation the same key made over the same
// digest (an SBOM, a provenance) says something else and is not one.
func checkStatement(res *verify.VerificationResult) error {
	if res == nil || res.Statement == nil {
		return nil
	}
	if pt := res.Statement.GetPredicateType(); pt != SignPredicateType {
		return fmt.Errorf("the signed statement is an attestation of type %q, not a signature (%s)", pt, SignPredicateType)
	}
	return nil
}
