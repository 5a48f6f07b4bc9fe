package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// TestSecondSignatureDeleteDisabled signs one digest with two keys on a
// registry without the referrers API whose deletes are disabled (Debian's
// docker-registry as shipped): both signs succeed and either key verifies.
func TestSecondSignatureDeleteDisabled(t *testing.T) {
	t.Parallel()
	srv := newRegistryWith(t, regOptions{noDelete: true})
	repo := srv.host() + "/team/bp"
	c := newClient(t)
	keys := t.TempDir()
	prefixA, kpA := keyPair(t, keys, "a")
	prefixB, kpB := keyPair(t, keys, "b")
	p := push(t, c, blueprintDir(t, "1.0.0", ""), repo, nil)
	ctx := context.Background()
	for i, kp := range []*signing.Keypair{kpA, kpB, kpA} {
		if _, err := c.Sign(ctx, SignOptions{Ref: repo + ":1.0.0", Key: kp}); err != nil {
			t.Fatalf("sign #%d: %v", i+1, err)
		}
	}
	for _, prefix := range []string{prefixA, prefixB} {
		v, err := newClient(t).Verify(ctx, VerifyOptions{Ref: repo + "@" + p.Digest, Verification: Verification{OneOff: &signing.RequirementSpec{Keys: []string{prefix + ".pub"}}}})
		if err != nil {
			t.Fatalf("verify with %s: %v", prefix, err)
		}
		if v.Signatures < 2 {
			t.Errorf("verify with %s saw %d signatures, want at least 2", prefix, v.Signatures)
		}
	}
}

// pushReferrer pushes an unrelated artifact (an SBOM, an attestation)
// whose subject is subject: kind 0 is typed by artifactType, kind 1 only
// by its config media type (the oras 1.0 style), kind 2 not at all.
func pushReferrer(t *testing.T, c *Client, repoRef string, subject ocispec.Descriptor, kind, n int) {
	t.Helper()
	ctx := context.Background()
	ref, _ := ParseReference(repoRef)
	repo, err := c.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"sbom":%d}`, n))
	ldesc := ocispec.Descriptor{MediaType: "application/spdx+json", Digest: digest.FromBytes(body), Size: int64(len(body))}
	if err := c.pushBlob(ctx, repo, ref, ldesc, body); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{ldesc}, Subject: &subject}
	switch kind {
	case 0:
		m.ArtifactType = "application/spdx+json"
	case 1:
		cfg := []byte("{}")
		m.Config = ocispec.Descriptor{MediaType: "application/vnd.unknown.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
		if err := c.pushBlob(ctx, repo, ref, m.Config, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.pushBlob(ctx, repo, ref, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		t.Fatal(err)
	}
	mb, _ := json.Marshal(m)
	if err := repo.Manifests().Push(ctx, ocispec.Descriptor{MediaType: m.MediaType, ArtifactType: m.ArtifactType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
}

// TestSignatureBehindManyReferrers: 40 unrelated referrers pushed before
// the one valid signature never hide it, with the referrers API and with
// the tag fallback (where the index lists them in push order).
func TestSignatureBehindManyReferrers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts regOptions
	}{
		{"referrers API", regOptions{referrers: true}},
		{"tag fallback, deletes disabled", regOptions{noDelete: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newRegistryWith(t, tc.opts)
			repo := srv.host() + "/team/bp"
			c := newClient(t)
			prefix, kp := keyPair(t, t.TempDir(), "publisher")
			p := push(t, c, blueprintDir(t, "1.0.0", ""), repo, nil)
			_, subject := manifestOf(t, c, repo, p.Digest)
			for i := range 40 {
				pushReferrer(t, c, repo, subject, i%3, i)
			}
			if _, err := c.Sign(context.Background(), SignOptions{Ref: repo + ":1.0.0", Key: kp}); err != nil {
				t.Fatal(err)
			}
			consumer := newClient(t)
			trustKey(t, consumer, srv.host()+"/team/*", prefix+".pub")
			f, err := consumer.Fetch(context.Background(), FetchOptions{Ref: repo + ":1.0.0"})
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if f.Signer != "key "+signing.Fingerprint(kp.Public()) {
				t.Errorf("signer %q", f.Signer)
			}
		})
	}
}
