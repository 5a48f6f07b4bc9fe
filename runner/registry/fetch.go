package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-version"
	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// Verification says how a pulled blueprint's signature is checked.
type Verification struct {
	// OneOff, when set, replaces the trust policy for this command
	// (--key / --certificate-identity flags). Relative paths resolve
	// against the current directory.
	OneOff *signing.RequirementSpec
	// InsecureSkipVerify accepts unsigned or badly signed blueprints. It
	// is logged loudly and recorded as signer "unverified" in the lock.
	InsecureSkipVerify bool
}

// FetchOptions select what Fetch resolves.
type FetchOptions struct {
	// Ref is host/repo, host/repo:tag or host/repo@sha256:….
	Ref string
	// Constraint is a semver constraint resolved against the tag list
	// ("~> 1.2", ">= 1.2, < 2"); only with a Ref that has no tag or digest.
	Constraint string
	// LockPath is the lock file to honour and update; "" uses no lock.
	LockPath string
	// Update ignores the lock's pin and resolves the newest match again
	// (blueprint update); the lock's constraint is used when Constraint
	// is empty.
	Update bool
	// AllowDowngrade accepts a version lower than the locked one.
	AllowDowngrade bool
	// Verification is how the signature is checked.
	Verification Verification
}

// Fetched is a verified blueprint unpacked in the cache.
type Fetched struct {
	// Dir is the unpacked blueprint, Home/cache/blueprints/<hex>.
	// Treat it as read-only: it is shared by every user of that digest.
	Dir string `json:"dir"`
	// Ref is host/repo.
	Ref string `json:"ref"`
	// Tag is the tag that was resolved, if any.
	Tag string `json:"tag,omitempty"`
	// Version is the blueprint's version.
	Version string `json:"version"`
	// Digest is the manifest digest.
	Digest string `json:"digest"`
	// Signer is who signed it, or "unverified".
	Signer string `json:"signer"`
	// FromCache is true when no network was used.
	FromCache bool `json:"from_cache"`
	// PreviousDigest is the digest the lock held before, when it changed.
	PreviousDigest string `json:"previous_digest,omitempty"`
}

// Unverified is the signer recorded for --insecure-skip-verify.
const Unverified = "unverified"

// requirement picks the signature requirement for repository: one-off
// flags, else the trust policy, else the key the lock entry locked
// records as the signer (found in the trust store by its fingerprint). nil
// with no error means skip (insecure).
func (c *Client) requirement(repository string, v Verification, locked *LockEntry, lockPath string) (*signing.Requirement, error) {
	if v.InsecureSkipVerify {
		c.log.Warn("SIGNATURE VERIFICATION DISABLED by --insecure-skip-verify: the blueprint may have been tampered with", "repository", repository)
		c.progressf("WARNING: --insecure-skip-verify: not verifying the signature of %s", repository)
		return nil, nil
	}
	if v.OneOff != nil {
		return v.OneOff.Build("", "the --key/--certificate-identity flags")
	}
	tp, err := signing.LoadTrustPolicy(c.TrustPolicyFile())
	if err != nil {
		return nil, err
	}
	req, err := tp.RequirementFor(repository)
	if err != nil && locked != nil && strings.HasPrefix(locked.Signer, "key ") {
		// No rule names this repository, but the lock says which key
		// signed what it pins: a key in the trust store with that
		// fingerprint is trusted for it.
		if f := tp.KeyByFingerprint(strings.TrimPrefix(locked.Signer, "key ")); f != "" {
			return signing.RequirementSpec{Keys: []string{f}}.Build("", "the signer recorded in "+lockPath)
		}
	}
	return req, err
}

// Fetch resolves a blueprint reference honouring the lock file, fetches it
// into the cache (no network when a locked digest is cached), verifies its
// digests and signature, unpacks it and, with LockPath, records it in the
// lock. The lock and the cache's index change only after every check
// passed. Refusals satisfy IsRefusal.
func (c *Client) Fetch(ctx context.Context, o FetchOptions) (*Fetched, error) {
	ref, err := ParseReference(o.Ref)
	if err != nil {
		return nil, err
	}
	if o.Constraint != "" && (ref.Tag != "" || ref.Digest != "") {
		return nil, fmt.Errorf("pull %s: --version %q needs a reference without a tag or digest (use %s)", ref, o.Constraint, ref.Repo())
	}
	lock := &Lock{Version: 1}
	if o.LockPath != "" {
		if lock, err = ReadLock(o.LockPath); err != nil {
			return nil, err
		}
	}
	entry := lock.Find(ref.Repo())
	req, err := c.requirement(ref.Repo(), o.Verification, entry, o.LockPath)
	if err != nil {
		return nil, err
	}
	k, err := c.openCache(ctx)
	if err != nil {
		return nil, err
	}
	defer k.close()

	constraint := o.Constraint
	if o.Update && constraint == "" && entry != nil && ref.Tag == "" && ref.Digest == "" {
		constraint = entry.Constraint
	}
	pinned := entry != nil && !o.Update && satisfies(entry, ref, constraint)

	var (
		want     digest.Digest
		tag      = ref.Tag
		verLabel string
		a        *artifact
		sigs     []sigArtifact
		repo     *remote.Repository
		cacheErr error
	)
	if pinned {
		want = digest.Digest(entry.Digest)
		if tag == "" {
			tag = entry.Tag
		}
		a, sigs, cacheErr = k.load(ctx, ref.Repo(), want)
		if cacheErr == nil {
			res, verr := c.finish(ctx, k, o, lock, entry, ref, tag, constraint, req, a, sigs, true)
			if verr == nil {
				return res, nil
			}
			if !signing.IsVerificationError(verr) {
				return nil, verr
			}
			// Cached signatures did not satisfy the requirement; the
			// registry may hold newer ones.
			cacheErr = verr
			c.log.Info("cached signatures do not verify; asking the registry", "err", verr)
		} else {
			c.log.Debug("locked digest not usable from the cache", "digest", want, "err", cacheErr)
		}
	}
	if repo, err = c.repository(ref); err != nil {
		return nil, err
	}
	if pinned {
		if tag != "" {
			d, err := repo.Resolve(ctx, tag)
			switch {
			case err == nil && d.Digest != want:
				return nil, &RefusedError{
					Subject:   ref.Repo() + ":" + tag,
					Reason:    fmt.Sprintf("tag now points to %s but the lock pins %s: the tag was moved after locking", d.Digest, want),
					DecidedBy: "lock file " + o.LockPath,
					Hint:      "if the publisher re-tagged on purpose, run 'nemoclaw blueprint update " + ref.Repo() + "' to accept the new digest (it must verify), otherwise treat the registry as compromised",
				}
			case err != nil && !errors.Is(err, errdef.ErrNotFound):
				return nil, c.unreachable("pull", ref, cacheErr, err)
			}
		}
	} else {
		if ref.Tag == "" {
			want, tag, verLabel, err = c.resolve(ctx, repo, ref, constraint)
			if err != nil {
				return nil, c.unreachable("pull", ref, nil, err)
			}
			c.progressf("resolved %s%s to %s", ref, verLabel, want)
		}
		// A tag is fetched directly by download, which computes the digest.
	}
	a, sigs, err = c.download(ctx, repo, ref, want)
	if err != nil {
		if IsRefusal(err) {
			return nil, err
		}
		return nil, c.unreachable("pull", ref, cacheErr, err)
	}
	return c.finish(ctx, k, o, lock, entry, ref, tag, constraint, req, a, sigs, false)
}

// unreachable explains a registry error for verb, with the cache state
// when a cached copy was tried first.
func (c *Client) unreachable(verb string, ref Reference, cacheErr, err error) error {
	if IsRefusal(err) {
		return err
	}
	if IsRefusal(cacheErr) {
		c.log.Warn("registry failed while re-checking signatures", "err", err)
		return cacheErr
	}
	if cacheErr != nil {
		return fmt.Errorf("%s %s: the locked digest is not usable from the cache (%v) and the registry failed: %w", verb, ref, cacheErr, explain(ref, err))
	}
	err = registryError(verb, ref, err)
	if verb == "pull" && isConnError(err) {
		return fmt.Errorf("%w; a blueprint pinned in nemoclaw.lock and already cached needs no network", err)
	}
	return err
}

// satisfies reports whether the lock entry answers the request without
// resolving anything.
func satisfies(e *LockEntry, ref Reference, constraint string) bool {
	switch {
	case ref.Digest != "":
		return e.Digest == ref.Digest
	case ref.Tag != "":
		return e.Tag == ref.Tag
	case constraint != "":
		c, err := version.NewConstraint(constraint)
		if err != nil {
			return false
		}
		v, err := version.NewVersion(e.Version)
		return err == nil && c.Check(v)
	}
	return true
}

// resolve turns a reference into a digest: by digest as is, by tag through
// the registry, or the highest tag satisfying constraint (no tag and no
// constraint: the highest release version).
func (c *Client) resolve(ctx context.Context, repo *remote.Repository, ref Reference, constraint string) (d digest.Digest, tag, label string, err error) {
	switch {
	case ref.Digest != "":
		d, err := parseDigest(ref.Digest)
		return d, "", "", err
	case ref.Tag != "":
		desc, err := repo.Resolve(ctx, ref.Tag)
		if err != nil {
			return "", "", "", fmt.Errorf("resolve %s: %w", ref, err)
		}
		return desc.Digest, ref.Tag, "", nil
	}
	var cons version.Constraints
	if constraint != "" {
		if cons, err = parseConstraint(constraint); err != nil {
			return "", "", "", err
		}
	}
	tags, err := listTags(ctx, repo)
	if err != nil {
		return "", "", "", fmt.Errorf("list tags of %s: %w", ref.Repo(), err)
	}
	t, _, ok := selectVersion(tags, cons)
	if !ok {
		what := "no release version tag"
		if constraint != "" {
			what = fmt.Sprintf("no tag satisfies %q", constraint)
		}
		return "", "", "", fmt.Errorf("resolve %s: %s (version tags: %s)", ref.Repo(), what, versionTags(tags))
	}
	desc, err := repo.Resolve(ctx, t)
	if err != nil {
		return "", "", "", fmt.Errorf("resolve %s:%s: %w", ref.Repo(), t, err)
	}
	label = " (highest release)"
	if constraint != "" {
		label = fmt.Sprintf(" %q -> %s", constraint, t)
	}
	return desc.Digest, t, label, nil
}

// finish runs the checks that need the content (version, downgrade,
// signature), then commits: cache, unpacked directory, lock.
func (c *Client) finish(ctx context.Context, k *cache, o FetchOptions, lock *Lock, entry *LockEntry, ref Reference, tag, constraint string, req *signing.Requirement, a *artifact, sigs []sigArtifact, fromCache bool) (*Fetched, error) {
	subject := ref.Repo() + "@" + a.manifestDesc.Digest.String()
	ver := a.manifest.Annotations[AnnotationVersion]
	if _, err := version.NewVersion(ver); err != nil {
		return nil, &RefusedError{Subject: subject, Reason: fmt.Sprintf("version annotation %q is not a semantic version", ver), DecidedBy: "manifest annotation " + AnnotationVersion}
	}
	if tv, err := version.NewVersion(tag); err == nil && tag != "" {
		if v, _ := version.NewVersion(ver); !tv.Equal(v) {
			return nil, &RefusedError{Subject: ref.Repo() + ":" + tag, Reason: fmt.Sprintf("tag says version %s but the manifest it points to is version %s", tag, ver), DecidedBy: "manifest annotation " + AnnotationVersion,
				Hint: "a version tag must point to that version; ask the publisher to fix the tag"}
		}
	}
	if entry != nil && entry.Digest != a.manifestDesc.Digest.String() && isLower(ver, entry.Version) && !o.AllowDowngrade {
		return nil, &RefusedError{
			Subject:   ref.Repo(),
			Reason:    fmt.Sprintf("version %s is lower than the locked %s", ver, entry.Version),
			DecidedBy: "lock file " + o.LockPath,
			Hint:      "pass --allow-downgrade if you mean to go back",
		}
	}
	signer := Unverified
	if req != nil {
		bundles, simple := signatureInputs(sigs)
		s, err := req.VerifySignatures(subject+" (version "+ver+")", bundles, simple, a.manifestBytes)
		if err != nil {
			var ve *signing.VerificationError
			if errors.As(err, &ve) && entry != nil && entry.Digest != a.manifestDesc.Digest.String() && o.LockPath != "" {
				ve.Hint += fmt.Sprintf("; %s still pins version %s (%s)", o.LockPath, entry.Version, entry.Digest)
			}
			return nil, err
		}
		signer = s.String()
	}
	// The signature holds: unpack and validate the blueprint as push
	// would while its blobs are stored (concurrently: both are mostly
	// filesystem latency), and only then index it in the cache and change
	// the lock.
	// A cache without a layout yet gets one (and its index.json) only
	// after validation, so that a refused first pull leaves no index.
	early := !fromCache && k.store != nil
	stored := make(chan error, 1)
	go func() {
		if !early {
			stored <- nil
			return
		}
		stored <- k.commit(ctx, ref.Repo(), a, sigs, false)
	}()
	dir, err := k.unpacked(subject, a)
	if serr := <-stored; err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if !fromCache {
		if err := k.commit(ctx, ref.Repo(), a, sigs, true); err != nil {
			return nil, err
		}
	}
	res := &Fetched{Dir: dir, Ref: ref.Repo(), Tag: tag, Version: ver, Digest: a.manifestDesc.Digest.String(), Signer: signer, FromCache: fromCache}
	if fromCache {
		c.progressf("using cached %s (%s, pinned in lock), signed by %s", subject, ver, signer)
	} else {
		c.progressf("verified %s (%s), signed by %s", subject, ver, signer)
	}
	if o.LockPath != "" {
		ne := LockEntry{Ref: ref.Repo(), Constraint: constraint, Tag: tag, Version: ver, Digest: res.Digest, Signer: signer}
		if entry != nil {
			if entry.Digest != res.Digest {
				res.PreviousDigest = entry.Digest
			}
			if ne.Constraint == "" && ref.Tag == "" && ref.Digest == "" {
				ne.Constraint = entry.Constraint
			}
		}
		if entry == nil || *entry != ne {
			lock.Set(ne)
			if err := lock.Write(o.LockPath); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}
