package signing

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
)

// cosign's legacy signature format: a manifest tagged sha256-<hex>.sig
// whose layers are "simple signing" payloads, each with its signature in
// an annotation. Most signed artifacts in registries still use it.
const (
	// SimpleSigningMediaType is the media type of a legacy payload layer.
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// SimpleSigningAnnotation holds the layer's base64 signature.
	SimpleSigningAnnotation = "dev.cosignproject.cosign/signature"
	// SimpleSigningCertAnnotation holds a keyless signature's certificate.
	SimpleSigningCertAnnotation = "dev.sigstore.cosign/certificate"
	// simpleSigningType is the payload's critical.type.
	simpleSigningType = "cosign container image signature"
)

// SimpleSignature is one legacy cosign signature: the payload layer's
// bytes (already checked against its digest) and its annotations.
type SimpleSignature struct {
	// Payload is the simple signing JSON.
	Payload []byte
	// Signature is the base64 signature over Payload.
	Signature string
	// Certificate is set for keyless signatures.
	Certificate string
}

// simplePayload is the part of a simple signing payload that is checked.
type simplePayload struct {
	Critical struct {
		Image struct {
			Digest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// verifySimple checks a legacy signature: made by a trusted key over its
// payload, and the payload names manifest's digest.
func (r *Requirement) verifySimple(s SimpleSignature, manifest []byte) (*Signer, error) {
	if s.Certificate != "" {
		return nil, errors.New("a keyless signature in cosign's legacy format is not supported (its transparency log proof is not checked here); sign with 'cosign sign --new-bundle-format' or 'nemoclaw blueprint sign'")
	}
	if len(r.Keys) == 0 {
		return nil, errors.New("signed with a key (cosign's legacy format), but no public key is trusted here (only keyless identities)")
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) == 0 {
		return nil, fmt.Errorf("legacy signature annotation %s is not base64", SimpleSigningAnnotation)
	}
	var errs []string
	for _, k := range r.Keys {
		v, err := signature.LoadVerifier(k.Key, crypto.SHA256)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k.Name, err))
			continue
		}
		if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(s.Payload)); err != nil {
			errs = append(errs, fmt.Sprintf("not signed by %s: %v", k.Name, err))
			continue
		}
		var p simplePayload
		if err := json.Unmarshal(s.Payload, &p); err != nil {
			return nil, fmt.Errorf("legacy signature payload: %w", err)
		}
		sum := sha256.Sum256(manifest)
		if want := "sha256:" + hex.EncodeToString(sum[:]); p.Critical.Image.Digest != want || p.Critical.Type != simpleSigningType {
			return nil, fmt.Errorf("legacy signature by %s is over %s (%q), not %s", k.Name, p.Critical.Image.Digest, p.Critical.Type, want)
		}
		return &Signer{KeyFingerprint: Fingerprint(k.Key)}, nil
	}
	return nil, errors.New(strings.Join(errs, "; "))
}
