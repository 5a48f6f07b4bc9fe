package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-version"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// errCacheMiss means the cache does not hold (a usable copy of) a digest.
var errCacheMiss = errors.New("not in the cache")

// sigArtifact is a signature: a referrer manifest with its bundle layer,
// or (simple set) cosign's legacy sha256-<hex>.sig manifest with its
// payload layers.
type sigArtifact struct {
	desc          ocispec.Descriptor
	manifestBytes []byte
	bundleDesc    ocispec.Descriptor
	bundle        []byte
	simple        []simpleLayer
}

// simpleLayer is one legacy cosign payload with its descriptor (whose
// annotations hold the signature).
type simpleLayer struct {
	desc    ocispec.Descriptor
	payload []byte
}

// cache is the OCI image-layout store under Home/cache/oci plus unpacked
// blueprints under Home/cache/blueprints/<hex>. An flock on Home/cache/.lock
// serialises nemoclaw processes that use it.
type cache struct {
	dir   string
	store *oci.Store
	lockf *os.File
	log   *slog.Logger
}

// CacheDir is the cache's root.
func (c *Client) CacheDir() string { return filepath.Join(c.cfg.Home, "cache") }

// openCache opens the cache and takes its lock; the OCI layout itself is
// created only by the first commit, so a refused pull leaves no index. A layout whose
// index or manifests cannot be loaded is moved aside and started afresh:
// corrupt content is re-fetched, never used.
func (c *Client) openCache(ctx context.Context) (*cache, error) {
	dir := c.CacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("cache %s: lock: %w", dir, err)
	}
	k := &cache{dir: dir, lockf: lf, log: c.log}
	if _, err := os.Stat(filepath.Join(dir, "oci", "index.json")); err != nil {
		return k, nil
	}
	if err := k.openStore(ctx); err != nil {
		k.close()
		return nil, err
	}
	return k, nil
}

// openStore opens (creating) the OCI layout.
func (k *cache) openStore(ctx context.Context) error {
	layout := filepath.Join(k.dir, "oci")
	st, err := oci.NewWithContext(ctx, layout)
	if err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", layout, time.Now().UnixNano())
		k.log.Warn("cache layout is corrupt; moving it aside and re-fetching", "layout", layout, "moved_to", aside, "err", err)
		if rerr := os.Rename(layout, aside); rerr != nil {
			return fmt.Errorf("cache %s: corrupt (%v) and cannot be moved aside: %w", layout, err, rerr)
		}
		if st, err = oci.NewWithContext(ctx, layout); err != nil {
			return fmt.Errorf("cache %s: %w", layout, err)
		}
	}
	// One index write per commit instead of one per manifest and tag.
	st.AutoSaveIndex = false
	k.store = st
	return nil
}

func (k *cache) close() {
	if k.lockf != nil {
		_ = syscall.Flock(int(k.lockf.Fd()), syscall.LOCK_UN)
		k.lockf.Close()
		k.lockf = nil
	}
}

func (k *cache) blobPath(d digest.Digest) string {
	return filepath.Join(k.dir, "oci", "blobs", d.Algorithm().String(), d.Encoded())
}

// readVerified reads desc and checks its size and digest. A blob that does
// not match is deleted (so the next fetch replaces it) and reported as a
// cache miss.
func (k *cache) readVerified(ctx context.Context, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes over the %d byte limit: %w", desc.Digest, desc.Size, limit, errCacheMiss)
	}
	rc, err := k.store.Fetch(ctx, desc)
	if errors.Is(err, errdef.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", desc.Digest, errCacheMiss)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		k.log.Warn("cache entry is corrupt (digest mismatch); deleting it so it is re-fetched", "digest", desc.Digest, "err", err)
		_ = os.Remove(k.blobPath(desc.Digest))
		return nil, fmt.Errorf("%s: corrupt cache entry (%v): %w", desc.Digest, err, errCacheMiss)
	}
	return b, nil
}

// load returns the cached blueprint d with its cached signatures, every
// byte checked against its digest.
func (k *cache) load(ctx context.Context, subject string, d digest.Digest) (*artifact, []sigArtifact, error) {
	if k.store == nil {
		return nil, nil, fmt.Errorf("%s: %w", d, errCacheMiss)
	}
	desc, err := k.store.Resolve(ctx, d.String())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", d, errCacheMiss)
	}
	// Resolve by digest of a manifest gives a plain descriptor; the size is
	// what the index recorded.
	desc.MediaType = ocispec.MediaTypeImageManifest
	mb, err := k.readVerified(ctx, desc, maxManifestBytes)
	if err != nil {
		return nil, nil, err
	}
	m, err := parseBlueprintManifest(subject, mb)
	if err != nil {
		return nil, nil, fmt.Errorf("%v: %w", err, errCacheMiss)
	}
	layer, err := k.readVerified(ctx, m.Layers[0], maxBlueprintBytes)
	if err != nil {
		return nil, nil, err
	}
	a := &artifact{manifestDesc: desc, manifestBytes: mb, manifest: m, layerDesc: m.Layers[0], layer: layer}
	a.manifestDesc.ArtifactType = m.ArtifactType
	a.manifestDesc.Annotations = m.Annotations
	preds, err := k.store.Predecessors(ctx, desc)
	if err != nil {
		return nil, nil, err
	}
	var sigs []sigArtifact
	for _, p := range preds {
		s, err := k.loadSig(ctx, p, d)
		if err != nil {
			k.log.Debug("skipping cached signature", "digest", p.Digest, "err", err)
			continue
		}
		sigs = append(sigs, *s)
	}
	if s, err := k.loadSimpleSig(ctx, subject+":"+simpleSigTag(d)); err == nil {
		sigs = append(sigs, *s)
	} else if !errors.Is(err, errCacheMiss) {
		k.log.Debug("skipping cached cosign signature", "err", err)
	}
	return a, sigs, nil
}

// loadSimpleSig loads a cached legacy cosign signature by its name.
func (k *cache) loadSimpleSig(ctx context.Context, name string) (*sigArtifact, error) {
	desc, err := k.store.Resolve(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, errCacheMiss)
	}
	mb, err := k.readVerified(ctx, desc, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	layers, err := parseSimpleSigManifest(mb)
	if err != nil {
		return nil, err
	}
	s := &sigArtifact{desc: desc, manifestBytes: mb}
	for _, l := range layers {
		b, err := k.readVerified(ctx, l, maxBundleBytes)
		if err != nil {
			return nil, err
		}
		s.simple = append(s.simple, simpleLayer{desc: l, payload: b})
	}
	return s, nil
}

func (k *cache) loadSig(ctx context.Context, desc ocispec.Descriptor, subject digest.Digest) (*sigArtifact, error) {
	mb, err := k.readVerified(ctx, desc, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	bdesc, err := parseSigManifest(mb, subject)
	if err != nil {
		return nil, err
	}
	b, err := k.readVerified(ctx, bdesc, maxBundleBytes)
	if err != nil {
		return nil, err
	}
	return &sigArtifact{desc: desc, manifestBytes: mb, bundleDesc: bdesc, bundle: b}, nil
}

// parseSigManifest checks a referrer manifest is a Sigstore bundle whose
// subject is the blueprint, and returns its bundle layer's descriptor.
func parseSigManifest(mb []byte, subject digest.Digest) (ocispec.Descriptor, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("signature manifest: %w", err)
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return ocispec.Descriptor{}, fmt.Errorf("signature manifest's subject is not %s", subject)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != signing.BundleMediaType {
		return ocispec.Descriptor{}, fmt.Errorf("signature manifest does not hold one %s layer", signing.BundleMediaType)
	}
	return m.Layers[0], nil
}

// push stores b under desc unless it is already there.
func (k *cache) push(ctx context.Context, desc ocispec.Descriptor, b []byte) error {
	ok, err := k.store.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	if err := k.store.Push(ctx, desc, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return nil
}

// commit stores a verified blueprint and its signatures and, with index,
// names it "host/repo@sha256:…" in the layout's index.json. Blobs without
// an index entry are content-addressed and verified, never used: a pull
// stores them while the layer is unpacked and validated, and indexes them
// once that passed.
func (k *cache) commit(ctx context.Context, repoName string, a *artifact, sigs []sigArtifact, index bool) error {
	if k.store == nil {
		if err := k.openStore(ctx); err != nil {
			return err
		}
	}
	empty := ocispec.DescriptorEmptyJSON
	steps := []struct {
		desc ocispec.Descriptor
		b    []byte
	}{{empty, empty.Data}, {a.layerDesc, a.layer}, {a.manifestDesc, a.manifestBytes}}
	type step = struct {
		desc ocispec.Descriptor
		b    []byte
	}
	var legacy *sigArtifact
	for i, s := range sigs {
		if s.simple != nil {
			legacy = &sigs[i]
			for _, l := range s.simple {
				steps = append(steps, step{l.desc, l.payload})
			}
		} else {
			steps = append(steps, step{s.bundleDesc, s.bundle})
		}
		steps = append(steps, step{s.desc, s.manifestBytes})
	}
	for _, s := range steps {
		if err := k.push(ctx, s.desc, s.b); err != nil {
			return fmt.Errorf("cache %s: store %s: %w", k.dir, s.desc.Digest, err)
		}
	}
	if !index {
		return nil
	}
	if err := k.store.Tag(ctx, a.manifestDesc, repoName+"@"+a.manifestDesc.Digest.String()); err != nil {
		return fmt.Errorf("cache %s: index %s: %w", k.dir, a.manifestDesc.Digest, err)
	}
	if legacy != nil {
		// No subject links it to the blueprint: name it by cosign's tag.
		if err := k.store.Tag(ctx, legacy.desc, repoName+":"+simpleSigTag(a.manifestDesc.Digest)); err != nil {
			return fmt.Errorf("cache %s: index %s: %w", k.dir, legacy.desc.Digest, err)
		}
	}
	if err := k.store.SaveIndex(); err != nil {
		return fmt.Errorf("cache %s: save index: %w", k.dir, err)
	}
	return nil
}

// unpacked returns Home/cache/blueprints/<hex> holding a's layer. An
// existing directory is re-packed and compared with the tree the layer
// holds (Pack's digest of it, which for a layer Pack made is the layer
// digest, and for a foreign tar is not); one that differs (edited,
// truncated) is replaced. A layer that is not a blueprint tree is a
// refusal.
func (k *cache) unpacked(subject string, a *artifact) (string, error) {
	entries, err := readLayer(a.layer, a.layerDesc)
	if err != nil {
		return "", &RefusedError{Subject: subject, Reason: "its layer is not a blueprint directory", DecidedBy: "layer check", Err: err, Hint: packHint}
	}
	want, err := treeDigest(entries)
	if err != nil {
		return "", fmt.Errorf("cache: %s: %w", a.manifestDesc.Digest, err)
	}
	base := filepath.Join(k.dir, "blueprints")
	dir := filepath.Join(base, a.manifestDesc.Digest.Encoded())
	if _, err := os.Stat(dir); err == nil {
		if b, err := Pack(dir); err == nil && digest.FromBytes(b) == want {
			// Validated when it was unpacked (the marker says so); a copy
			// unpacked by an older nemoclaw is validated once now.
			marker := validatedMarker(dir)
			if _, err := os.Stat(marker); err == nil {
				return dir, nil
			}
			if err := validateUnpacked(subject, dir, a); err != nil {
				return "", err
			}
			return dir, os.WriteFile(marker, nil, 0o644)
		}
		k.log.Warn("unpacked blueprint differs from its verified layer; unpacking it again", "dir", dir)
		if err := os.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("cache: %w", err)
		}
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("cache: %w", err)
	}
	tmp := filepath.Join(base, fmt.Sprintf(".unpack-%s-%d", a.manifestDesc.Digest.Encoded()[:12], time.Now().UnixNano()))
	if err := writeEntries(entries, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: %s: %w", a.manifestDesc.Digest, err)
	}
	if err := validateUnpacked(subject, tmp, a); err != nil {
		_ = os.RemoveAll(tmp)
		return "", err
	}
	if err := os.WriteFile(validatedMarker(dir), nil, 0o644); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		return "", fmt.Errorf("cache: %w", err)
	}
	return dir, nil
}

// validatedMarker is the empty file beside an unpacked blueprint that says
// validateUnpacked passed on it, so a warm pull does not load it again.
func validatedMarker(dir string) string {
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".valid")
}

// validateUnpacked checks an unpacked blueprint the way push does: its
// blueprint.yaml loads and validates, and its version is the manifest's
// version annotation (which tags, constraints and the lock go by).
func validateUnpacked(subject, dir string, a *artifact) error {
	ann := a.manifest.Annotations[AnnotationVersion]
	bp, err := blueprint.Load(dir)
	if err != nil {
		return &RefusedError{Subject: subject, Reason: "its blueprint does not load", DecidedBy: blueprint.FileName + " in the layer", Err: err,
			Hint: "ask the publisher to fix it; 'nemoclaw blueprint push' checks a blueprint before it pushes"}
	}
	bv, err := version.NewVersion(bp.Version)
	av, aerr := version.NewVersion(ann)
	if err != nil || aerr != nil || !bv.Equal(av) {
		return &RefusedError{Subject: subject, Reason: fmt.Sprintf("%s says version %q but the manifest's %s annotation says %q", blueprint.FileName, bp.Version, AnnotationVersion, ann),
			DecidedBy: blueprint.FileName + " in the layer",
			Hint:      "the version tags and the lock go by the annotation; ask the publisher to push it again with 'nemoclaw blueprint push', which sets it from " + blueprint.FileName}
	}
	return nil
}

// CachedBlueprint is one blueprint in the cache.
type CachedBlueprint struct {
	// Ref is host/repo.
	Ref string
	// Digest is the manifest digest.
	Digest string
	// Version is the manifest's version annotation.
	Version string
	// Title is the manifest's title annotation.
	Title string
	// Size is the layer size in bytes (0 when unknown).
	Size int64
}

// Cached lists the blueprints in the cache, sorted by ref and version.
func (c *Client) Cached(ctx context.Context) ([]CachedBlueprint, error) {
	data, err := os.ReadFile(filepath.Join(c.CacheDir(), "oci", "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("cache %s: index.json: %w", c.CacheDir(), err)
	}
	var out []CachedBlueprint
	for _, d := range idx.Manifests {
		name := d.Annotations[ocispec.AnnotationRefName]
		at := strings.LastIndex(name, "@")
		if d.ArtifactType != ArtifactType || at < 0 {
			continue
		}
		out = append(out, CachedBlueprint{
			Ref:     name[:at],
			Digest:  d.Digest.String(),
			Version: d.Annotations[AnnotationVersion],
			Title:   d.Annotations[AnnotationTitle],
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ref != out[j].Ref {
			return out[i].Ref < out[j].Ref
		}
		return isLower(out[i].Version, out[j].Version)
	})
	return out, nil
}
