package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/go-version"
	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote"
)

// parseDigest checks a "sha256:<hex>" digest.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("want sha256:<64 hex digits>: %w", err)
	}
	if d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("algorithm %s: want sha256", d.Algorithm())
	}
	return d, nil
}

// parseConstraint parses a semver constraint such as "~> 1.2" or
// ">= 1.2, < 2".
func parseConstraint(s string) (version.Constraints, error) {
	c, err := version.NewConstraint(s)
	if err != nil {
		return nil, fmt.Errorf("version constraint %q: %w (examples: \"~> 1.2\", \">= 1.2, < 2\", \"1.2.3\")", s, err)
	}
	return c, nil
}

// selectVersion picks the highest tag that parses as a version and
// satisfies constraint (nil: any version). Pre-releases match only a
// constraint that names one (go-version's rule).
func selectVersion(tags []string, constraint version.Constraints) (tag string, v *version.Version, ok bool) {
	type cand struct {
		tag string
		v   *version.Version
	}
	var cands []cand
	for _, t := range tags {
		pv, err := version.NewVersion(t)
		if err != nil {
			continue
		}
		if constraint == nil {
			if pv.Prerelease() != "" {
				continue
			}
		} else if !constraint.Check(pv) {
			continue
		}
		cands = append(cands, cand{t, pv})
	}
	if len(cands) == 0 {
		return "", nil, false
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if c := cands[i].v.Compare(cands[j].v); c != 0 {
			return c > 0
		}
		return cands[i].tag < cands[j].tag
	})
	return cands[0].tag, cands[0].v, true
}

// listTags returns every tag of repo.
func listTags(ctx context.Context, repo *remote.Repository) ([]string, error) {
	var tags []string
	err := repo.Tags(ctx, "", func(ts []string) error {
		tags = append(tags, ts...)
		return nil
	})
	return tags, err
}

// versionTags is a short, human list of the version-like tags, for errors.
func versionTags(tags []string) string {
	var vs []string
	for _, t := range tags {
		if _, err := version.NewVersion(t); err == nil {
			vs = append(vs, t)
		}
	}
	if len(vs) == 0 {
		return "none"
	}
	if len(vs) > 20 {
		vs = append(vs[:20], "…")
	}
	return strings.Join(vs, ", ")
}

// isLower reports whether version a is lower than b; unparsable versions
// compare as not lower.
func isLower(a, b string) bool {
	va, err1 := version.NewVersion(a)
	vb, err2 := version.NewVersion(b)
	return err1 == nil && err2 == nil && va.LessThan(vb)
}
