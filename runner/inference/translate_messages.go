package inference

import (
	"context"
	"encoding/json"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// messagesRequest is the part of an Anthropic POST /v1/messages body the
// translation reads.
type messagesRequest struct {
	System        json.RawMessage    `json:"system"`
	Messages      []messagesMessage  `json:"messages"`
	Tools         []messagesTool     `json:"tools"`
	ToolChoice    *messagesToolChoce `json:"tool_choice"`
	MaxTokens     *int64             `json:"max_tokens"`
	Temperature   *float64           `json:"temperature"`
	TopP          *float64           `json:"top_p"`
	StopSequences []string           `json:"stop_sequences"`
}

type messagesMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type messagesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type messagesToolChoce struct {
	Type                   string `json:"type"`
	Name                   string `json:"name"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
}

// messagesBlock is one content block.
type messagesBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
	Source    *struct {
		Type      string `json:"type"`
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	} `json:"source"`
}

// messagesToChat translates an Anthropic messages request to chat
// completions.
func messagesToChat(body []byte, model string, stream bool) ([]byte, error) {
	var in messagesRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("request body: %v", err)
	}
	out := chatRequest{Model: model, Stream: stream, MaxTokens: in.MaxTokens, Temperature: in.Temperature, TopP: in.TopP, Stop: in.StopSequences}
	if stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if len(in.System) > 0 && string(in.System) != "null" {
		sys, err := blocksText(in.System)
		if err != nil {
			return nil, badRequest("system: %v", err)
		}
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: sys})
	}
	for i, m := range in.Messages {
		msgs, err := messageToChat(m)
		if err != nil {
			return nil, badRequest("messages[%d]: %v", i, err)
		}
		out.Messages = append(out.Messages, msgs...)
	}
	for _, t := range in.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, badRequest("tool type %q is not supported: inference.local translates /v1/messages to chat completions, which carry function tools only", clip(t.Type))
		}
		out.Tools = append(out.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: t.InputSchema}})
	}
	if tc := in.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto", "":
			out.ToolChoice = "auto"
		case "any":
			out.ToolChoice = "required"
		case "none":
			out.ToolChoice = "none"
		case "tool":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
		default:
			return nil, badRequest("tool_choice type %q is not one of auto, any, tool, none", clip(tc.Type))
		}
		if tc.DisableParallelToolUse {
			f := false
			out.ParallelTools = &f
		}
	}
	return json.Marshal(out)
}

// blocksText reads a string or a list of text blocks.
func blocksText(raw json.RawMessage) (string, error) {
	if s, ok := rawString(raw); ok {
		return s, nil
	}
	var blocks []messagesBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", badRequest("must be a string or a list of text blocks")
	}
	s := ""
	for _, b := range blocks {
		if b.Type != "text" {
			return "", badRequest("block type %q where text was expected", clip(b.Type))
		}
		s += b.Text
	}
	return s, nil
}

// messageToChat translates one message: tool results become tool
// messages (ahead of the user's other content), tool uses the assistant's
// tool calls.
func messageToChat(m messagesMessage) ([]chatMessage, error) {
	if m.Role != "user" && m.Role != "assistant" {
		return nil, badRequest("role %q is not user or assistant", clip(m.Role))
	}
	if s, ok := rawString(m.Content); ok {
		return []chatMessage{{Role: m.Role, Content: s}}, nil
	}
	var blocks []messagesBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		return nil, badRequest("content must be a string or a list of blocks")
	}
	var out []chatMessage
	var parts []chatPart
	var calls []chatToolCall
	for _, b := range blocks {
		switch b.Type {
		case "text":
			parts = append(parts, chatPart{Type: "text", Text: b.Text})
		case "image":
			if b.Source == nil {
				return nil, badRequest("image block without source")
			}
			url := b.Source.URL
			if b.Source.Type == "base64" {
				url = "data:" + b.Source.MediaType + ";base64," + b.Source.Data
			}
			parts = append(parts, chatPart{Type: "image_url", ImageURL: &chatImageURL{URL: url}})
		case "tool_use":
			if m.Role != "assistant" {
				return nil, badRequest("tool_use block in a user message")
			}
			args := string(b.Input)
			if args == "" || args == "null" {
				args = "{}"
			}
			tc := chatToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = b.Name, args
			calls = append(calls, tc)
		case "tool_result":
			if m.Role != "user" {
				return nil, badRequest("tool_result block in an assistant message")
			}
			text := ""
			if len(b.Content) > 0 && string(b.Content) != "null" {
				t, err := blocksText(b.Content)
				if err != nil {
					return nil, err
				}
				text = t
			}
			if b.IsError {
				text = "error: " + text
			}
			out = append(out, chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: text})
		case "thinking", "redacted_thinking":
			// The model's earlier thinking: chat completions has no place for it.
		default:
			return nil, badRequest("content block type %q is not supported when translating to chat completions", clip(b.Type))
		}
	}
	if len(parts) > 0 || len(calls) > 0 {
		msg := chatMessage{Role: m.Role, ToolCalls: calls}
		switch {
		case len(parts) == 1 && parts[0].Type == "text":
			msg.Content = parts[0].Text
		case len(parts) > 0:
			msg.Content = parts
		}
		out = append(out, msg)
	}
	return out, nil
}

func stopReason(finish string) string {
	switch finish {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	}
	return "end_turn"
}

func anthropicUsage(u *chatUsage) map[string]int64 {
	if u == nil {
		return map[string]int64{"input_tokens": 0, "output_tokens": 0}
	}
	return map[string]int64{"input_tokens": u.PromptTokens, "output_tokens": u.CompletionTokens}
}

func toolInput(args string) json.RawMessage {
	if args == "" {
		return json.RawMessage("{}")
	}
	if !json.Valid([]byte(args)) {
		b, _ := json.Marshal(map[string]string{"_raw_arguments": args})
		return b
	}
	return json.RawMessage(args)
}

// messages serves Anthropic's POST /v1/messages through chat completions.
func (c *call) messages(ctx context.Context, b sdk.Backend, body []byte, model string, stream bool) {
	chat, err := messagesToChat(body, model, stream)
	if err != nil {
		c.failErr(err)
		return
	}
	mid := newID("msg_")
	whole := func(res *chatResult) ([]byte, error) {
		content := []any{}
		if res.text != "" {
			content = append(content, map[string]any{"type": "text", "text": res.text})
		}
		for _, tc := range res.calls {
			content = append(content, map[string]any{"type": "tool_use", "id": tc.id, "name": tc.name, "input": toolInput(tc.args)})
		}
		return json.Marshal(map[string]any{"id": mid, "type": "message", "role": "assistant", "model": res.model,
			"content": content, "stop_reason": stopReason(res.finish), "stop_sequence": nil, "usage": anthropicUsage(res.usage)})
	}
	c.translated(ctx, b, chat, model, stream, whole, &messagesEmitter{c: c, id: mid})
}

// messagesEmitter writes a chat stream as Anthropic message events.
type messagesEmitter struct {
	c     *call
	id    string
	open  int // index of the open content block, -1: none
	next  int
	tools map[int]int
}

func (e *messagesEmitter) send(typ string, fields map[string]any) error {
	fields["type"] = typ
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return e.c.out.event(typ, b)
}

func (e *messagesEmitter) start(_, model string, _ int64) error {
	e.open, e.tools = -1, map[int]int{}
	return e.send("message_start", map[string]any{"message": map[string]any{"id": e.id, "type": "message", "role": "assistant", "model": model,
		"content": []any{}, "stop_reason": nil, "stop_sequence": nil, "usage": anthropicUsage(nil)}})
}

// closeBlock ends the open content block, if any.
func (e *messagesEmitter) closeBlock() error {
	if e.open < 0 {
		return nil
	}
	i := e.open
	e.open = -1
	return e.send("content_block_stop", map[string]any{"index": i})
}

// textBlock is the index of the open text block, -1: none.
func (e *messagesEmitter) openBlock(block map[string]any) error {
	if err := e.closeBlock(); err != nil {
		return err
	}
	e.open = e.next
	e.next++
	return e.send("content_block_start", map[string]any{"index": e.open, "content_block": block})
}

func (e *messagesEmitter) text(delta string) error {
	if e.open < 0 || e.isTool(e.open) {
		if err := e.openBlock(map[string]any{"type": "text", "text": ""}); err != nil {
			return err
		}
	}
	return e.send("content_block_delta", map[string]any{"index": e.open, "delta": map[string]string{"type": "text_delta", "text": delta}})
}

func (e *messagesEmitter) isTool(block int) bool {
	for _, b := range e.tools {
		if b == block {
			return true
		}
	}
	return false
}

func (e *messagesEmitter) toolStart(i int, id, name string) error {
	if err := e.openBlock(map[string]any{"type": "tool_use", "id": id, "name": name, "input": map[string]any{}}); err != nil {
		return err
	}
	e.tools[i] = e.open
	return nil
}

func (e *messagesEmitter) toolArgs(i int, delta string) error {
	if e.tools[i] != e.open {
		// Arguments for an earlier call after another block began:
		// Anthropic's stream cannot go back to a closed block.
		return errMalformed("interleaved tool call arguments")
	}
	return e.send("content_block_delta", map[string]any{"index": e.open, "delta": map[string]string{"type": "input_json_delta", "partial_json": delta}})
}

func (e *messagesEmitter) finish(res *chatResult) error {
	if err := e.closeBlock(); err != nil {
		return err
	}
	// The usage comes last in a chat stream: both counts go here
	// (message_start could only say 0).
	if err := e.send("message_delta", map[string]any{"delta": map[string]any{"stop_reason": stopReason(res.finish), "stop_sequence": nil},
		"usage": anthropicUsage(res.usage)}); err != nil {
		return err
	}
	return e.send("message_stop", map[string]any{})
}
