package state

import (
	"fmt"
	"net/url"
	"sort"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
)

// AutoProfile is the --profile value that picks the best profile this
// host can run.
const AutoProfile = "auto"

// PlanProfile is one inference profile and whether this host can run it.
type PlanProfile struct {
	Name string `json:"name"`
	// Local: the profile's endpoint is on this host (a model server that
	// needs the GPUs), not a cloud API.
	Local  bool     `json:"local"`
	Fits   bool     `json:"fits"`
	Why    string   `json:"why"`
	Need   gpu.Need `json:"need,omitempty"`
	Chosen bool     `json:"chosen,omitempty"`
}

// profileNeed is the profile's gpu:, or the blueprint's.
func profileNeed(b *blueprint.Blueprint, p *blueprint.InferenceProfile) gpu.Need {
	g := p.GPU
	if g == nil {
		return gpu.Need{}
	}
	return gpu.Need{Count: g.Count, MinMemoryGiB: g.MinMemoryGiB, MinComputeCapability: g.MinComputeCapability}
}

// isLocal reports whether endpoint is on this host.
func isLocal(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	switch u.Hostname() {
	case "localhost", "127.0.0.1", "::1", "host.docker.internal":
		return true
	}
	return false
}

// fitProfiles says for every profile of b, in the blueprint's order,
// whether this host can run it.
func fitProfiles(b *blueprint.Blueprint, inv *gpu.Inventory, detectErr error) []PlanProfile {
	if b.Components.Inference == nil {
		return nil
	}
	names := append([]string(nil), b.Profiles...)
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
	}
	var extra []string
	for n := range b.Components.Inference.Profiles {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	var out []PlanProfile
	for _, n := range append(names, extra...) {
		p, ok := b.Components.Inference.Profiles[n]
		if !ok {
			continue
		}
		pp := PlanProfile{Name: n, Local: isLocal(p.Endpoint), Need: profileNeed(b, p)}
		pp.Fits, pp.Why = gpu.Fit(inv, detectErr, pp.Need)
		if pp.Local && pp.Need == (gpu.Need{}) {
			pp.Why = "a local server with no declared GPU need"
		}
		out = append(out, pp)
	}
	return out
}

// chooseAuto picks, among the profiles that fit, the local one with the
// biggest GPU need (the biggest model this host can serve); else the
// blueprint's default when it needs no GPU and is not local; else the first
// cloud profile. A local profile without a declared need is never picked:
// nothing says the host can serve it.
func chooseAuto(b *blueprint.Blueprint, ps []PlanProfile) (string, string, error) {
	best := -1
	for i, p := range ps {
		if !p.Fits || !p.Local || p.Need == (gpu.Need{}) {
			continue
		}
		if best < 0 || p.Need.MinMemoryGiB*float64(max(p.Need.Count, 1)) > ps[best].Need.MinMemoryGiB*float64(max(ps[best].Need.Count, 1)) {
			best = i
		}
	}
	if best >= 0 {
		return ps[best].Name, fmt.Sprintf("local profile %s fits this host's GPUs: %s", ps[best].Name, ps[best].Why), nil
	}
	def := b.DefaultProfileName()
	for _, p := range ps {
		if p.Name == def && !p.Local && p.Need == (gpu.Need{}) {
			return def, fmt.Sprintf("no local GPU profile fits this host; the default cloud profile %s needs no GPU", def), nil
		}
	}
	for _, p := range ps {
		if !p.Local && p.Need == (gpu.Need{}) {
			return p.Name, fmt.Sprintf("no local GPU profile fits this host; cloud profile %s needs no GPU", p.Name), nil
		}
	}
	return "", "", fmt.Errorf("--profile auto: no profile of blueprint %s fits this host (see the profiles listed by nemoclaw blueprint plan)", b.Dir)
}
