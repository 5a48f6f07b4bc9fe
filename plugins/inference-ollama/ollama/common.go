package ollama

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// options maps OpenAI's sampling fields to Ollama's options, refusing what
// Ollama cannot honour (n > 1) rather than answering something else.
func (s *oaSampling) options(r route) (map[string]any, error) {
	if s.N != nil && *s.N != 1 {
		return nil, badRequest("n=%d: Ollama returns one choice per request", *s.N)
	}
	o := map[string]any{}
	if s.MaxCompletionTokens != nil {
		o["num_predict"] = *s.MaxCompletionTokens
	} else if s.MaxTokens != nil {
		o["num_predict"] = *s.MaxTokens
	}
	if s.Temperature != nil {
		o["temperature"] = *s.Temperature
	}
	if s.TopP != nil {
		o["top_p"] = *s.TopP
	}
	if s.Seed != nil {
		o["seed"] = *s.Seed
	}
	if s.FrequencyPenalty != nil {
		o["frequency_penalty"] = *s.FrequencyPenalty
	}
	if s.PresencePenalty != nil {
		o["presence_penalty"] = *s.PresencePenalty
	}
	if len(s.Stop) > 0 && string(s.Stop) != "null" {
		stop, err := stringOrStrings(s.Stop, "stop")
		if err != nil {
			return nil, err
		}
		o["stop"] = stop
	}
	if r.numCtx > 0 {
		o["num_ctx"] = r.numCtx
	}
	if len(o) == 0 {
		return nil, nil
	}
	return o, nil
}

// stringOrStrings decodes a field OpenAI lets be a string or an array of strings.
func stringOrStrings(raw json.RawMessage, field string) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("%s must be a string or an array of strings", field)
	}
	return many, nil
}

// model is the model to ask Ollama for: the request's (the router rewrote
// it), else the route's.
func model(body string, r route) (string, error) {
	if body != "" {
		return body, nil
	}
	if r.model != "" {
		return r.model, nil
	}
	return "", badRequest("the request names no model and the profile sets none")
}

// finishReason maps Ollama's done_reason to OpenAI's finish_reason.
func finishReason(doneReason string, toolCalls bool) string {
	switch {
	case toolCalls:
		return "tool_calls"
	case doneReason == "length":
		return "length"
	default:
		return "stop"
	}
}

// usage turns Ollama's counts into OpenAI's usage and the SDK's.
func usage(m olMetrics) (*oaUsage, *sdk.Usage) {
	u := oaUsage{PromptTokens: m.PromptEvalCount, CompletionTokens: m.EvalCount, TotalTokens: m.PromptEvalCount + m.EvalCount}
	return &u, &sdk.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// newID returns an OpenAI-style identifier, e.g. "chatcmpl-3f2a…".
func newID(prefix string) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on Linux
	}
	return prefix + hex.EncodeToString(b[:])
}

// send marshals v and sends it as one chunk.
func send(w sdk.StreamWriter, v any, u *sdk.Usage) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ollama: encode response: %w", err)
	}
	return w.Send(sdk.Chunk{Data: data, Usage: u})
}

func ptr[T any](v T) *T { return &v }
