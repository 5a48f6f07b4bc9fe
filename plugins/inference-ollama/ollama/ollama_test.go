package ollama

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

func TestChatNonStreamTranslatesBothWays(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/chat": {file: "chat.json"}})
	b := newBackend(t, f, sdk.Config{Model: "llama3.2", Options: map[string]string{"num_ctx": "8192", "keep_alive": "10m"}})
	var w recorder
	err := b.ChatCompletions(context.Background(), chatReq(`{"model":"llama3.2","messages":[
		{"role":"developer","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"what is"},{"type":"text","text":"this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}],
		"max_tokens":64,"temperature":0.2,"top_p":0.9,"seed":7,"stop":"END","response_format":{"type":"json_object"}}`), &w)
	if err != nil {
		t.Fatal(err)
	}

	var sent olChatRequest
	f.last(t, "/api/chat", &sent)
	// Always streamed from Ollama, for the idle timer.
	if sent.Model != "llama3.2" || !sent.Stream || sent.KeepAlive != "10m" || string(sent.Format) != `"json"` {
		t.Errorf("request: %+v", sent)
	}
	if len(sent.Messages) != 2 || sent.Messages[0].Role != "system" || sent.Messages[0].Content != "be brief" ||
		sent.Messages[1].Content != "what is\nthis?" || len(sent.Messages[1].Images) != 1 || sent.Messages[1].Images[0] != "iVBORw0KGgo=" {
		t.Errorf("messages: %+v", sent.Messages)
	}
	want := map[string]any{"num_predict": 64.0, "temperature": 0.2, "top_p": 0.9, "seed": 7.0, "stop": []any{"END"}, "num_ctx": 8192.0}
	if g, _ := json.Marshal(sent.Options); !jsonEqual(g, want) {
		t.Errorf("options %s, want %v", g, want)
	}

	if len(w.chunks) != 1 {
		t.Fatalf("%d chunks, want one whole response", len(w.chunks))
	}
	var got oaChatResponse
	w.decode(t, 0, &got)
	if got.Object != "chat.completion" || !strings.HasPrefix(got.ID, "chatcmpl-") || got.Model != "llama3.2" || got.Created == 0 {
		t.Errorf("envelope: %+v", got)
	}
	if len(got.Choices) != 1 || *got.Choices[0].Message.Content != "Hello! How are you today?" || got.Choices[0].Message.Role != "assistant" || *got.Choices[0].FinishReason != "stop" {
		t.Errorf("choices: %s", w.chunks[0].Data)
	}
	if u := got.Usage; u == nil || u.PromptTokens != 26 || u.CompletionTokens != 298 || u.TotalTokens != 324 {
		t.Errorf("usage: %+v", got.Usage)
	}
	if u := w.chunks[0].Usage; u == nil || u.TotalTokens != 324 {
		t.Errorf("chunk usage for the audit: %+v", u)
	}
}

func TestChatStreamRelaysEveryLine(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/chat": {file: "chat_stream.ndjson"}})
	b := newBackend(t, f, sdk.Config{})
	var w recorder
	if err := b.ChatCompletions(context.Background(), chatReq(`{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"why is the sky blue?"}]}`), &w); err != nil {
		t.Fatal(err)
	}
	var sent olChatRequest
	f.last(t, "/api/chat", &sent)
	if !sent.Stream {
		t.Error("stream was not asked of Ollama")
	}
	// role, three content deltas, the final chunk.
	if len(w.chunks) != 5 {
		t.Fatalf("%d chunks, want 5", len(w.chunks))
	}
	var text strings.Builder
	var id string
	for i := range w.chunks {
		var c oaChatResponse
		w.decode(t, i, &c)
		if c.Object != "chat.completion.chunk" || len(c.Choices) != 1 {
			t.Fatalf("chunk %d: %s", i, w.chunks[i].Data)
		}
		if id == "" {
			id = c.ID
		} else if c.ID != id {
			t.Errorf("chunk %d has id %s, the stream %s", i, c.ID, id)
		}
		d := c.Choices[0].Delta
		if i == 0 && d.Role != "assistant" {
			t.Errorf("first chunk has no assistant role: %s", w.chunks[i].Data)
		}
		if d.Content != nil {
			text.WriteString(*d.Content)
		}
		last := i == len(w.chunks)-1
		if (c.Choices[0].FinishReason != nil) != last || (c.Usage != nil) != last || (w.chunks[i].Usage != nil) != last {
			t.Errorf("chunk %d: finish_reason/usage only on the last chunk: %s", i, w.chunks[i].Data)
		}
		if last {
			if *c.Choices[0].FinishReason != "length" || c.Usage.PromptTokens != 26 || c.Usage.CompletionTokens != 282 {
				t.Errorf("final chunk: %s", w.chunks[i].Data)
			}
		}
	}
	if text.String() != "The sky is blue." {
		t.Errorf("text %q", text.String())
	}
}

// TestChatWholeFromStream: a non-streamed request is streamed from Ollama
// (so the idle timer sees every token) and answered as one
// chat.completion gathered from every line, tool calls included.
func TestChatWholeFromStream(t *testing.T) {
	for _, tc := range []struct {
		file, content, finish string
		calls                 []string
		total                 int64
	}{
		{"chat_stream.ndjson", "The sky is blue.", "length", nil, 308},
		{"chat_tools_stream.ndjson", "", "tool_calls", []string{"get_weather", "get_time"}, 184},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f := newFake(t, map[string]reply{"/api/chat": {file: tc.file}})
			b := newBackend(t, f, sdk.Config{})
			var w recorder
			if err := b.ChatCompletions(context.Background(), chatReq(`{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}`), &w); err != nil {
				t.Fatal(err)
			}
			if len(w.chunks) != 1 {
				t.Fatalf("%d chunks, want one whole answer", len(w.chunks))
			}
			var got oaChatResponse
			w.decode(t, 0, &got)
			c := got.Choices[0]
			if got.Object != "chat.completion" || *c.Message.Content != tc.content || *c.FinishReason != tc.finish || got.Usage.TotalTokens != tc.total {
				t.Errorf("answer: %s", w.chunks[0].Data)
			}
			if len(c.Message.ToolCalls) != len(tc.calls) {
				t.Fatalf("tool calls: %s", w.chunks[0].Data)
			}
			for i, name := range tc.calls {
				if c.Message.ToolCalls[i].Function.Name != name || c.Message.ToolCalls[i].Index != nil {
					t.Errorf("tool call %d: %+v", i, c.Message.ToolCalls[i])
				}
			}
		})
	}
}

func TestChatToolCalls(t *testing.T) {
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
	history := `"messages":[{"role":"user","content":"weather in Tokyo?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Tokyo\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"11 degrees"}]`

	t.Run("request", func(t *testing.T) {
		f := newFake(t, map[string]reply{"/api/chat": {file: "chat.json"}})
		b := newBackend(t, f, sdk.Config{Model: "llama3.2"})
		if err := b.ChatCompletions(context.Background(), chatReq(`{`+history+`,`+tools+`}`), &recorder{}); err != nil {
			t.Fatal(err)
		}
		var sent olChatRequest
		f.last(t, "/api/chat", &sent)
		if sent.Model != "llama3.2" {
			t.Errorf("model %q: the route's model fills an empty request", sent.Model)
		}
		if len(sent.Tools) != 1 || !strings.Contains(string(sent.Tools[0]), `"name":"get_weather"`) {
			t.Errorf("tools: %s", sent.Tools)
		}
		a := sent.Messages[1]
		if len(a.ToolCalls) != 1 || a.ToolCalls[0].Function.Name != "get_weather" || !jsonEqual(a.ToolCalls[0].Function.Arguments, map[string]any{"city": "Tokyo"}) {
			t.Errorf("assistant tool call (arguments must be an object for Ollama): %+v", a.ToolCalls)
		}
		if tm := sent.Messages[2]; tm.Role != "tool" || tm.ToolName != "get_weather" || tm.ToolCallID != "call_1" || tm.Content != "11 degrees" {
			t.Errorf("tool message: %+v", tm)
		}
	})

	t.Run("response", func(t *testing.T) {
		f := newFake(t, map[string]reply{"/api/chat": {file: "chat_tools.json"}})
		b := newBackend(t, f, sdk.Config{})
		var w recorder
		if err := b.ChatCompletions(context.Background(), chatReq(`{"model":"llama3.2","messages":[{"role":"user","content":"weather?"}],`+tools+`}`), &w); err != nil {
			t.Fatal(err)
		}
		var got oaChatResponse
		w.decode(t, 0, &got)
		c := got.Choices[0]
		if *c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 {
			t.Fatalf("response: %s", w.chunks[0].Data)
		}
		tc := c.Message.ToolCalls[0]
		if !strings.HasPrefix(tc.ID, "call_") || tc.Type != "function" || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Tokyo"}` || tc.Index != nil {
			t.Errorf("tool call: %+v", tc)
		}
	})

	t.Run("stream", func(t *testing.T) {
		f := newFake(t, map[string]reply{"/api/chat": {file: "chat_tools_stream.ndjson"}})
		b := newBackend(t, f, sdk.Config{})
		var w recorder
		if err := b.ChatCompletions(context.Background(), chatReq(`{"model":"llama3.2","stream":true,"messages":[{"role":"user","content":"weather and time?"}],`+tools+`}`), &w); err != nil {
			t.Fatal(err)
		}
		if len(w.chunks) != 4 {
			t.Fatalf("%d chunks, want 4", len(w.chunks))
		}
		wantCalls := []struct{ id, name, args string }{{"call_abc", "get_weather", `{"city":"Tokyo"}`}, {"", "get_time", `{"zone":"Asia/Tokyo","24h":true}`}}
		for i, want := range wantCalls {
			var c oaChatResponse
			w.decode(t, i+1, &c)
			calls := c.Choices[0].Delta.ToolCalls
			if len(calls) != 1 || calls[0].Index == nil || *calls[0].Index != i || calls[0].Function.Name != want.name || calls[0].Function.Arguments != want.args ||
				(want.id != "" && calls[0].ID != want.id) || calls[0].ID == "" || calls[0].Type != "function" {
				t.Errorf("chunk %d: %s", i+1, w.chunks[i+1].Data)
			}
		}
		var last oaChatResponse
		w.decode(t, 3, &last)
		if *last.Choices[0].FinishReason != "tool_calls" || last.Usage.TotalTokens != 184 {
			t.Errorf("final chunk: %s", w.chunks[3].Data)
		}
	})
}

func TestCompletions(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/generate": {file: "generate.json"}})
	b := newBackend(t, f, sdk.Config{})
	var w recorder
	if err := b.Completions(context.Background(), chatReq(`{"model":"llama3.2","prompt":["Why is the sky blue?"],"suffix":"END","max_tokens":16,"stop":["\n","."]}`), &w); err != nil {
		t.Fatal(err)
	}
	var sent olGenerateRequest
	f.last(t, "/api/generate", &sent)
	if sent.Prompt != "Why is the sky blue?" || sent.Suffix != "END" || !sent.Stream || !jsonEqual(mustJSON(sent.Options), map[string]any{"num_predict": 16.0, "stop": []any{"\n", "."}}) {
		t.Errorf("request: %+v", sent)
	}
	var got oaTextResponse
	w.decode(t, 0, &got)
	if got.Object != "text_completion" || !strings.HasPrefix(got.ID, "cmpl-") || got.Choices[0].Text != "The sky is blue because it is the color of the sky." ||
		*got.Choices[0].FinishReason != "stop" || got.Usage.TotalTokens != 316 {
		t.Errorf("response: %s", w.chunks[0].Data)
	}

	f = newFake(t, map[string]reply{"/api/generate": {file: "generate_stream.ndjson"}})
	b = newBackend(t, f, sdk.Config{})
	w = recorder{}
	if err := b.Completions(context.Background(), chatReq(`{"model":"llama3.2","prompt":"Why","stream":true}`), &w); err != nil {
		t.Fatal(err)
	}
	var text string
	for i := range w.chunks {
		var c oaTextResponse
		w.decode(t, i, &c)
		text += c.Choices[0].Text
		if last := i == len(w.chunks)-1; (c.Choices[0].FinishReason != nil) != last || (c.Usage != nil) != last {
			t.Errorf("chunk %d: %s", i, w.chunks[i].Data)
		}
	}
	if len(w.chunks) != 3 || text != "The end" {
		t.Errorf("%d chunks, text %q", len(w.chunks), text)
	}
}

func TestEmbeddings(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/embed": {file: "embed.json"}})
	b := newBackend(t, f, sdk.Config{})
	for _, format := range []string{"float", "base64"} {
		t.Run(format, func(t *testing.T) {
			c, err := b.Embeddings(context.Background(), chatReq(`{"model":"all-minilm","input":["Why is the sky blue?","Why is the grass green?"],"dimensions":4,"encoding_format":"`+format+`"}`))
			if err != nil {
				t.Fatal(err)
			}
			var sent olEmbedRequest
			f.last(t, "/api/embed", &sent)
			if sent.Model != "all-minilm" || len(sent.Input) != 2 || sent.Dimensions != 4 {
				t.Errorf("request: %+v", sent)
			}
			var got struct {
				Object string `json:"object"`
				Model  string `json:"model"`
				Data   []struct {
					Object    string          `json:"object"`
					Index     int             `json:"index"`
					Embedding json.RawMessage `json:"embedding"`
				} `json:"data"`
				Usage oaUsage `json:"usage"`
			}
			if err := json.Unmarshal(c.Data, &got); err != nil {
				t.Fatal(err)
			}
			if got.Object != "list" || got.Model != "all-minilm" || len(got.Data) != 2 || got.Usage.PromptTokens != 8 || got.Usage.TotalTokens != 8 || c.Usage.PromptTokens != 8 {
				t.Fatalf("response: %s", c.Data)
			}
			var vec []float32
			if format == "float" {
				json.Unmarshal(got.Data[1].Embedding, &vec)
			} else {
				var s string
				json.Unmarshal(got.Data[1].Embedding, &s)
				raw, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i+4 <= len(raw); i += 4 {
					vec = append(vec, math.Float32frombits(binary.LittleEndian.Uint32(raw[i:])))
				}
			}
			if got.Data[1].Index != 1 || len(vec) != 4 || vec[1] != 0.06042469 {
				t.Errorf("embedding 1: %v", vec)
			}
		})
	}
}

func TestListModelsAndHealth(t *testing.T) {
	f := newFake(t, map[string]reply{
		"/api/tags":    {file: "tags.json"},
		"/api/version": {body: `{"version":"0.17.4"}`},
		"/api/show":    {status: 404, body: `{"error":"model 'llama9' not found"}`},
	})
	b := newBackend(t, f, sdk.Config{})
	models, err := b.ListModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 2 || models[1].ID != "llama3.2:latest" || models[1].OwnedBy != "ollama" || models[1].Created != time.Date(2025, 5, 5, 0, 37, 44, 0, time.UTC).Unix() {
		t.Errorf("models: %+v", models)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Errorf("Health with no model: %v", err)
	}
	b = newBackend(t, f, sdk.Config{Model: "llama9"})
	se := sdkErr(t, b.Health(context.Background()), 404)
	if !strings.Contains(se.Message, "model 'llama9' not found") || !strings.Contains(se.Message, "ollama pull llama9") {
		t.Errorf("message: %s", se.Message)
	}
}

// TestOllamaErrors: every failure of Ollama, from its error bodies to a
// broken stream, reaches the router as a typed error with the right status
// and a message naming the cause, never as a silent or partial success.
func TestOllamaErrors(t *testing.T) {
	dropped := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Write([]byte(`{"model":"m","message":{"role":"assistant","content":"par"},"done":false}` + "\n"))
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // mid-chunk: the chunked body never terminates
		}
	}
	long := `{"model":"m","message":{"role":"assistant","content":"` + strings.Repeat("x", MaxLineBytes) + `"},"done":false}` + "\n"
	stream := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	plain := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		name   string
		rep    reply
		body   string
		status int
		msg    string
		chunks int // chunks relayed before the error
	}{
		{"model not found", reply{status: 404, body: `{"error":"model 'm' not found"}`}, plain, 404, "model 'm' not found (pull it on the host: ollama pull m)", 0},
		{"bad request", reply{status: 400, body: `{"error":"invalid options"}`}, plain, 400, "invalid options", 0},
		{"server error", reply{status: 500, body: `{"error":"llama runner process has terminated: exit status 2"}`}, plain, 502, "llama runner process has terminated", 0},
		{"busy", reply{status: 503, body: `{"error":"server busy, please try again.  maximum pending requests exceeded"}`}, plain, 503, "server busy", 0},
		{"plain-text error", reply{status: 502, body: "Bad Gateway from nginx"}, plain, 502, "Bad Gateway from nginx", 0},
		{"not JSON", reply{body: "<html>hello</html>"}, plain, 502, "not JSON", 0},
		{"error in a 200 body", reply{body: `{"error":"unexpected server status"}`}, plain, 502, "unexpected server status", 0},
		{"error mid-stream", reply{file: "chat_stream_error.ndjson"}, stream, 502, "an error was encountered while running the model", 2},
		{"truncated stream", reply{file: "chat_stream_truncated.ndjson"}, stream, 502, "ended before its final message", 3},
		{"cut line", reply{file: "chat_stream_cut_line.ndjson"}, stream, 502, "not JSON", 2},
		{"wrong types", reply{file: "chat_stream_wrong_type.ndjson"}, stream, 502, "not the JSON its API documents", 1},
		{"over-long line", reply{body: long}, stream, 502, "longer than", 1},
		{"dropped connection", reply{handler: dropped}, stream, 502, "read Ollama's /api/chat stream", 2},
		{"empty stream", reply{body: ""}, stream, 502, "ended before its final message", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, map[string]reply{"/api/chat": tc.rep})
			b := newBackend(t, f, sdk.Config{})
			var w recorder
			se := sdkErr(t, b.ChatCompletions(context.Background(), chatReq(tc.body), &w), tc.status)
			if !strings.Contains(se.Message, tc.msg) {
				t.Errorf("message %q lacks %q", se.Message, tc.msg)
			}
			if len(w.chunks) != tc.chunks {
				t.Errorf("%d chunks relayed, want %d", len(w.chunks), tc.chunks)
			}
			for i := range w.chunks {
				if !json.Valid(w.chunks[i].Data) {
					t.Errorf("chunk %d is not JSON: %s", i, w.chunks[i].Data)
				}
			}
		})
	}
}

// TestRequestsRefused: what cannot be translated faithfully is refused
// with a 400 naming the field, and nothing reaches Ollama.
func TestRequestsRefused(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/chat": {file: "chat.json"}, "/api/generate": {file: "generate.json"}, "/api/embed": {file: "embed.json"}})
	b := newBackend(t, f, sdk.Config{})
	chat := func(body string) error { return b.ChatCompletions(context.Background(), chatReq(body), &recorder{}) }
	comp := func(body string) error { return b.Completions(context.Background(), chatReq(body), &recorder{}) }
	embed := func(body string) error { _, err := b.Embeddings(context.Background(), chatReq(body)); return err }
	user := `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name string
		call func(string) error
		body string
		msg  string
	}{
		{"not JSON", chat, `{"model":`, "not valid JSON"},
		{"no model anywhere", chat, `{` + user + `}`, "names no model"},
		{"no messages", chat, `{"model":"m","messages":[]}`, "messages is empty"},
		{"n=2", chat, `{"model":"m","n":2,` + user + `}`, "n=2"},
		{"unknown role", chat, `{"model":"m","messages":[{"role":"root","content":"x"}]}`, `role "root"`},
		{"remote image", chat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"http://169.254.169.254/latest/meta-data"}}]}]}`, "fetches no remote image"},
		{"audio part", chat, `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}`, `"input_audio"`},
		{"content object", chat, `{"model":"m","messages":[{"role":"user","content":{"text":"x"}}]}`, "string or an array of parts"},
		{"tool args not JSON", chat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{city"}}]}]}`, "not a JSON object"},
		{"tool args array", chat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "not a JSON object"},
		{"tool call without name", chat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]}]}`, "names no function"},
		{"tool not a function", chat, `{"model":"m",` + user + `,"tools":[{"type":"code_interpreter"}]}`, "tools[0]"},
		{"bad stop", chat, `{"model":"m",` + user + `,"stop":5}`, "stop must be"},
		{"bad response_format", chat, `{"model":"m",` + user + `,"response_format":{"type":"grammar"}}`, `"grammar"`},
		{"schema without schema", chat, `{"model":"m",` + user + `,"response_format":{"type":"json_schema"}}`, "no schema"},
		{"two prompts", comp, `{"model":"m","prompt":["a","b"]}`, "prompt must be one string"},
		{"token prompt", comp, `{"model":"m","prompt":[1,2,3]}`, "prompt must be one string"},
		{"token input", embed, `{"model":"m","input":[1,2,3]}`, "not token ids"},
		{"empty input", embed, `{"model":"m","input":[]}`, "non-empty array"},
		{"encoding", embed, `{"model":"m","input":"x","encoding_format":"int8"}`, `"int8"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := sdkErr(t, tc.call(tc.body), 400)
			if se.Type != "invalid_request_error" || !strings.Contains(se.Message, tc.msg) {
				t.Errorf("%s %q lacks %q", se.Type, se.Message, tc.msg)
			}
		})
	}
	if n := f.count(); n != 0 {
		t.Errorf("%d requests reached Ollama", n)
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  sdk.Config
		msg  string // "" when accepted
		base string
	}{
		{"default", sdk.Config{}, "", "http://127.0.0.1:11434"},
		{"api suffix", sdk.Config{Endpoint: "http://10.0.0.2:11434/api/"}, "", "http://10.0.0.2:11434"},
		{"behind a path", sdk.Config{Endpoint: "https://gw.example/ollama"}, "", "https://gw.example/ollama"},
		{"scheme", sdk.Config{Endpoint: "file:///etc/passwd"}, "scheme must be http or https", ""},
		{"userinfo", sdk.Config{Endpoint: "http://user:pw@127.0.0.1:11434"}, "no credentials", ""},
		{"query", sdk.Config{Endpoint: "http://127.0.0.1:11434/?x=1"}, "no credentials, query", ""},
		{"no host", sdk.Config{Endpoint: "http:///api"}, "a host", ""},
		{"negative timeout", sdk.Config{TimeoutSecs: -1}, "negative", ""},
		{"unknown option", sdk.Config{Options: map[string]string{"num_gpu": "1"}}, `unknown option "num_gpu"`, ""},
		{"bad num_ctx", sdk.Config{Options: map[string]string{"num_ctx": "lots"}}, "not a positive integer", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(nil)
			err := b.Configure(context.Background(), tc.cfg)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := b.route().base.String(); got != tc.base {
					t.Errorf("base %s, want %s", got, tc.base)
				}
				return
			}
			if se := sdkErr(t, err, 400); !strings.Contains(se.Message, tc.msg) {
				t.Errorf("message %q lacks %q", se.Message, tc.msg)
			}
		})
	}
}

func TestDescribeAndResponses(t *testing.T) {
	b := New(nil)
	d, err := b.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []sdk.Capability{sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming} {
		if !d.Has(c) {
			t.Errorf("Describe lacks %s", c)
		}
	}
	if d.Has(sdk.CapResponses) || d.Name != "ollama" {
		t.Errorf("Describe: %+v", d)
	}
	sdkErr(t, b.Responses(context.Background(), chatReq(`{}`), &recorder{}), 501)
}

// TestCredentialOnlyWhenSet: Ollama takes no key; a profile's credential
// (for a proxy in front of it) goes out as a bearer token, and none when empty.
func TestCredentialOnlyWhenSet(t *testing.T) {
	f := newFake(t, map[string]reply{"/api/tags": {file: "tags.json"}})
	for _, cred := range []string{"", "sk-test-123"} {
		b := newBackend(t, f, sdk.Config{Credential: cred})
		if _, err := b.ListModels(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := f.last(t, "/api/tags", nil).header.Get("Authorization")
		if want := map[bool]string{true: "", false: "Bearer " + cred}[cred == ""]; got != want {
			t.Errorf("Authorization %q, want %q", got, want)
		}
	}
}

// TestRedirectNotFollowed: a redirect from "Ollama" could carry the
// credential elsewhere; it is an error, and the target sees nothing.
func TestRedirectNotFollowed(t *testing.T) {
	target := newFake(t, map[string]reply{"/api/tags": {file: "tags.json"}})
	f := newFake(t, map[string]reply{"/api/tags": {handler: func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/api/tags", http.StatusFound)
	}}})
	b := newBackend(t, f, sdk.Config{Credential: "sk-secret"})
	sdkErr(t, errOf(b.ListModels(context.Background())), 502)
	if target.count() != 0 {
		t.Error("the redirect was followed")
	}
}

// TestIdleTimeout: a backend silent for longer than timeout_secs ends the
// call with a 504 naming the setting, before or during a stream, while a
// stream whose gaps stay shorter runs past the timeout in total.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	silentAfter := func(lines int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-ndjson")
			for i := 0; i < lines; i++ {
				w.Write([]byte(`{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n"))
				w.(http.Flusher).Flush()
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}
	for _, tc := range []struct {
		name   string
		lines  int
		chunks int
	}{{"before any byte", 0, 0}, {"mid-stream", 2, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, map[string]reply{"/api/chat": {handler: silentAfter(tc.lines)}})
			b := newBackend(t, f, sdk.Config{TimeoutSecs: 1})
			var w recorder
			body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
			if tc.lines == 0 {
				body = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
			}
			se := sdkErr(t, b.ChatCompletions(context.Background(), chatReq(body), &w), 504)
			if !strings.Contains(se.Message, "timeout_secs") || len(w.chunks) != tc.chunks {
				t.Errorf("%q after %d chunks", se.Message, len(w.chunks))
			}
		})
	}
	// A long answer whose gaps stay short is never cut, streamed or not.
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("steady answer outlives it stream=%t", stream), func(t *testing.T) {
			f := newFake(t, map[string]reply{"/api/chat": {handler: func(w http.ResponseWriter, r *http.Request) {
				for i := 0; i < 12; i++ {
					w.Write([]byte(`{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n"))
					w.(http.Flusher).Flush()
					time.Sleep(250 * time.Millisecond)
				}
				w.Write([]byte(`{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}` + "\n"))
			}}})
			b := newBackend(t, f, sdk.Config{TimeoutSecs: 2})
			var w recorder
			if err := b.ChatCompletions(context.Background(), chatReq(fmt.Sprintf(`{"model":"m","stream":%t,"messages":[{"role":"user","content":"hi"}]}`, stream)), &w); err != nil {
				t.Fatalf("an answer with short gaps was cut: %v", err)
			}
			if want := map[bool]int{true: 14, false: 1}[stream]; len(w.chunks) != want {
				t.Errorf("%d chunks, want %d", len(w.chunks), want)
			}
		})
	}
}

// TestCallerGone: when the router's Send fails (the agent hung up), the
// backend stops with that error and hangs up on Ollama too.
func TestCallerGone(t *testing.T) {
	hungUp := make(chan struct{})
	f := newFake(t, map[string]reply{"/api/chat": {handler: func(w http.ResponseWriter, r *http.Request) {
		for {
			if _, err := w.Write([]byte(`{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n")); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(hungUp)
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		close(hungUp)
	}}})
	b := newBackend(t, f, sdk.Config{})
	w := recorder{failAfter: 3}
	if err := b.ChatCompletions(context.Background(), chatReq(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`), &w); !errors.Is(err, errGone) {
		t.Fatalf("error %v, want the writer's", err)
	}
	<-hungUp
}

func errOf(_ any, err error) error { return err }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// jsonEqual reports whether the JSON got and the value want encode alike.
func jsonEqual(got []byte, want any) bool {
	var g any
	if json.Unmarshal(got, &g) != nil {
		return false
	}
	return bytes.Equal(mustJSON(g), mustJSON(want))
}

// TestContentChunkMatchesGeneral: the fast content-delta encoder writes
// exactly what encoding the general chunk type writes.
func TestContentChunkMatchesGeneral(t *testing.T) {
	fast := contentChunks{id: "chatcmpl-x\"y", created: 1700000000}
	for _, tc := range []struct{ model, text string }{
		{"llama3.2", "hello"},
		{"llama3.2", "quote \" backslash \\ newline \n tab \t nul \x00 bell \x07"},
		{"we\"ird/model:latest", "<script>&amp;</script> \u2028 \u2029 é 🦙"},
		{"m", "invalid utf-8 \xff\xfe"},
	} {
		want, err := json.Marshal(oaChatResponse{ID: fast.id, Object: "chat.completion.chunk", Created: fast.created, Model: tc.model,
			Choices: []oaChatChoice{{Delta: &oaRespMessage{Content: ptr(tc.text)}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := fast.content(tc.model, tc.text); !bytes.Equal(got, want) {
			t.Errorf("fast:    %s\ngeneral: %s", got, want)
		}
	}
}
