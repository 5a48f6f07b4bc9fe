package inference

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// The chat completions shapes the translators read and write (OpenAI's
// wire format; only the members they use).

type chatRequest struct {
	Model           string          `json:"model"`
	Messages        []chatMessage   `json:"messages"`
	Tools           []chatTool      `json:"tools,omitempty"`
	ToolChoice      any             `json:"tool_choice,omitempty"`
	MaxTokens       *int64          `json:"max_tokens,omitempty"`
	Temperature     *float64        `json:"temperature,omitempty"`
	TopP            *float64        `json:"top_p,omitempty"`
	Stop            []string        `json:"stop,omitempty"`
	ParallelTools   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat  json.RawMessage `json:"response_format,omitempty"`
	User            string          `json:"user,omitempty"`
	Stream          bool            `json:"stream,omitempty"`
	StreamOptions   *streamOptions  `json:"stream_options,omitempty"`
	ReasoningEffort string          `json:"reasoning_effort,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    any            `json:"content"` // string, []chatPart or nil
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatPart struct {
	Type     string        `json:"type"`
	Text     string        `json:"text,omitempty"`
	ImageURL *chatImageURL `json:"image_url,omitempty"`
}

type chatImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

type chatTool struct {
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

type chatToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

type chatResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Created int64  `json:"created"`
	Choices []struct {
		Message struct {
			Content   *string        `json:"content"`
			Refusal   *string        `json:"refusal"`
			ToolCalls []chatToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *chatUsage `json:"usage"`
}

type chatChunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Created int64  `json:"created"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string        `json:"content"`
			ToolCalls []chatToolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *chatUsage `json:"usage"`
}

// badRequest is a translation refusal: the request asks for something the
// chat completions API cannot carry.
func badRequest(format string, a ...any) error {
	return &sdk.Error{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: fmt.Sprintf(format, a...)}
}

// newID returns prefix and 24 random hex digits.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// toolCall is one tool call as the translators build it.
type toolCall struct {
	id, name, args string
}

// chatResult is a whole chat answer, from a response or an accumulated
// stream.
type chatResult struct {
	id, model string
	created   int64
	text      string
	refusal   string
	calls     []toolCall
	finish    string
	usage     *chatUsage
}

func parseChatResponse(b []byte) (*chatResult, error) {
	var cr chatResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return nil, errMalformed("a chat completion that does not parse: " + clip(err.Error()))
	}
	if len(cr.Choices) == 0 {
		return nil, errMalformed("a chat completion without choices")
	}
	ch := cr.Choices[0]
	res := &chatResult{id: cr.ID, model: cr.Model, created: cr.Created, finish: ch.FinishReason, usage: cr.Usage}
	if ch.Message.Content != nil {
		res.text = *ch.Message.Content
	}
	if ch.Message.Refusal != nil {
		res.refusal = *ch.Message.Refusal
	}
	for _, tc := range ch.Message.ToolCalls {
		res.calls = append(res.calls, toolCall{id: tc.ID, name: tc.Function.Name, args: tc.Function.Arguments})
	}
	return res, nil
}

// chatEvents receives a chat stream as events: the translators' emitters
// implement it.
type chatEvents interface {
	start(id, model string, created int64) error
	text(delta string) error
	toolStart(i int, id, name string) error
	toolArgs(i int, delta string) error
	finish(res *chatResult) error
}

// chatStream turns chat chunks into chatEvents, accumulating the whole
// answer for the final events.
type chatStream struct {
	ev      chatEvents
	res     chatResult
	started bool
	// tools maps the chunk's tool index to its position in res.calls.
	tools map[int]int
}

func (s *chatStream) chunk(ch sdk.Chunk) error {
	var cc chatChunk
	if err := json.Unmarshal(ch.Data, &cc); err != nil {
		return errMalformed("a chat stream chunk that does not parse: " + clip(err.Error()))
	}
	if !s.started {
		s.started = true
		s.res.id, s.res.model, s.res.created = cc.ID, cc.Model, cc.Created
		if err := s.ev.start(cc.ID, cc.Model, cc.Created); err != nil {
			return err
		}
	}
	if cc.Usage != nil {
		s.res.usage = cc.Usage
	} else if ch.Usage != nil {
		s.res.usage = &chatUsage{PromptTokens: ch.Usage.PromptTokens, CompletionTokens: ch.Usage.CompletionTokens, TotalTokens: ch.Usage.TotalTokens}
	}
	for _, c := range cc.Choices {
		if c.Index != 0 {
			continue // n > 1 is not translated; the first choice is the answer
		}
		if d := c.Delta.Content; d != nil && *d != "" {
			s.res.text += *d
			if err := s.ev.text(*d); err != nil {
				return err
			}
		}
		for _, tc := range c.Delta.ToolCalls {
			idx := len(s.tools)
			if tc.Index != nil {
				idx = *tc.Index
			}
			if s.tools == nil {
				s.tools = map[int]int{}
			}
			pos, ok := s.tools[idx]
			if !ok {
				if tc.Function.Name == "" {
					return errMalformed("a tool call without a name")
				}
				pos = len(s.res.calls)
				s.tools[idx] = pos
				id := tc.ID
				if id == "" {
					id = newID("call_")
				}
				s.res.calls = append(s.res.calls, toolCall{id: id, name: tc.Function.Name})
				if err := s.ev.toolStart(pos, id, tc.Function.Name); err != nil {
					return err
				}
			}
			if a := tc.Function.Arguments; a != "" {
				s.res.calls[pos].args += a
				if err := s.ev.toolArgs(pos, a); err != nil {
					return err
				}
			}
		}
		if c.FinishReason != nil && *c.FinishReason != "" {
			s.res.finish = *c.FinishReason
		}
	}
	return nil
}

func (s *chatStream) end() error {
	if !s.started {
		return errMalformed("an empty stream")
	}
	return s.ev.finish(&s.res)
}

// translated runs a translated call: body is the chat request to send;
// whole answers a non-streamed call from the chat result; ev receives a
// streamed one. usage goes to the audit record either way.
func (c *call) translated(ctx context.Context, b sdk.Backend, body []byte, model string, stream bool, whole func(*chatResult) ([]byte, error), ev chatEvents) {
	req := &sdk.Request{Model: model, Stream: stream, Body: body}
	fn := func(ctx context.Context, w sdk.StreamWriter) error { return b.ChatCompletions(ctx, req, w) }
	if !stream {
		var got *sdk.Chunk
		err := c.run(ctx, fn, one(&got))
		if err == nil && got == nil {
			err = errMalformed("no response")
		}
		var out []byte
		if err == nil {
			c.noteUsage(*got)
			var res *chatResult
			if res, err = parseChatResponse(got.Data); err == nil {
				out, err = whole(res)
			}
		}
		if err != nil {
			c.failErr(err)
			return
		}
		c.writeJSON(out)
		return
	}
	c.out = newSSEOut(c.w)
	cs := &chatStream{ev: ev}
	err := c.run(ctx, fn, func(ch sdk.Chunk) error {
		c.noteUsage(ch)
		return cs.chunk(ch)
	})
	if err == nil {
		err = cs.end()
	}
	c.endStream(err, func() error { return nil })
}

// rawString reads a JSON value that must be a string.
func rawString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}
