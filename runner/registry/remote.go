package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// integrity turns a content check failure into a refusal; other errors
// (network, auth) pass through unchanged.
func integrity(subject, what string, err error) error {
	switch {
	case errors.Is(err, content.ErrMismatchedDigest):
		return &RefusedError{Subject: subject, Reason: what + " does not match its digest (modified in the registry or in transit)", DecidedBy: "digest check", Err: err,
			Hint: "do not use this registry content; ask the publisher to push it again"}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, content.ErrTrailingData), errors.Is(err, content.ErrInvalidDescriptorSize),
		// oras-go reports a Content-Length that differs from the
		// descriptor's size with an untyped error.
		err != nil && strings.Contains(err.Error(), "mismatch Content-Length"):
		return &RefusedError{Subject: subject, Reason: what + " has the wrong size (truncated or padded)", DecidedBy: "digest check", Err: err,
			Hint: "do not use this registry content; ask the publisher to push it again"}
	}
	return err
}

// maxReferrers bounds how many referrer manifests are read per blueprint.
const maxReferrers = 32

// progressLimit is the size above which a transfer prints percentages.
const progressLimit = 1 << 20

// fetchBlob reads desc from repo, verifying size and digest.
func (c *Client) fetchBlob(ctx context.Context, fetch func(context.Context, ocispec.Descriptor) (io.ReadCloser, error), subject, what string, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit || desc.Size < 0 {
		return nil, &RefusedError{Subject: subject, Reason: fmt.Sprintf("%s of %d bytes is over the %d byte limit", what, desc.Size, limit)}
	}
	rc, err := fetch(ctx, desc)
	if err != nil {
		return nil, integrity(subject, what+" "+desc.Digest.String(), fmt.Errorf("fetch %s %s: %w", what, desc.Digest, err))
	}
	defer rc.Close()
	var r io.Reader = rc
	if desc.Size >= progressLimit && c.cfg.Progress != nil {
		r = &progressReader{r: rc, total: desc.Size, w: c.cfg.Progress, label: "pull " + what + " " + short(desc.Digest)}
	}
	b, err := content.ReadAll(r, desc)
	if err != nil {
		return nil, integrity(subject, what+" "+desc.Digest.String(), fmt.Errorf("fetch %s: %w", what, err))
	}
	return b, nil
}

// download fetches blueprint d from repo into memory and checks every byte
// against its digest, then fetches its signature referrers. Nothing is
// written anywhere. With d empty, ref.Tag is fetched directly (one request
// instead of resolve + fetch) and the digest is computed from the bytes
// received: a tag is mutable, so the bytes are what gets verified and locked.
func (c *Client) download(ctx context.Context, repo *remote.Repository, ref Reference, d digest.Digest) (*artifact, []sigArtifact, error) {
	reference := d.String()
	if d == "" {
		reference = ref.Tag
	}
	subject := ref.Repo() + "@" + reference
	if d == "" {
		subject = ref.Repo() + ":" + reference
	}
	mdesc, rc, err := repo.Manifests().FetchReference(ctx, reference)
	if err != nil {
		return nil, nil, integrity(subject, "manifest", fmt.Errorf("fetch %s: %w", subject, err))
	}
	defer rc.Close()
	if mdesc.Size > maxManifestBytes {
		return nil, nil, &RefusedError{Subject: subject, Reason: fmt.Sprintf("manifest of %d bytes is over the %d byte limit", mdesc.Size, maxManifestBytes)}
	}
	var mb []byte
	if d == "" {
		if mb, err = io.ReadAll(io.LimitReader(rc, mdesc.Size+1)); err == nil && int64(len(mb)) != mdesc.Size {
			err = fmt.Errorf("read %d bytes, Content-Length says %d: %w", len(mb), mdesc.Size, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, nil, integrity(subject, "manifest", fmt.Errorf("fetch manifest: %w", err))
		}
		d = digest.FromBytes(mb)
		subject = ref.Repo() + "@" + d.String()
		mdesc.Digest = d
		c.progressf("resolved %s to %s", ref, d)
	} else {
		mdesc.Digest = d // check the bytes against the digest we asked for
		if mb, err = content.ReadAll(rc, mdesc); err != nil {
			return nil, nil, integrity(subject, "manifest", fmt.Errorf("fetch manifest: %w", err))
		}
	}
	m, err := parseBlueprintManifest(subject, mb)
	if err != nil {
		return nil, nil, err
	}
	mdesc.MediaType = ocispec.MediaTypeImageManifest
	mdesc.ArtifactType = m.ArtifactType
	mdesc.Annotations = m.Annotations
	// The signatures are listed and fetched while the layer downloads: on
	// registries without the referrers API that is several round trips.
	type sigResult struct {
		sigs []sigArtifact
		err  error
	}
	sigc, legacyc := make(chan sigResult, 1), make(chan sigResult, 1)
	go func() {
		sigs, err := c.fetchSignatures(ctx, repo, subject, mdesc)
		sigc <- sigResult{sigs, err}
	}()
	go func() {
		legacy, err := c.fetchSimpleSignatures(ctx, repo, subject, mdesc.Digest)
		var sigs []sigArtifact
		if legacy != nil {
			sigs = append(sigs, *legacy)
		}
		legacyc <- sigResult{sigs, err}
	}()
	layer, err := c.fetchBlob(ctx, repo.Blobs().Fetch, subject, "layer", m.Layers[0], maxBlueprintBytes)
	sr, lr := <-sigc, <-legacyc
	if err != nil {
		return nil, nil, err
	}
	if sr.err == nil {
		sr.err = lr.err
	}
	if sr.err != nil {
		return nil, nil, sr.err
	}
	sr.sigs = append(sr.sigs, lr.sigs...)
	c.progressf("fetched %s (%s, layer %s, %d signature(s))", subject, m.Annotations[AnnotationVersion], humanBytes(m.Layers[0].Size), len(sr.sigs))
	a := &artifact{manifestDesc: mdesc, manifestBytes: mb, manifest: m, layerDesc: m.Layers[0], layer: layer}
	return a, sr.sigs, nil
}

// fetchSignatures lists the Sigstore bundle referrers of desc (through the
// referrers API, or the sha256-<hex> tag fallback on registries without
// it) and fetches each one, checked against its digest.
func (c *Client) fetchSignatures(ctx context.Context, repo *remote.Repository, subject string, desc ocispec.Descriptor) ([]sigArtifact, error) {
	refs, err := signatureCandidates(ctx, repo, desc)
	if err != nil {
		return nil, fmt.Errorf("list signatures of %s: %w", subject, err)
	}
	var sigs []sigArtifact
	if len(refs) > maxReferrers {
		c.log.Warn("too many signature referrers; checking only the first ones", "subject", subject, "referrers", len(refs), "checked", maxReferrers)
		refs = refs[:maxReferrers]
	}
	for _, r := range refs {
		r.MediaType = ocispec.MediaTypeImageManifest
		mb, err := c.fetchBlob(ctx, repo.Manifests().Fetch, subject, "signature manifest", r, maxManifestBytes)
		if err != nil {
			return nil, err
		}
		bdesc, err := parseSigManifest(mb, desc.Digest)
		if err != nil {
			c.log.Warn("ignoring a malformed signature referrer", "subject", subject, "referrer", r.Digest, "err", err)
			continue
		}
		b, err := c.fetchBlob(ctx, repo.Blobs().Fetch, subject, "signature bundle", bdesc, maxBundleBytes)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, sigArtifact{desc: r, manifestBytes: mb, bundleDesc: bdesc, bundle: b})
	}
	return sigs, nil
}

// simpleSigTag is the tag of cosign's legacy signature manifest for d.
func simpleSigTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

// fetchSimpleSignatures fetches cosign's legacy signatures of d (the
// manifest tagged sha256-<hex>.sig and its simple signing payloads, each
// checked against its digest); nil when there is none.
func (c *Client) fetchSimpleSignatures(ctx context.Context, repo *remote.Repository, subject string, d digest.Digest) (*sigArtifact, error) {
	mdesc, rc, err := repo.Manifests().FetchReference(ctx, simpleSigTag(d))
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fetch cosign signature tag %s: %w", simpleSigTag(d), err)
	}
	mb, err := readAllVerified(rc, mdesc.Digest, mdesc.Size)
	if err != nil {
		return nil, integrity(subject, "cosign signature manifest", err)
	}
	layers, err := parseSimpleSigManifest(mb)
	if err != nil {
		c.log.Warn("ignoring a malformed cosign signature manifest", "subject", subject, "tag", simpleSigTag(d), "err", err)
		return nil, nil
	}
	sig := &sigArtifact{desc: ocispec.Descriptor{MediaType: mdesc.MediaType, Digest: mdesc.Digest, Size: mdesc.Size}, manifestBytes: mb}
	for _, l := range layers {
		b, err := c.fetchBlob(ctx, repo.Blobs().Fetch, subject, "cosign signature payload", l, maxBundleBytes)
		if err != nil {
			return nil, err
		}
		sig.simple = append(sig.simple, simpleLayer{desc: l, payload: b})
	}
	return sig, nil
}

// parseSimpleSigManifest returns the simple signing layers of a legacy
// cosign signature manifest, at most maxReferrers of them.
func parseSimpleSigManifest(mb []byte) ([]ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, err
	}
	var layers []ocispec.Descriptor
	for _, l := range m.Layers {
		if l.MediaType == signing.SimpleSigningMediaType && len(layers) < maxReferrers {
			layers = append(layers, l)
		}
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("no %s layer", signing.SimpleSigningMediaType)
	}
	return layers, nil
}

// signatureInputs splits sigs into bundles and legacy signatures.
func signatureInputs(sigs []sigArtifact) (bundles [][]byte, simple []signing.SimpleSignature) {
	for _, s := range sigs {
		if s.bundle != nil {
			bundles = append(bundles, s.bundle)
		}
		for _, l := range s.simple {
			simple = append(simple, signing.SimpleSignature{Payload: l.payload, Signature: l.desc.Annotations[signing.SimpleSigningAnnotation], Certificate: l.desc.Annotations[signing.SimpleSigningCertAnnotation]})
		}
	}
	return bundles, simple
}

// Annotations of signature manifests, as cosign sets them: the bundle's
// content ("dsse-envelope"; nemoclaw's first form said
// "message-signature") and its statement's predicate type.
const (
	bundleContentAnnotation   = "dev.sigstore.bundle.content"
	bundlePredicateAnnotation = "dev.sigstore.bundle.predicateType"
)

// signatureCandidates lists the referrers of desc that may be Sigstore
// bundles, most likely first, so that the cap on how many are read never
// hides a signature behind SBOMs, attestations or other artifacts: first
// those typed as bundles, then untyped ones (artifactType empty or the
// empty config's type) with a bundle annotation, then other untyped ones;
// referrers typed as anything else are dropped. The classification is
// client-side on one unfiltered listing: cosign v2 sets the bundle type only
// on its referrer's config descriptor, so its signatures' artifactType is
// the empty config's and the referrers API's artifactType filter would
// hide them (go-containerregistry's registry reports every referrer that
// way).
func signatureCandidates(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var typed, annotated, untyped []ocispec.Descriptor
	err := repo.Referrers(ctx, desc, "", func(rs []ocispec.Descriptor) error {
		for _, r := range rs {
			switch {
			case r.ArtifactType == signing.BundleMediaType:
				typed = append(typed, r)
			case r.ArtifactType != "" && r.ArtifactType != ocispec.MediaTypeEmptyJSON:
				// Typed as something else.
			case r.Annotations[bundleContentAnnotation] != "":
				annotated = append(annotated, r)
			default:
				untyped = append(untyped, r)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return nil, err
	}
	return append(append(typed, annotated...), untyped...), nil
}

// short abbreviates a digest for progress lines.
func short(d digest.Digest) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

// humanBytes formats n as B, KiB or MiB.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progressReader prints a line at every 10% of a large transfer.
type progressReader struct {
	r     io.Reader
	w     io.Writer
	label string
	total int64
	n     int64
	last  int64
}

// Read implements io.Reader.
func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.total > 0 {
		pct := p.n * 100 / p.total
		if pct >= p.last+10 || (pct == 100 && p.last != 100) {
			p.last = pct - pct%10
			if pct == 100 {
				p.last = 100
			}
			_, _ = fmt.Fprintf(p.w, "%s: %3d%% of %s\n", p.label, pct, humanBytes(p.total))
		}
	}
	return n, err
}

// readAllVerified reads rc fully and checks it against d and size.
func readAllVerified(rc io.ReadCloser, d digest.Digest, size int64) ([]byte, error) {
	defer rc.Close()
	if size > maxManifestBytes {
		return nil, fmt.Errorf("%d bytes is over the %d byte limit", size, maxManifestBytes)
	}
	return content.ReadAll(rc, ocispec.Descriptor{Digest: d, Size: size})
}
