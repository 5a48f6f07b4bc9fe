package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// ChatCompletions implements sdk.Backend through POST /api/chat.
func (b *Backend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	r := b.route()
	olReq, err := chatRequest(req.Body, r)
	if err != nil {
		return err
	}
	// Ollama always streams here, also when the caller wants one whole
	// answer: the idle timer then sees every token, so timeout_secs bounds
	// silences and never the length of an answer.
	wantStream := olReq.Stream
	olReq.Stream = true
	in, done, err := b.openStream(ctx, r, "/api/chat", olReq.Model, olReq)
	if err != nil {
		return err
	}
	defer done()
	if !wantStream {
		out, err := collectChat(in)
		if err != nil {
			return err
		}
		c, u := chatCompletion(out, olReq.Model)
		return send(w, c, u)
	}
	return streamChat(in, olReq.Model, w)
}

// collectChat gathers a whole answer from /api/chat's stream, as Ollama
// itself does for "stream": false.
func collectChat(in *ndjson) (olChatResponse, error) {
	var all olChatResponse
	var text, thinking strings.Builder
	for {
		var line olChatResponse
		if err := in.next(&line); err == io.EOF {
			return all, truncated(in.path)
		} else if err != nil {
			return all, err
		}
		text.WriteString(line.Message.Content)
		thinking.WriteString(line.Message.Thinking)
		all.Message.ToolCalls = append(all.Message.ToolCalls, line.Message.ToolCalls...)
		if text.Len()+thinking.Len() > MaxBodyBytes {
			return all, badGateway("Ollama's %s answer is larger than %d bytes", in.path, MaxBodyBytes)
		}
		if line.Done {
			all.Model, all.DoneReason, all.olMetrics = line.Model, line.DoneReason, line.olMetrics
			all.Message.Content, all.Message.Thinking = text.String(), thinking.String()
			return all, nil
		}
	}
}

// chatRequest translates an OpenAI chat/completions body into /api/chat's.
func chatRequest(body []byte, r route) (*olChatRequest, error) {
	var in oaChatRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("the chat request is not valid JSON: %v", err)
	}
	m, err := model(in.Model, r)
	if err != nil {
		return nil, err
	}
	if len(in.Messages) == 0 {
		return nil, badRequest("messages is empty")
	}
	out := &olChatRequest{Model: m, Stream: in.Stream, KeepAlive: r.keepAlive}
	if out.Options, err = in.options(r); err != nil {
		return nil, err
	}
	// tool_call_id → function name, for the tool_name Ollama's templates use.
	toolNames := map[string]string{}
	for i, msg := range in.Messages {
		om, err := chatMessage(msg, toolNames)
		if err != nil {
			return nil, badRequest("messages[%d]: %v", i, err)
		}
		out.Messages = append(out.Messages, om)
	}
	for i, raw := range in.Tools {
		var t oaTool
		if err := json.Unmarshal(raw, &t); err != nil || t.Type != "function" || t.Function == nil || t.Function.Name == "" {
			return nil, badRequest("tools[%d]: want {\"type\": \"function\", \"function\": {\"name\": ..., \"parameters\": ...}}", i)
		}
		// Ollama takes OpenAI's tool shape as it is.
		out.Tools = append(out.Tools, raw)
	}
	if f := in.ResponseFormat; f != nil {
		switch f.Type {
		case "", "text":
		case "json_object":
			out.Format = json.RawMessage(`"json"`)
		case "json_schema":
			if f.JSONSchema == nil || len(f.JSONSchema.Schema) == 0 {
				return nil, badRequest("response_format json_schema has no schema")
			}
			out.Format = f.JSONSchema.Schema
		default:
			return nil, badRequest("response_format type %q is not supported by Ollama", f.Type)
		}
	}
	return out, nil
}

// chatMessage translates one message; toolNames collects the assistant's
// tool call ids so a later tool message can name its function.
func chatMessage(msg oaMessage, toolNames map[string]string) (olMessage, error) {
	om := olMessage{Role: msg.Role}
	switch msg.Role {
	case "system", "user", "assistant", "tool":
	case "developer":
		om.Role = "system"
	default:
		return om, fmt.Errorf("role %q is not one of system, developer, user, assistant, tool", msg.Role)
	}
	text, images, err := content(msg.Content)
	if err != nil {
		return om, err
	}
	om.Content, om.Images = text, images
	for j, tc := range msg.ToolCalls {
		if tc.Function.Name == "" {
			return om, fmt.Errorf("tool_calls[%d] names no function", j)
		}
		args := strings.TrimSpace(tc.Function.Arguments)
		if args == "" {
			args = "{}"
		}
		// Ollama wants the arguments as an object, OpenAI sends a string.
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(args), &obj); err != nil || obj == nil {
			return om, fmt.Errorf("tool_calls[%d].function.arguments is not a JSON object", j)
		}
		var c olToolCall
		c.ID, c.Function.Name, c.Function.Arguments = tc.ID, tc.Function.Name, json.RawMessage(args)
		c.Function.Index = j
		om.ToolCalls = append(om.ToolCalls, c)
		if tc.ID != "" {
			toolNames[tc.ID] = tc.Function.Name
		}
	}
	if msg.Role == "tool" {
		om.ToolCallID = msg.ToolCallID
		om.ToolName = toolNames[msg.ToolCallID]
		if om.ToolName == "" {
			om.ToolName = msg.Name
		}
	}
	return om, nil
}

// content flattens OpenAI's content (a string, null, or an array of text
// and image parts) into Ollama's text and base64 images. Remote image URLs
// are refused: the plugin fetches nothing on the agent's behalf.
func content(raw json.RawMessage) (string, []string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil, nil
	}
	var parts []oaPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", nil, fmt.Errorf("content must be a string or an array of parts")
	}
	var texts, images []string
	for k, p := range parts {
		switch p.Type {
		case "text":
			texts = append(texts, p.Text)
		case "image_url":
			if p.ImageURL == nil {
				return "", nil, fmt.Errorf("content[%d] has no image_url", k)
			}
			data, ok := strings.CutPrefix(p.ImageURL.URL, "data:")
			_, b64, isB64 := strings.Cut(data, ";base64,")
			if !ok || !isB64 || b64 == "" {
				return "", nil, fmt.Errorf("content[%d]: only data: URLs with base64 images are supported (the plugin fetches no remote image)", k)
			}
			images = append(images, b64)
		default:
			return "", nil, fmt.Errorf("content[%d]: part type %q is not supported by Ollama's chat", k, p.Type)
		}
	}
	return strings.Join(texts, "\n"), images, nil
}

// toolCalls translates Ollama's tool calls; first is the index of the
// first one in the whole answer (streams number them across chunks).
func toolCalls(calls []olToolCall, first int, stream bool) []oaToolCall {
	out := make([]oaToolCall, 0, len(calls))
	for i, c := range calls {
		var t oaToolCall
		t.ID = c.ID
		if t.ID == "" {
			t.ID = newID("call_")
		}
		t.Type = "function"
		t.Function.Name = c.Function.Name
		args := bytes.TrimSpace(c.Function.Arguments)
		if len(args) == 0 || string(args) == "null" {
			args = []byte("{}")
		}
		var compact bytes.Buffer
		if json.Compact(&compact, args) == nil {
			args = compact.Bytes()
		}
		t.Function.Arguments = string(args)
		if stream {
			t.Index = ptr(first + i)
		}
		out = append(out, t)
	}
	return out
}

// chatCompletion translates a whole /api/chat answer into chat.completion.
func chatCompletion(out olChatResponse, model string) (oaChatResponse, *sdk.Usage) {
	if out.Model != "" {
		model = out.Model
	}
	msg := &oaRespMessage{Role: "assistant", Content: ptr(out.Message.Content), Reasoning: out.Message.Thinking}
	msg.ToolCalls = toolCalls(out.Message.ToolCalls, 0, false)
	if len(msg.ToolCalls) == 0 {
		msg.ToolCalls = nil
	}
	u, su := usage(out.olMetrics)
	return oaChatResponse{
		ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: model,
		Choices: []oaChatChoice{{Message: msg, FinishReason: ptr(finishReason(out.DoneReason, len(out.Message.ToolCalls) > 0))}},
		Usage:   u,
	}, su
}

// streamChat relays /api/chat's NDJSON as chat.completion.chunk payloads:
// the first carries the assistant role, each later one a content (or
// reasoning, or tool call) delta, and the last one the finish_reason and
// the usage. A stream that ends before Ollama's final object is an error.
func streamChat(in *ndjson, model string, w sdk.StreamWriter) error {
	id, created := newID("chatcmpl-"), time.Now().Unix()
	chunk := func(d *oaRespMessage, finish *string, u *oaUsage) oaChatResponse {
		return oaChatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
			Choices: []oaChatChoice{{Delta: d, FinishReason: finish}}, Usage: u}
	}
	if err := send(w, chunk(&oaRespMessage{Role: "assistant", Content: ptr("")}, nil, nil), nil); err != nil {
		return err
	}
	calls := 0
	fast := contentChunks{id: id, created: created}
	for {
		var line olChatResponse
		if err := in.next(&line); err == io.EOF {
			return truncated(in.path)
		} else if err != nil {
			return err
		}
		if line.Model != "" {
			model = line.Model
		}
		m := line.Message
		if m.Content != "" && m.Thinking == "" && len(m.ToolCalls) == 0 {
			// The common case, once per token: a content delta written
			// without reflection (TestContentChunkMatchesGeneral).
			if err := w.Send(sdk.Chunk{Data: fast.content(model, m.Content)}); err != nil {
				return err
			}
		} else if m.Content != "" || m.Thinking != "" || len(m.ToolCalls) > 0 {
			d := &oaRespMessage{Reasoning: m.Thinking}
			if m.Content != "" {
				d.Content = ptr(m.Content)
			}
			if len(m.ToolCalls) > 0 {
				d.ToolCalls = toolCalls(m.ToolCalls, calls, true)
				calls += len(m.ToolCalls)
			}
			if err := send(w, chunk(d, nil, nil), nil); err != nil {
				return err
			}
		}
		if line.Done {
			u, su := usage(line.olMetrics)
			return send(w, chunk(&oaRespMessage{}, ptr(finishReason(line.DoneReason, calls > 0)), u), su)
		}
	}
}

// contentChunks writes chat.completion.chunk payloads that carry only a
// content delta, the same JSON as encoding oaChatResponse, from a prefix
// built once per stream (and again if the model's name changes).
type contentChunks struct {
	id      string
	created int64
	model   string
	prefix  []byte
}

const contentSuffix = `},"finish_reason":null}]}`

func (c *contentChunks) content(model, text string) []byte {
	if c.prefix == nil || model != c.model {
		id, _ := json.Marshal(c.id)
		m, _ := json.Marshal(model)
		c.model = model
		c.prefix = fmt.Appendf(nil, `{"id":%s,"object":"chat.completion.chunk","created":%d,"model":%s,"choices":[{"index":0,"delta":{"content":`, id, c.created, m)
	}
	t, _ := json.Marshal(text) // a string always encodes
	out := make([]byte, 0, len(c.prefix)+len(t)+len(contentSuffix))
	out = append(out, c.prefix...)
	out = append(out, t...)
	return append(out, contentSuffix...)
}

// openStream POSTs req (a streamed Ollama request for model) to path and
// returns its NDJSON lines and what closes them.
func (b *Backend) openStream(ctx context.Context, r route, path, model string, req any) (*ndjson, func(), error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, nil, badRequest("encode the %s request: %v", path, err)
	}
	r.model = model // named in a 404's advice
	resp, cancel, err := b.do(ctx, r, "POST", path, body)
	if err != nil {
		return nil, nil, err
	}
	return newNDJSON(resp.Body, path), func() { resp.Body.Close(); cancel() }, nil
}
