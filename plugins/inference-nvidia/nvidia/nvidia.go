// Package nvidia is the backend of nemoclaw-inference-nvidia: the NVIDIA API
// catalog and NIM microservices through openaicompat.
package nvidia

import (
	"net/url"
	"strings"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/openaicompat"
)

// Version is the plugin's version.
const Version = "0.1.0"

// CatalogEndpoint is the NVIDIA API catalog's OpenAI-compatible base URL.
const CatalogEndpoint = "https://integrate.api.nvidia.com/v1"

// New returns the backend. The API catalog (*.api.nvidia.com) needs a key;
// a local NIM may run without one.
func New() *openaicompat.Backend { return openaicompat.New(Options()) }

// Options are the backend's openaicompat options (tests swap the Transport).
func Options() openaicompat.Options {
	return openaicompat.Options{
		Name:            "nvidia",
		Version:         Version,
		DefaultEndpoint: CatalogEndpoint,
		Capabilities: []sdk.Capability{
			sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming,
		},
		CredentialRequired: func(u *url.URL) bool {
			h := u.Hostname()
			return h == "api.nvidia.com" || strings.HasSuffix(h, ".api.nvidia.com")
		},
	}
}
