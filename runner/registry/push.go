package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/hashicorp/go-version"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

// PushOptions say what to push where.
type PushOptions struct {
	// Dir is the blueprint directory; it must load and validate.
	Dir string
	// Ref is host/repo or host/repo:tag. The blueprint's version is always
	// pushed as a tag too, so semver constraints can find it.
	Ref string
	// Title is the title annotation; "" uses the repository's last path
	// element (so the same directory pushed to the same repository always
	// gives the same digest).
	Title string
	// Force moves a version tag that already points to other content.
	// Without it that is a refusal: every lock that pinned the old digest
	// under that version would be refused from then on.
	Force bool
}

// Pushed describes a pushed blueprint.
type Pushed struct {
	// Ref is host/repo.
	Ref string `json:"ref"`
	// Digest is the manifest digest.
	Digest string `json:"digest"`
	// Version is the blueprint's version.
	Version string `json:"version"`
	// Tags are the tags that now point to it.
	Tags []string `json:"tags"`
	// Size is the layer size in bytes.
	Size int64 `json:"size"`
}

// Package packs a blueprint directory into its artifact without pushing:
// the digest Push would produce. It refuses an invalid blueprint.
func Package(dir, title string) (digest string, size int64, ver string, err error) {
	a, err := packageDir(dir, title)
	if err != nil {
		return "", 0, "", err
	}
	return a.manifestDesc.Digest.String(), a.layerDesc.Size, a.manifest.Annotations[AnnotationVersion], nil
}

func packageDir(dir, title string) (*artifact, error) {
	bp, err := blueprint.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", dir, err)
	}
	v, err := version.NewSemver(bp.Version)
	if err != nil {
		return nil, fmt.Errorf("push %s: version %q in %s is not a semantic version (e.g. 1.2.3): %w", dir, bp.Version, filepath.Join(dir, blueprint.FileName), err)
	}
	layer, err := Pack(dir)
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", dir, err)
	}
	return buildArtifact(layer, v.Original(), title)
}

// Push packs Dir deterministically and pushes it to Ref, tagged with Ref's
// tag (if any) and the blueprint's version.
func (c *Client) Push(ctx context.Context, o PushOptions) (*Pushed, error) {
	ref, err := ParseReference(o.Ref)
	if err != nil {
		return nil, err
	}
	if ref.Digest != "" {
		return nil, fmt.Errorf("push %s: give a tag or no tag, not a digest (the digest is computed from the content)", o.Ref)
	}
	title := o.Title
	if title == "" {
		title = filepath.Base(ref.Repository)
	}
	a, err := packageDir(o.Dir, title)
	if err != nil {
		return nil, err
	}
	ver := a.manifest.Annotations[AnnotationVersion]
	tags := []string{ver}
	if ref.Tag != "" && ref.Tag != ver {
		tags = append([]string{ref.Tag}, ver)
	}
	repo, err := c.repository(ref)
	if err != nil {
		return nil, err
	}
	if !o.Force {
		if err := checkVersionTags(ctx, repo, ref, tags, a.manifestDesc.Digest); err != nil {
			return nil, err
		}
	}
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data}, {a.layerDesc, a.layer}} {
		if err := c.pushBlob(ctx, repo, ref, b.desc, b.data); err != nil {
			return nil, err
		}
	}
	for _, t := range tags {
		if err := repo.Manifests().PushReference(ctx, a.manifestDesc, bytes.NewReader(a.manifestBytes), t); err != nil {
			tagged := ref
			tagged.Tag = t
			return nil, registryError("push", tagged, err)
		}
	}
	c.progressf("pushed %s@%s (%s, layer %s) as %v", ref.Repo(), a.manifestDesc.Digest, ver, humanBytes(a.layerDesc.Size), tags)
	return &Pushed{Ref: ref.Repo(), Digest: a.manifestDesc.Digest.String(), Version: ver, Tags: tags, Size: a.layerDesc.Size}, nil
}

// checkVersionTags refuses to move a version tag (one that parses as a
// version) that already points to a manifest other than d. Other tags
// ("latest", "stable") are meant to move.
func checkVersionTags(ctx context.Context, repo *remote.Repository, ref Reference, tags []string, d digest.Digest) error {
	for _, t := range tags {
		if _, err := version.NewVersion(t); err != nil {
			continue
		}
		desc, err := repo.Resolve(ctx, t)
		switch {
		case errors.Is(err, errdef.ErrNotFound):
			continue
		case err != nil:
			return registryError("push", ref, err)
		case desc.Digest != d:
			return &RefusedError{
				Subject:   ref.Repo() + ":" + t,
				Reason:    fmt.Sprintf("the version tag already holds %s, other content than this push (%s)", desc.Digest, d),
				DecidedBy: "push's published-version check",
				Hint:      "a published version should not change (locks pin its digest and would refuse the new one): bump the version in " + blueprint.FileName + ", or pass --force to move the tag anyway",
			}
		}
	}
	return nil
}

func (c *Client) pushBlob(ctx context.Context, repo *remote.Repository, ref Reference, desc ocispec.Descriptor, data []byte) error {
	ok, err := repo.Blobs().Exists(ctx, desc)
	if err != nil {
		return registryError("push", ref, err)
	}
	if ok {
		return nil
	}
	var r io.Reader = bytes.NewReader(data)
	if desc.Size >= progressLimit && c.cfg.Progress != nil {
		r = &progressReader{r: r, total: desc.Size, w: c.cfg.Progress, label: "push blob " + short(desc.Digest)}
	}
	if err := repo.Blobs().Push(ctx, desc, r); err != nil {
		return registryError("push", ref, fmt.Errorf("blob %s: %w", desc.Digest, err))
	}
	return nil
}
