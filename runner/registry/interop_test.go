package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
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

// foreignTar packs dir the way other tools do: names under prefix ("./"
// for `tar -C dir -cf x.tar .`, "bp/" for `oras push REF bp/`), real
// times and modes, directory entries first, optionally gzip-compressed.
func foreignTar(t *testing.T, dir, prefix string, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = path.Join(prefix, filepath.ToSlash(rel))
		if prefix == "./" && rel == "." {
			h.Name = "./"
		} else if prefix == "./" {
			h.Name = "./" + filepath.ToSlash(rel)
		}
		if d.IsDir() && !strings.HasSuffix(h.Name, "/") {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pushLayer pushes a blueprint manifest around layer (as another tool
// would) tagged tag, and returns its digest.
func pushLayer(t *testing.T, c *Client, repoRef, tag, version string, layer []byte, ldesc ocispec.Descriptor) string {
	t.Helper()
	ctx := context.Background()
	ref, _ := ParseReference(repoRef)
	repo, err := c.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	ldesc.Digest, ldesc.Size = digest.FromBytes(layer), int64(len(layer))
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data}, {ldesc, layer}} {
		if err := c.pushBlob(ctx, repo, ref, b.desc, b.data); err != nil {
			t.Fatal(err)
		}
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactType,
		Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{ldesc}, Annotations: map[string]string{AnnotationVersion: version}}
	mb, _ := json.Marshal(m)
	mdesc := ocispec.Descriptor{MediaType: m.MediaType, ArtifactType: ArtifactType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := repo.Manifests().PushReference(ctx, mdesc, bytes.NewReader(mb), tag); err != nil {
		t.Fatal(err)
	}
	return mdesc.Digest.String()
}

// TestForeignLayers pulls blueprints packed by other tools: the safe ones
// unpack to the same tree as nemoclaw's own packing, and a pinned pull of
// one does not warn that the unpacked copy differs; the rest are refusals
// (exit 3) that say how to pack.
func TestForeignLayers(t *testing.T) {
	t.Parallel()
	srv := newRegistry(t)
	repo := srv.host() + "/team/bp"
	src := blueprintDir(t, "1.0.0", "")
	ownTree, err := Pack(src)
	if err != nil {
		t.Fatal(err)
	}
	oras := map[string]string{orasUnpackAnnotation: "true", ocispec.AnnotationTitle: "bp"}
	tests := []struct {
		name      string
		layer     []byte
		desc      ocispec.Descriptor
		wantError string // "" accepts
	}{
		{"tar with ./ entries", foreignTar(t, src, "./", false), ocispec.Descriptor{MediaType: LayerMediaType}, ""},
		{"OCI tar", foreignTar(t, src, "", false), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer}, ""},
		{"tar+gzip with ./ entries", foreignTar(t, src, "./", true), ocispec.Descriptor{MediaType: LayerMediaTypeGzip}, ""},
		{"oras push DIR", foreignTar(t, src, "bp", true), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Annotations: oras}, ""},
		{"gzip under the tar media type", foreignTar(t, src, "", true), ocispec.Descriptor{MediaType: LayerMediaType}, "gzip-compressed but its media type"},
		{"zstd", foreignTar(t, src, "", false), ocispec.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"}, "neither tar nor tar+gzip"},
		{"oras entry outside its directory", foreignTar(t, src, "other", true), ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Annotations: oras}, "outside the directory"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tag := fmt.Sprintf("foreign-%d", i)
			d := pushLayer(t, newClient(t), repo, tag, "1.0.0", tc.layer, tc.desc)
			var logs bytes.Buffer
			c, err := New(Config{Home: t.TempDir(), Credentials: emptyCreds(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(t.TempDir(), DefaultLockFile)
			insecure := Verification{InsecureSkipVerify: true}
			f, err := c.Fetch(context.Background(), FetchOptions{Ref: repo + ":" + tag, LockPath: lock, Verification: insecure})
			if tc.wantError != "" {
				if err == nil || !IsRefusal(err) || !strings.Contains(err.Error(), tc.wantError) || !strings.Contains(err.Error(), "nemoclaw blueprint push DIR REF") {
					t.Fatalf("got %v, want a refusal with %q and the packing hint", err, tc.wantError)
				}
				if _, err := os.Stat(lock); err == nil {
					t.Error("a refused pull wrote the lock")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := Pack(f.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ownTree) || f.Digest != d {
				t.Errorf("unpacked tree differs from the source directory's")
			}
			again, err := c.Fetch(context.Background(), FetchOptions{Ref: repo + ":" + tag, LockPath: lock, Verification: insecure})
			if err != nil || !again.FromCache {
				t.Fatalf("pinned pull: %+v, %v", again, err)
			}
			if strings.Contains(logs.String(), "differs") {
				t.Errorf("pinned pull of a valid foreign layer warned:\n%s", logs.String())
			}
		})
	}
}

// TestPullValidatesBlueprint: what push checks, pull checks after
// unpacking and before the cache or the lock change.
func TestPullValidatesBlueprint(t *testing.T) {
	t.Parallel()
	srv := newRegistry(t)
	repo := srv.host() + "/team/bp"
	badYAML := blueprintDir(t, "1.0.0", "")
	if err := os.WriteFile(filepath.Join(badYAML, "blueprint.yaml"), []byte("version: \"1.0.0\"\ncomponents: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, annotation, dir, want string
	}{
		{"annotation above blueprint.yaml", "3.0.0", blueprintDir(t, "2.0.0", ""), `says version "2.0.0" but the manifest's`},
		{"invalid blueprint.yaml", "1.0.0", badYAML, "its blueprint does not load"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tree, err := Pack(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			tag := fmt.Sprintf("case%d", i)
			pushLayer(t, newClient(t), repo, tag, tc.annotation, tree, ocispec.Descriptor{MediaType: LayerMediaType})
			c := newClient(t)
			lock := filepath.Join(t.TempDir(), DefaultLockFile)
			_, err = c.Fetch(context.Background(), FetchOptions{Ref: repo + ":" + tag, LockPath: lock, Verification: Verification{InsecureSkipVerify: true}})
			if err == nil || !IsRefusal(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal with %q", err, tc.want)
			}
			for _, p := range []string{lock, filepath.Join(c.CacheDir(), "oci", "index.json")} {
				if _, err := os.Stat(p); err == nil {
					t.Errorf("a refused pull wrote %s", p)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(c.CacheDir(), "blueprints")); len(ents) != 0 {
				t.Errorf("a refused pull left %d unpacked blueprint(s)", len(ents))
			}
		})
	}
}

// TestPushRefusesMovingVersionTag: a published version's tag is not moved
// to other content without Force; the refusal names the digest it holds.
func TestPushRefusesMovingVersionTag(t *testing.T) {
	t.Parallel()
	srv := newRegistry(t)
	repo := srv.host() + "/team/bp"
	c := newClient(t)
	ctx := context.Background()
	first := push(t, c, blueprintDir(t, "1.0.0", ""), repo+":latest", nil)
	// The same content again is no move.
	push(t, c, blueprintDir(t, "1.0.0", ""), repo, nil)
	other := blueprintDir(t, "1.0.0", "other content")
	_, err := c.Push(ctx, PushOptions{Dir: other, Ref: repo})
	if err == nil || !IsRefusal(err) || !strings.Contains(err.Error(), "already holds "+first.Digest) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("got %v, want a refusal naming %s and --force", err, first.Digest)
	}
	ref, _ := ParseReference(repo)
	r, _ := c.repository(ref)
	if d, err := r.Resolve(ctx, "1.0.0"); err != nil || d.Digest.String() != first.Digest {
		t.Fatalf("tag 1.0.0 moved to %v (%v)", d.Digest, err)
	}
	// A user tag that is no version ("latest") moves freely with a new version.
	push(t, c, blueprintDir(t, "1.1.0", ""), repo+":latest", nil)
	moved, err := c.Push(ctx, PushOptions{Dir: other, Ref: repo, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := r.Resolve(ctx, "1.0.0"); err != nil || d.Digest.String() != moved.Digest {
		t.Fatalf("--force did not move the tag: %v (%v)", d.Digest, err)
	}
}

// TestRegistryErrorTexts: each error says its true cause; only a failed
// connection asks whether the registry runs, and none prints a Go map.
func TestRegistryErrorTexts(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0")
	dead := newRegistry(t)
	dead.Close()
	locked := newRegistry(t)
	locked.user, locked.pass = "alice", "s3cret"
	push(t, newClient(t), blueprintDir(t, "1.0.0", ""), p.srv.host()+"/team/unsigned", nil)
	down := newRegistry(t)
	down.setDown(true)
	oneOff := Verification{OneOff: &signing.RequirementSpec{Keys: []string{p.pub}}}
	ctx := context.Background()
	pull := func(ref, constraint string) func(*Client) error {
		return func(c *Client) error {
			_, err := c.Fetch(ctx, FetchOptions{Ref: ref, Constraint: constraint, Verification: oneOff})
			return err
		}
	}
	verify := func(ref string) func(*Client) error {
		return func(c *Client) error {
			_, err := c.Verify(ctx, VerifyOptions{Ref: ref, Verification: oneOff})
			return err
		}
	}
	tests := []struct {
		name      string
		run       func(*Client) error
		want      string
		reachable bool
	}{
		{"connection refused", pull(dead.host()+"/team/bp:1.0.0", ""), "connection refused", true},
		{"no tag satisfies", pull(p.repo, "~> 7.0"), `no tag satisfies "~> 7.0"`, false},
		{"malformed constraint", pull(p.repo, "~>> 1"), "version constraint", false},
		{"401", pull(locked.host()+"/team/bp:1.0.0", ""), "nemoclaw registry login " + locked.host(), false},
		{"404 tag", pull(p.repo+":9.9.9", ""), p.repo + ":9.9.9 is not in the registry", false},
		{"404 repository", pull(p.srv.host()+"/team/nothing:1.0.0", ""), "/team/nothing:1.0.0 is not in the registry", false},
		{"404 repository by constraint", pull(p.srv.host()+"/team/nothing", "~> 1"), "does not exist in the registry", false},
		{"503", pull(down.host()+"/team/bp:1.0.0", ""), "503 Service Unavailable", false},
		{"verify 404", verify(p.repo + ":9.9.9"), "verify " + p.repo + ":9.9.9: ", false},
		{"verify unsigned", verify(p.srv.host() + "/team/unsigned:1.0.0"), "verify ", false},
		{"verify connection refused", verify(dead.host() + "/team/bp:1.0.0"), "verify " + dead.host(), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.run(newClient(t))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "map[") || strings.Contains(msg, "reachable?") != tc.reachable {
				t.Errorf("got %q, want %q, reachability question %v, no Go map", msg, tc.want, tc.reachable)
			}
			if strings.HasPrefix(tc.name, "verify") && !strings.HasPrefix(msg, "verify ") {
				t.Errorf("verify error %q does not start with verify", msg)
			}
		})
	}
}

// TestSignaturesInBothForms: Sign writes cosign's form (DSSE, in-toto
// statement naming the manifest digest, with cosign's annotations), and a
// blueprint signed in nemoclaw's first form (message signature over the
// manifest bytes) still verifies.
func TestSignaturesInBothForms(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0")
	c, lock := p.consumer(t)
	ctx := context.Background()
	// The published one carries Sign's bundle: check its shape.
	ref, _ := ParseReference(p.repo)
	repo, _ := c.repository(ref)
	_, subject := manifestOf(t, c, p.repo, p.versions["1.0.0"].Digest)
	sigs, err := c.fetchSignatures(ctx, repo, p.repo, subject)
	if err != nil || len(sigs) != 1 {
		t.Fatalf("signatures: %d, %v", len(sigs), err)
	}
	var sm ocispec.Manifest
	if err := json.Unmarshal(sigs[0].manifestBytes, &sm); err != nil {
		t.Fatal(err)
	}
	if sm.ArtifactType != signing.BundleMediaType || sm.Annotations[bundleContentAnnotation] != "dsse-envelope" || sm.Annotations[bundlePredicateAnnotation] != signing.SignPredicateType {
		t.Errorf("signature manifest %s", sigs[0].manifestBytes)
	}
	var b struct {
		DSSEEnvelope struct {
			Payload     []byte `json:"payload"`
			PayloadType string `json:"payloadType"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(sigs[0].bundle, &b); err != nil {
		t.Fatal(err)
	}
	want := `"digest":{"sha256":"` + strings.TrimPrefix(subject.Digest.String(), "sha256:") + `"}`
	if b.DSSEEnvelope.PayloadType != signing.InTotoPayloadType || !strings.Contains(string(b.DSSEEnvelope.Payload), want) || !strings.Contains(string(b.DSSEEnvelope.Payload), signing.SignPredicateType) {
		t.Errorf("bundle payload %s (%s), want the statement with %s", b.DSSEEnvelope.Payload, b.DSSEEnvelope.PayloadType, want)
	}
	if _, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lock}); err != nil {
		t.Fatal(err)
	}
	// The first form.
	old := push(t, newClient(t), blueprintDir(t, "1.1.0", ""), p.repo, nil)
	mb, desc := manifestOf(t, c, p.repo, old.Digest)
	bundle, err := signing.SignMessage(ctx, p.kp, mb)
	if err != nil {
		t.Fatal(err)
	}
	attach(t, c, p.repo, desc, bundle)
	if _, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.1.0", LockPath: lock}); err != nil {
		t.Fatalf("message-signature form: %v", err)
	}
}

// pushLegacySig pushes a signature in cosign's legacy format for the
// manifest digest named names: a manifest tagged sha256-<hex>.sig whose
// simple signing layer kp signed.
func pushLegacySig(t *testing.T, c *Client, repoRef string, tagged digest.Digest, names string, kp *signing.Keypair) {
	t.Helper()
	ctx := context.Background()
	ref, _ := ParseReference(repoRef)
	repo, err := c.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(fmt.Sprintf(`{"critical":{"identity":{"docker-reference":%q},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, ref.Repo(), names))
	sig, _, err := kp.SignData(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	ldesc := ocispec.Descriptor{MediaType: signing.SimpleSigningMediaType, Digest: digest.FromBytes(payload), Size: int64(len(payload)),
		Annotations: map[string]string{signing.SimpleSigningAnnotation: base64.StdEncoding.EncodeToString(sig)}}
	cfg := []byte(`{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
	cdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{cdesc, cfg}, {ldesc, payload}} {
		if err := c.pushBlob(ctx, repo, ref, b.desc, b.data); err != nil {
			t.Fatal(err)
		}
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cdesc, Layers: []ocispec.Descriptor{ldesc}}
	mb, _ := json.Marshal(m)
	if err := repo.Manifests().PushReference(ctx, ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, bytes.NewReader(mb), simpleSigTag(tagged)); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyCosignSignature: a blueprint signed in cosign's legacy format
// (sha256-<hex>.sig with a simple signing payload) verifies, from the
// registry and, pinned, from the cache; a payload naming another digest
// does not.
func TestLegacyCosignSignature(t *testing.T) {
	t.Parallel()
	p := publish(t)
	c, lock := p.consumer(t)
	ctx := context.Background()
	good := push(t, newClient(t), blueprintDir(t, "1.0.0", ""), p.repo, nil)
	pushLegacySig(t, c, p.repo, digest.Digest(good.Digest), good.Digest, p.kp)
	f, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lock})
	if err != nil {
		t.Fatal(err)
	}
	if f.Signer != "key "+signing.Fingerprint(p.kp.Public()) {
		t.Errorf("signer %q", f.Signer)
	}
	again, err := withHome(t, c).Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lock})
	if err != nil || !again.FromCache {
		t.Fatalf("pinned pull from the cache: %+v %v", again, err)
	}
	if _, err := c.Verify(ctx, VerifyOptions{Ref: p.repo + ":1.0.0"}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// A legacy signature of 1.0.0 copied to the tag of 1.1.0.
	bad := push(t, newClient(t), blueprintDir(t, "1.1.0", ""), p.repo, nil)
	pushLegacySig(t, c, p.repo, digest.Digest(bad.Digest), good.Digest, p.kp)
	if _, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.1.0", LockPath: lock}); err == nil || !strings.Contains(err.Error(), "legacy signature by") {
		t.Fatalf("got %v, want the legacy signature refused for naming another digest", err)
	}
}

// attachCosignShaped pushes bundle as cosign v2 does: the bundle type only
// on the config descriptor, so the referrer's artifactType is the empty
// config's, with cosign's annotations.
func attachCosignShaped(t *testing.T, c *Client, repoRef string, subject ocispec.Descriptor, bundle []byte) {
	t.Helper()
	ctx := context.Background()
	ref, _ := ParseReference(repoRef)
	repo, err := c.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	bdesc := ocispec.Descriptor{MediaType: signing.BundleMediaType, Digest: digest.FromBytes(bundle), Size: int64(len(bundle))}
	if err := c.pushBlob(ctx, repo, ref, bdesc, bundle); err != nil {
		t.Fatal(err)
	}
	cfg := ocispec.DescriptorEmptyJSON
	cfg.ArtifactType, cfg.Data = signing.BundleMediaType, nil
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg,
		Layers: []ocispec.Descriptor{bdesc}, Subject: &subject,
		Annotations: map[string]string{bundleContentAnnotation: "dsse-envelope", bundlePredicateAnnotation: signing.SignPredicateType}}
	mb, _ := json.Marshal(m)
	if err := repo.Manifests().Push(ctx, ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}, bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
}

// TestCosignSignatureBesideOurs: a digest signed by nemoclaw with one key
// and by cosign with another verifies with either key, on both registry
// kinds: a typed signature never hides cosign's untyped one.
func TestCosignSignatureBesideOurs(t *testing.T) {
	t.Parallel()
	for _, opts := range []regOptions{{referrers: true}, {noDelete: true}} {
		t.Run(fmt.Sprintf("referrers=%v", opts.referrers), func(t *testing.T) {
			t.Parallel()
			srv := newRegistryWith(t, opts)
			repo := srv.host() + "/team/bp"
			c := newClient(t)
			keys := t.TempDir()
			prefixA, kpA := keyPair(t, keys, "nemoclaw")
			prefixB, kpB := keyPair(t, keys, "cosign")
			p := push(t, c, blueprintDir(t, "1.0.0", ""), repo, kpA)
			mb, desc := manifestOf(t, c, repo, p.Digest)
			bundle, err := signing.Sign(context.Background(), kpB, repo, mb)
			if err != nil {
				t.Fatal(err)
			}
			attachCosignShaped(t, c, repo, desc, bundle)
			for _, prefix := range []string{prefixA, prefixB} {
				if _, err := newClient(t).Verify(context.Background(), VerifyOptions{Ref: repo + ":1.0.0", Verification: Verification{OneOff: &signing.RequirementSpec{Keys: []string{prefix + ".pub"}}}}); err != nil {
					t.Errorf("verify with %s: %v", filepath.Base(prefix), err)
				}
			}
		})
	}
}

// TestValidatedMarker: a pull leaves a marker that the unpacked copy was
// validated; a copy without one (unpacked by an older nemoclaw) is
// validated again on the next pinned pull and marked.
func TestValidatedMarker(t *testing.T) {
	t.Parallel()
	p := publish(t, "1.0.0")
	c, lock := p.consumer(t)
	ctx := context.Background()
	f, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lock})
	if err != nil {
		t.Fatal(err)
	}
	marker := validatedMarker(f.Dir)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("no validation marker: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if again, err := c.Fetch(ctx, FetchOptions{Ref: p.repo + ":1.0.0", LockPath: lock}); err != nil || !again.FromCache {
		t.Fatalf("pinned pull: %+v %v", again, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the revalidated copy was not marked: %v", err)
	}
}
