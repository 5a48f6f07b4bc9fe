package inference

import (
	"sort"
	"strings"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

// PluginName is a profile's plugin: its plugin field (a name or a path),
// else the built-in backend for its provider_type, without the binary's
// "nemoclaw-inference-" prefix.
func PluginName(p *blueprint.InferenceProfile) string {
	name := p.Plugin
	if name == "" {
		name = blueprint.KnownProviders[p.ProviderType]
	}
	if !strings.ContainsRune(name, '/') {
		name = strings.TrimPrefix(name, "nemoclaw-inference-")
	}
	return name
}

// MissingCredential names the environment variable a profile needs and
// the host lacks ("" when none is missing).
func MissingCredential(p *blueprint.InferenceProfile, lookupEnv func(string) (string, bool)) string {
	if p.CredentialEnv == "" || p.CredentialDefault != "" {
		return ""
	}
	if v, ok := lookupEnv(p.CredentialEnv); ok && v != "" {
		return ""
	}
	return p.CredentialEnv
}

// RouteOf resolves one profile into a route; its credential is read from
// lookupEnv (the supervisor's environment), never the sandbox's.
func RouteOf(name string, p *blueprint.InferenceProfile, lookupEnv func(string) (string, bool)) Route {
	r := Route{Profile: name, Plugin: PluginName(p), Config: sdk.Config{Endpoint: p.Endpoint, Model: p.Model, TimeoutSecs: p.TimeoutSecs},
		PluginSHA256: p.PluginSHA256, CredentialEnv: p.CredentialEnv, CredentialDefault: p.CredentialDefault}
	r, _ = r.Rekeyed(lookupEnv)
	if len(p.Aliases) > 0 {
		r.Aliases = make(map[string]string, len(p.Aliases))
		for a, m := range p.Aliases {
			r.Aliases[a] = m
		}
	}
	return r
}

// Routes resolves every inference profile of b, sorted by name.
func Routes(b *blueprint.Blueprint, lookupEnv func(string) (string, bool)) []Route {
	if b.Components.Inference == nil {
		return nil
	}
	names := make([]string, 0, len(b.Components.Inference.Profiles))
	for n := range b.Components.Inference.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Route, 0, len(names))
	for _, n := range names {
		if p := b.Components.Inference.Profiles[n]; p != nil {
			out = append(out, RouteOf(n, p, lookupEnv))
		}
	}
	return out
}
