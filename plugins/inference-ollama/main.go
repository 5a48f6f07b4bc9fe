// Command nemoclaw-inference-ollama is nemoclaw's Ollama inference plugin:
// nemoclaw's plugin host launches it and talks to it over go-plugin gRPC;
// it calls the Ollama API on the host (127.0.0.1:11434 unless the profile's
// endpoint says otherwise). All of its logic is in package ollama.
package main

import (
	"log/slog"
	"os"

	"github.com/nemoclaw/nemoclaw/plugins/inference-ollama/ollama"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

func main() {
	// go-plugin forwards the plugin's stderr to the host's log.
	sdk.Serve(ollama.New(slog.New(slog.NewTextHandler(os.Stderr, nil))))
}
