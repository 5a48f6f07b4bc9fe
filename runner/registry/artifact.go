package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of a blueprint artifact.
const (
	// ArtifactType is the artifactType of a blueprint manifest.
	ArtifactType = "application/vnd.nemoclaw.blueprint.v1"
	// LayerMediaType is the media type of its one layer, the
	// deterministic (uncompressed, so stable across Go versions) tar.
	LayerMediaType = "application/vnd.nemoclaw.blueprint.layer.v1.tar"
	// LayerMediaTypeGzip is the same tar, gzip-compressed; pull accepts it
	// (and the OCI image layer types) from other tools.
	LayerMediaTypeGzip = LayerMediaType + "+gzip"
	// AnnotationVersion carries the blueprint's semver.
	AnnotationVersion = ocispec.AnnotationVersion
	// AnnotationTitle carries the blueprint's title.
	AnnotationTitle = ocispec.AnnotationTitle
)

// Limits on what is read from a registry.
const (
	maxManifestBytes = 4 << 20
	maxBundleBytes   = 4 << 20
)

// artifact is a blueprint manifest with its layer, in memory.
type artifact struct {
	manifestDesc  ocispec.Descriptor
	manifestBytes []byte
	manifest      ocispec.Manifest
	layerDesc     ocispec.Descriptor
	layer         []byte
}

// buildArtifact makes the manifest for a packed layer. Nothing in it
// depends on time, so the same layer, version and title give the same
// manifest digest.
func buildArtifact(layer []byte, version, title string) (*artifact, error) {
	a := &artifact{layer: layer}
	a.layerDesc = ocispec.Descriptor{
		MediaType: LayerMediaType,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
		Annotations: map[string]string{
			AnnotationTitle: "blueprint.tar",
		},
	}
	a.manifest = ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{a.layerDesc},
		Annotations: map[string]string{
			AnnotationVersion: version,
			AnnotationTitle:   title,
		},
	}
	mb, err := json.Marshal(a.manifest)
	if err != nil {
		return nil, err
	}
	a.manifestBytes = mb
	a.manifestDesc = ocispec.Descriptor{
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Digest:       digest.FromBytes(mb),
		Size:         int64(len(mb)),
		Annotations:  a.manifest.Annotations,
	}
	return a, nil
}

// parseBlueprintManifest decodes manifest bytes (already digest-checked)
// and checks that they describe a blueprint.
func parseBlueprintManifest(subject string, mb []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return m, &RefusedError{Subject: subject, Reason: "manifest is not valid JSON", Err: err}
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 1 {
		return m, &RefusedError{
			Subject: subject,
			Reason:  fmt.Sprintf("not a nemoclaw blueprint (artifactType %q with %d layer(s); want %q with one layer)", m.ArtifactType, len(m.Layers), ArtifactType),
			Hint:    packHint,
		}
	}
	if _, ok := layerMediaTypes[m.Layers[0].MediaType]; !ok {
		return m, &RefusedError{
			Subject:   subject,
			Reason:    fmt.Sprintf("its layer's media type %q is neither tar nor tar+gzip (accepted: %s)", m.Layers[0].MediaType, strings.Join(slices.Sorted(maps.Keys(layerMediaTypes)), ", ")),
			DecidedBy: "layer check",
			Hint:      packHint,
		}
	}
	if m.Layers[0].Size > maxBlueprintBytes {
		return m, &RefusedError{Subject: subject, Reason: fmt.Sprintf("layer of %d bytes is over the %d byte limit", m.Layers[0].Size, maxBlueprintBytes)}
	}
	return m, nil
}
