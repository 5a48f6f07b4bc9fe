package e2e

import (
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

func init() {
	// The plugin binary as the host launches it: built, then started over
	// go-plugin (gRPC, AutoMTLS, no host environment).
	ollamaBackends["plugin"] = func(t *testing.T) sdk.Backend {
		return sdktest.Launch(t, sdktest.Build(t, "../plugins/inference-ollama", "ollama"))
	}
}
