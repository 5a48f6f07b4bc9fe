// Package vllm is the backend of nemoclaw-inference-vllm: vLLM's
// OpenAI-compatible server through openaicompat, with vLLM's tool-call
// requirement turned into an error that says how to start vLLM.
package vllm

import (
	"strings"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/openaicompat"
)

// Version is the plugin's version.
const Version = "0.1.0"

// DefaultEndpoint is where `vllm serve` listens by default, probed with GET /v1/models.
const DefaultEndpoint = "http://127.0.0.1:8000/v1"

// New returns the backend.
func New() *openaicompat.Backend { return openaicompat.New(Options()) }

// Options are the backend's openaicompat options (tests swap the Transport).
func Options() openaicompat.Options {
	return openaicompat.Options{
		Name:            "vllm",
		Version:         Version,
		DefaultEndpoint: DefaultEndpoint,
		Capabilities: []sdk.Capability{
			sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming,
		},
		MapError: mapError,
	}
}

// mapError explains vLLM's refusal of tool calls: vLLM serves "tool_choice":
// "auto" (what agents send) only when started with --enable-auto-tool-choice
// and a --tool-call-parser for the model's format; without them it answers
// 400 naming those flags.
func mapError(status int, msg string, e *sdk.Error) *sdk.Error {
	if status != 400 {
		return e
	}
	if strings.Contains(msg, "enable-auto-tool-choice") || strings.Contains(msg, "tool-call-parser") || strings.Contains(msg, "tool_call_parser") {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: "vLLM serves no automatic tool calls: restart it with `--enable-auto-tool-choice --tool-call-parser PARSER` (the parser for the model's format, e.g. hermes, llama3_json, mistral) or send requests without tools (vLLM said: " + msg + ")"}
	}
	return e
}
