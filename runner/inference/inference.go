// Package inference routes a sandbox's model calls: an http.Handler that
// serves inference.local (OpenAI-compatible, Anthropic messages as a second
// front door) per sandbox, and the host that discovers, verifies, launches
// and supervises backend plugins (hashicorp/go-plugin over gRPC).
//
// The router and the plugin host meet at Provider: the router asks it for a
// route's sdk.Backend and never knows whether that backend is a plugin
// process or an in-process implementation (tests, the SDK harness).
package inference

import (
	"context"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Route is one inference route: a blueprint profile resolved for a sandbox.
type Route struct {
	// Profile is the blueprint profile's name.
	Profile string
	// Plugin is the plugin's name (e.g. "nvidia", binary nemoclaw-inference-nvidia).
	Plugin string
	// Config is what the plugin is configured with (it holds the credential).
	Config sdk.Config
	// Aliases maps model names the agent may ask for to the backend's model.
	Aliases map[string]string
	// PluginSHA256 is the plugin checksum the profile pins ("" for none):
	// it wins over plugins.lock (HostConfig.Pins).
	PluginSHA256 string
	// CredentialEnv and CredentialDefault are the profile's: where
	// Config.Credential came from, so that a route kept without its key
	// (a sandbox's launch record) can be given it again (Rekeyed).
	CredentialEnv, CredentialDefault string
}

// Unkeyed returns r without its credential: what may be written down.
func (r Route) Unkeyed() Route {
	r.Config.Credential = ""
	return r
}

// Rekeyed returns r with its credential read again from lookupEnv (the
// host's environment), falling back to the profile's default; missing
// names the variable when it is unset and there is no default.
func (r Route) Rekeyed(lookupEnv func(string) (string, bool)) (_ Route, missing string) {
	r.Config.Credential = r.CredentialDefault
	if r.CredentialEnv != "" {
		if v, ok := lookupEnv(r.CredentialEnv); ok && v != "" {
			r.Config.Credential = v
		} else if r.CredentialDefault == "" {
			missing = r.CredentialEnv
		}
	}
	return r, missing
}

// Pins returns the plugin checksums that routes pin, by plugin name, for
// HostConfig.Pins.
func Pins(routes []Route) map[string]string {
	var out map[string]string
	for _, r := range routes {
		if r.PluginSHA256 == "" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[r.Plugin] = r.PluginSHA256
	}
	return out
}

// Provider gives the router a ready backend for a route: a plugin process
// launched, verified and configured by the host, or an in-process backend.
type Provider interface {
	// Backend returns a configured backend for the route. The router calls it
	// per request; implementations cache and restart as needed.
	Backend(ctx context.Context, r Route) (sdk.Backend, error)
}
