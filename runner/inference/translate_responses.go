package inference

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// responsesRequest is the part of a POST /v1/responses body the
// translation reads.
type responsesRequest struct {
	Input              json.RawMessage `json:"input"`
	Instructions       *string         `json:"instructions"`
	Tools              []responsesTool `json:"tools"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	MaxOutputTokens    *int64          `json:"max_output_tokens"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	ParallelToolCalls  *bool           `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	User               string          `json:"user"`
	Text               *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	Reasoning *struct {
		Effort string `json:"effort"`
	} `json:"reasoning"`
}

type responsesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// responsesItem is one input item: a message, a function call or a
// function call's output.
type responsesItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	CallID  string          `json:"call_id"`
	Name    string          `json:"name"`
	Args    string          `json:"arguments"`
	Output  json.RawMessage `json:"output"`
}

type responsesPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL string `json:"image_url"`
	Detail   string `json:"detail"`
}

// responsesToChat translates a Responses API request to chat completions.
func responsesToChat(body []byte, model string, stream bool) ([]byte, error) {
	var in responsesRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("request body: %v", err)
	}
	if in.PreviousResponseID != nil && *in.PreviousResponseID != "" {
		return nil, badRequest("previous_response_id is not supported: inference.local keeps no conversation state; send the whole conversation in input")
	}
	out := chatRequest{Model: model, Stream: stream, MaxTokens: in.MaxOutputTokens, Temperature: in.Temperature, TopP: in.TopP, ParallelTools: in.ParallelToolCalls, User: in.User}
	if stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if in.Reasoning != nil {
		out.ReasoningEffort = in.Reasoning.Effort
	}
	if in.Instructions != nil && *in.Instructions != "" {
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: *in.Instructions})
	}
	msgs, err := responsesInput(in.Input)
	if err != nil {
		return nil, err
	}
	out.Messages = append(out.Messages, msgs...)
	for _, t := range in.Tools {
		if t.Type != "function" {
			return nil, badRequest("tool type %q is not supported: inference.local translates /v1/responses to chat completions, which carry function tools only", clip(t.Type))
		}
		out.Tools = append(out.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict}})
	}
	if len(in.ToolChoice) > 0 && string(in.ToolChoice) != "null" {
		if s, ok := rawString(in.ToolChoice); ok {
			out.ToolChoice = s
		} else {
			var tc struct{ Type, Name string }
			if err := json.Unmarshal(in.ToolChoice, &tc); err != nil || tc.Type != "function" || tc.Name == "" {
				return nil, badRequest("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}")
			}
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
		}
	}
	if in.Text != nil && len(in.Text.Format) > 0 && string(in.Text.Format) != "null" {
		var f struct {
			Type   string          `json:"type"`
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict *bool           `json:"strict"`
		}
		if err := json.Unmarshal(in.Text.Format, &f); err != nil {
			return nil, badRequest("text.format: %v", err)
		}
		switch f.Type {
		case "", "text":
		case "json_object":
			out.ResponseFormat = json.RawMessage(`{"type":"json_object"}`)
		case "json_schema":
			rf, _ := json.Marshal(map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": f.Name, "schema": f.Schema, "strict": f.Strict}})
			out.ResponseFormat = rf
		default:
			return nil, badRequest("text.format type %q is not supported", clip(f.Type))
		}
	}
	return json.Marshal(out)
}

// responsesInput translates input (a string or a list of items) to chat
// messages.
func responsesInput(raw json.RawMessage) ([]chatMessage, error) {
	if s, ok := rawString(raw); ok {
		return []chatMessage{{Role: "user", Content: s}}, nil
	}
	var items []responsesItem
	if err := json.Unmarshal(raw, &items); err != nil || len(raw) == 0 {
		return nil, badRequest("input must be a string or a list of items")
	}
	var out []chatMessage
	for i, it := range items {
		switch it.Type {
		case "", "message":
			role := it.Role
			switch role {
			case "developer":
				role = "system"
			case "user", "assistant", "system":
			default:
				return nil, badRequest("input[%d]: role %q is not one of user, assistant, system, developer", i, clip(role))
			}
			content, err := responsesContent(it.Content)
			if err != nil {
				return nil, badRequest("input[%d]: %v", i, err)
			}
			out = append(out, chatMessage{Role: role, Content: content})
		case "function_call":
			tc := chatToolCall{ID: it.CallID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = it.Name, it.Args
			if n := len(out); n > 0 && out[n-1].Role == "assistant" && out[n-1].Content == nil {
				out[n-1].ToolCalls = append(out[n-1].ToolCalls, tc)
			} else {
				out = append(out, chatMessage{Role: "assistant", ToolCalls: []chatToolCall{tc}})
			}
		case "function_call_output":
			s, ok := rawString(it.Output)
			if !ok {
				s = string(it.Output)
			}
			out = append(out, chatMessage{Role: "tool", ToolCallID: it.CallID, Content: s})
		case "reasoning":
			// A previous turn's reasoning summary: chat completions has
			// no place for it, and the model does not need it back.
		default:
			return nil, badRequest("input[%d]: item type %q is not supported when translating to chat completions", i, clip(it.Type))
		}
	}
	return out, nil
}

// responsesContent translates a message's content: a string, or parts.
func responsesContent(raw json.RawMessage) (any, error) {
	if s, ok := rawString(raw); ok {
		return s, nil
	}
	var parts []responsesPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, badRequest("content must be a string or a list of parts")
	}
	var out []chatPart
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			out = append(out, chatPart{Type: "text", Text: p.Text})
		case "input_image":
			out = append(out, chatPart{Type: "image_url", ImageURL: &chatImageURL{URL: p.ImageURL, Detail: p.Detail}})
		case "refusal":
		default:
			return nil, badRequest("content part type %q is not supported", clip(p.Type))
		}
	}
	return out, nil
}

// responseObject builds the Responses API's response object.
func responseObject(id, model string, created int64, status string, output []any, u *chatUsage) map[string]any {
	r := map[string]any{
		"id": id, "object": "response", "created_at": created, "status": status, "model": model,
		"output": output, "error": nil, "incomplete_details": nil, "parallel_tool_calls": true,
		"tool_choice": "auto", "tools": []any{}, "metadata": map[string]any{},
		"text": map[string]any{"format": map[string]string{"type": "text"}},
	}
	if status == "incomplete" {
		r["incomplete_details"] = map[string]string{"reason": "max_output_tokens"}
	}
	if u != nil {
		r["usage"] = map[string]any{
			"input_tokens": u.PromptTokens, "output_tokens": u.CompletionTokens, "total_tokens": u.TotalTokens,
			"input_tokens_details":  map[string]int64{"cached_tokens": 0},
			"output_tokens_details": map[string]int64{"reasoning_tokens": 0},
		}
	}
	return r
}

func responseStatus(finish string) string {
	if finish == "length" {
		return "incomplete"
	}
	return "completed"
}

func messageItem(id, status, text string) map[string]any {
	content := []any{}
	if status == "completed" {
		content = append(content, map[string]any{"type": "output_text", "text": text, "annotations": []any{}})
	}
	return map[string]any{"type": "message", "id": id, "status": status, "role": "assistant", "content": content}
}

func functionItem(id string, tc toolCall, status string) map[string]any {
	return map[string]any{"type": "function_call", "id": id, "call_id": tc.id, "name": tc.name, "arguments": tc.args, "status": status}
}

// responses serves POST /v1/responses through chat completions.
func (c *call) responses(ctx context.Context, b sdk.Backend, body []byte, model string, stream bool) {
	chat, err := responsesToChat(body, model, stream)
	if err != nil {
		c.failErr(err)
		return
	}
	c.responsesAPI = true
	rid := newID("resp_")
	whole := func(res *chatResult) ([]byte, error) {
		var output []any
		if res.text != "" || len(res.calls) == 0 {
			output = append(output, messageItem(newID("msg_"), "completed", res.text))
		}
		for _, tc := range res.calls {
			output = append(output, functionItem(newID("fc_"), tc, "completed"))
		}
		return json.Marshal(responseObject(rid, res.model, createdOr(res.created), responseStatus(res.finish), output, res.usage))
	}
	c.translated(ctx, b, chat, model, stream, whole, &responsesEmitter{c: c, id: rid})
}

func createdOr(t int64) int64 {
	if t == 0 {
		return time.Now().Unix()
	}
	return t
}

// responsesEmitter writes a chat stream as Responses API events.
type responsesEmitter struct {
	c       *call
	id      string
	model   string
	created int64
	// items are the output items in order; msg is the message item's
	// index (-1: none yet); tools maps a tool call to its item.
	items []map[string]any
	msg   int
	tools map[int]int
	fcIDs map[int]string
}

func (e *responsesEmitter) send(typ string, fields map[string]any) error {
	fields["type"] = typ
	fields["sequence_number"] = e.c.seq()
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return e.c.out.event(typ, b)
}

func (e *responsesEmitter) start(_, model string, created int64) error {
	e.model, e.created, e.msg = model, createdOr(created), -1
	e.tools, e.fcIDs = map[int]int{}, map[int]string{}
	r := responseObject(e.id, model, e.created, "in_progress", []any{}, nil)
	if err := e.send("response.created", map[string]any{"response": r}); err != nil {
		return err
	}
	return e.send("response.in_progress", map[string]any{"response": r})
}

func (e *responsesEmitter) text(delta string) error {
	if e.msg < 0 {
		e.msg = len(e.items)
		item := messageItem(newID("msg_"), "in_progress", "")
		e.items = append(e.items, item)
		if err := e.send("response.output_item.added", map[string]any{"output_index": e.msg, "item": item}); err != nil {
			return err
		}
		if err := e.send("response.content_part.added", map[string]any{"item_id": item["id"], "output_index": e.msg, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}); err != nil {
			return err
		}
	}
	return e.send("response.output_text.delta", map[string]any{"item_id": e.items[e.msg]["id"], "output_index": e.msg, "content_index": 0, "delta": delta, "logprobs": []any{}})
}

func (e *responsesEmitter) toolStart(i int, id, name string) error {
	e.tools[i] = len(e.items)
	e.fcIDs[i] = newID("fc_")
	item := functionItem(e.fcIDs[i], toolCall{id: id, name: name}, "in_progress")
	e.items = append(e.items, item)
	return e.send("response.output_item.added", map[string]any{"output_index": e.tools[i], "item": item})
}

func (e *responsesEmitter) toolArgs(i int, delta string) error {
	return e.send("response.function_call_arguments.delta", map[string]any{"item_id": e.fcIDs[i], "output_index": e.tools[i], "delta": delta})
}

func (e *responsesEmitter) finish(res *chatResult) error {
	output := make([]any, len(e.items))
	if e.msg >= 0 {
		id := e.items[e.msg]["id"].(string)
		part := map[string]any{"type": "output_text", "text": res.text, "annotations": []any{}}
		for _, ev := range []struct {
			typ    string
			fields map[string]any
		}{
			{"response.output_text.done", map[string]any{"item_id": id, "output_index": e.msg, "content_index": 0, "text": res.text, "logprobs": []any{}}},
			{"response.content_part.done", map[string]any{"item_id": id, "output_index": e.msg, "content_index": 0, "part": part}},
			{"response.output_item.done", map[string]any{"output_index": e.msg, "item": messageItem(id, "completed", res.text)}},
		} {
			if err := e.send(ev.typ, ev.fields); err != nil {
				return err
			}
		}
		output[e.msg] = messageItem(id, "completed", res.text)
	}
	for i, tc := range res.calls {
		idx := e.tools[i]
		item := functionItem(e.fcIDs[i], tc, "completed")
		if err := e.send("response.function_call_arguments.done", map[string]any{"item_id": e.fcIDs[i], "output_index": idx, "name": tc.name, "arguments": tc.args}); err != nil {
			return err
		}
		if err := e.send("response.output_item.done", map[string]any{"output_index": idx, "item": item}); err != nil {
			return err
		}
		output[idx] = item
	}
	model := res.model
	if model == "" {
		model = e.model
	}
	return e.send("response.completed", map[string]any{"response": responseObject(e.id, model, e.created, responseStatus(res.finish), output, res.usage)})
}
