package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// SignOptions say what to sign with which key.
type SignOptions struct {
	// Ref is host/repo:tag or host/repo@sha256:….
	Ref string
	// Key signs; see signing.LoadPrivateKey.
	Key *signing.Keypair
	// BundleOut, when set, also writes the bundle JSON there.
	BundleOut string
}

// Signed describes a pushed signature.
type Signed struct {
	// Subject is host/repo@sha256:… of the signed blueprint.
	Subject string
	// Referrer is the digest of the signature manifest.
	Referrer string
	// Signer is the key fingerprint.
	Signer string
}

// Sign signs the blueprint manifest Ref names and pushes the Sigstore
// bundle as its referrer (artifactType application/vnd.dev.sigstore.bundle.
// v0.3+json). On registries without the referrers API oras-go maintains
// the sha256-<hex> referrers tag instead.
func (c *Client) Sign(ctx context.Context, o SignOptions) (*Signed, error) {
	ref, err := ParseReference(o.Ref)
	if err != nil {
		return nil, err
	}
	repo, err := c.repository(ref)
	if err != nil {
		return nil, err
	}
	d, _, _, err := c.resolve(ctx, repo, ref, "")
	if err != nil {
		return nil, registryError("sign", ref, err)
	}
	subject := ref.Repo() + "@" + d.String()
	mdesc, rc, err := repo.Manifests().FetchReference(ctx, d.String())
	if err != nil {
		return nil, registryError("sign", ref, err)
	}
	mb, err := readAllVerified(rc, d, mdesc.Size)
	if err != nil {
		return nil, integrity(subject, "manifest", err)
	}
	m, err := parseBlueprintManifest(subject, mb)
	if err != nil {
		return nil, err
	}
	mdesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: m.ArtifactType, Digest: d, Size: int64(len(mb))}
	bundle, err := signing.Sign(ctx, o.Key, ref.Repo(), mb)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", subject, err)
	}
	if o.BundleOut != "" {
		if err := os.WriteFile(o.BundleOut, bundle, 0o644); err != nil {
			return nil, fmt.Errorf("sign %s: %w", subject, err)
		}
	}
	bdesc := ocispec.Descriptor{MediaType: signing.BundleMediaType, Digest: digest.FromBytes(bundle), Size: int64(len(bundle))}
	sm := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: signing.BundleMediaType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{bdesc},
		Subject:      &mdesc,
		Annotations: map[string]string{
			ocispec.AnnotationCreated: time.Now().UTC().Format(time.RFC3339),
			bundleContentAnnotation:   "dsse-envelope",
			bundlePredicateAnnotation: signing.SignPredicateType,
		},
	}
	smb, err := json.Marshal(sm)
	if err != nil {
		return nil, err
	}
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data}, {bdesc, bundle}} {
		if err := c.pushBlob(ctx, repo, ref, b.desc, b.data); err != nil {
			return nil, err
		}
	}
	sdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: signing.BundleMediaType, Digest: digest.FromBytes(smb), Size: int64(len(smb)), Annotations: sm.Annotations}
	if err := repo.Manifests().Push(ctx, sdesc, bytes.NewReader(smb)); err != nil {
		return nil, registryError("sign", ref, fmt.Errorf("push signature: %w", err))
	}
	signer := signing.Signer{KeyFingerprint: signing.Fingerprint(o.Key.Public())}
	c.progressf("signed %s with %s; signature %s", subject, signer, sdesc.Digest)
	return &Signed{Subject: subject, Referrer: sdesc.Digest.String(), Signer: signer.String()}, nil
}

// VerifyOptions say what to verify how.
type VerifyOptions struct {
	// Ref is host/repo:tag, host/repo@sha256:… or host/repo with Constraint.
	Ref string
	// Constraint is a semver constraint (see FetchOptions).
	Constraint string
	// Verification is the requirement (InsecureSkipVerify is refused).
	Verification Verification
	// Bundles are extra bundle files (offline copies from sign --bundle),
	// tried along with the registry's referrers.
	Bundles []string
}

// Verified is the result of Verify.
type Verified struct {
	// Subject is host/repo@sha256:….
	Subject string
	// Version is the blueprint's version.
	Version string
	// Signer is who signed it.
	Signer string
	// Signatures is how many signatures were found.
	Signatures int
}

// Verify checks a blueprint in the registry against its signatures without
// writing anything (no cache, no lock).
func (c *Client) Verify(ctx context.Context, o VerifyOptions) (*Verified, error) {
	ref, err := ParseReference(o.Ref)
	if err != nil {
		return nil, err
	}
	if o.Verification.InsecureSkipVerify {
		return nil, fmt.Errorf("verify %s: --insecure-skip-verify makes no sense here", ref)
	}
	req, err := c.requirement(ref.Repo(), o.Verification, nil, "")
	if err != nil {
		return nil, err
	}
	repo, err := c.repository(ref)
	if err != nil {
		return nil, err
	}
	d, _, _, err := c.resolve(ctx, repo, ref, o.Constraint)
	if err != nil {
		return nil, c.unreachable("verify", ref, nil, err)
	}
	a, sigs, err := c.download(ctx, repo, ref, d)
	if err != nil {
		return nil, c.unreachable("verify", ref, nil, err)
	}
	bundles, simple := signatureInputs(sigs)
	for _, f := range o.Bundles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", ref, err)
		}
		bundles = append(bundles, b)
	}
	subject := ref.Repo() + "@" + d.String()
	s, err := req.VerifySignatures(subject, bundles, simple, a.manifestBytes)
	if err != nil {
		return nil, err
	}
	return &Verified{Subject: subject, Version: a.manifest.Annotations[AnnotationVersion], Signer: s.String(), Signatures: len(bundles) + len(simple)}, nil
}
