// Command nemoclaw-inference-echo is the example plugin of docs/plugins.md:
// it answers every chat completion with a message that repeats the last
// thing the user said. The tests build it and load it through the host.
package main

import (
	"context"
	"encoding/json"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

type echo struct{ sdk.UnimplementedBackend }

func (echo) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "echo", Version: "1.0.0", Capabilities: []sdk.Capability{sdk.CapChat}}, nil
}

func (echo) ChatCompletions(_ context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	var in struct{ Messages []struct{ Content string } }
	if err := json.Unmarshal(r.Body, &in); err != nil || len(in.Messages) == 0 {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: "echo needs messages"}
	}
	said := in.Messages[len(in.Messages)-1].Content
	out, _ := json.Marshal(map[string]any{"object": "chat.completion", "model": r.Model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]string{"role": "assistant", "content": "echo: " + said}}}})
	return w.Send(sdk.Chunk{Data: out})
}

func main() { sdk.Serve(echo{}) }
