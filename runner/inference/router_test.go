package inference

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/inference/inferencetest"
)

// fakeServer is a FakeOpenAI served over HTTP.
type fakeServer struct {
	*inferencetest.FakeOpenAI
	URL string
}

func newFake(t testing.TB) *fakeServer {
	f := &inferencetest.FakeOpenAI{}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return &fakeServer{FakeOpenAI: f, URL: s.URL}
}

const (
	testRouteKey = "nvapi-route-secret-0123456789"
	callerKey    = "sk-caller-should-never-leave"
)

// testRouter is a router with one "main" route to an httpBackend in front
// of a fake OpenAI server, served over HTTP, and its audit events.
type testRouter struct {
	rt    *Router
	srv   *httptest.Server
	fake  *fakeServer
	mu    sync.Mutex
	audit []AuditEvent
}

func newTestRouter(t *testing.T, mutate func(*RouterConfig)) *testRouter {
	t.Helper()
	tr := &testRouter{fake: newFake(t)}
	cfg := RouterConfig{
		Sandbox: "sb",
		Routes: []Route{
			{Profile: "main", Plugin: "http-test", Config: sdk.Config{Endpoint: tr.fake.URL + "/v1", Model: "meta/llama-3.1-8b-instruct", Credential: testRouteKey},
				Aliases: map[string]string{"gpt-4o": "", "small": "meta/llama-3.2-1b-instruct"}},
		},
		Active:   "main",
		Provider: mapProvider{"main": &inferencetest.HTTPBackend{}},
		Audit: func(e AuditEvent) {
			tr.mu.Lock()
			tr.audit = append(tr.audit, e)
			tr.mu.Unlock()
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	rt, err := NewRouter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.rt = rt
	tr.srv = httptest.NewServer(rt)
	t.Cleanup(tr.srv.Close)
	return tr
}

func (tr *testRouter) events() []AuditEvent {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]AuditEvent(nil), tr.audit...)
}

func (tr *testRouter) openai() openai.Client {
	return openai.NewClient(option.WithBaseURL(tr.srv.URL+"/v1"), option.WithAPIKey(callerKey), option.WithMaxRetries(0),
		option.WithHeader("X-Api-Key", callerKey), option.WithHeader("Cookie", "session="+callerKey))
}

func (tr *testRouter) post(t *testing.T, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tr.srv.URL+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// checkBackendSaw asserts the fake server got the route's key and never
// the caller's, in any header or body.
func (tr *testRouter) checkBackendSaw(t *testing.T, model string) {
	t.Helper()
	auth, bodies, headers := tr.fake.Received()
	if len(auth) == 0 {
		t.Fatal("the backend received no request")
	}
	for i := range auth {
		if auth[i] != "Bearer "+testRouteKey {
			t.Errorf("backend got Authorization %q, want the route's key", auth[i])
		}
		for k, vs := range headers[i] {
			for _, v := range vs {
				if strings.Contains(v, callerKey) {
					t.Errorf("backend got the caller's key in header %s", k)
				}
			}
		}
		if bytes.Contains(bodies[i], []byte(callerKey)) {
			t.Errorf("backend got the caller's key in the body")
		}
		var m struct{ Model string }
		_ = json.Unmarshal(bodies[i], &m)
		if m.Model != model {
			t.Errorf("backend got model %q, want %q", m.Model, model)
		}
	}
}

func weatherTool() shared.FunctionDefinitionParam {
	return shared.FunctionDefinitionParam{Name: "get_weather", Parameters: shared.FunctionParameters{
		"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}}}
}

func TestRouterChatOpenAIClient(t *testing.T) {
	for _, tc := range []struct {
		name, model, want string
		stream, tools     bool
	}{
		{"plain", "meta/llama-3.1-8b-instruct", "meta/llama-3.1-8b-instruct", false, false},
		{"alias to the route's model", "gpt-4o", "meta/llama-3.1-8b-instruct", false, false},
		{"alias to another model", "small", "meta/llama-3.2-1b-instruct", true, false},
		{"stream", "gpt-4o", "meta/llama-3.1-8b-instruct", true, false},
		{"tools", "gpt-4o", "meta/llama-3.1-8b-instruct", false, true},
		{"tools stream", "gpt-4o", "meta/llama-3.1-8b-instruct", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRouter(t, nil)
			cl := tr.openai()
			p := openai.ChatCompletionNewParams{Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}}
			if tc.tools {
				p.Tools = []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(weatherTool())}
			}
			var cc openai.ChatCompletion
			if tc.stream {
				st := cl.Chat.Completions.NewStreaming(context.Background(), p)
				var acc openai.ChatCompletionAccumulator
				n := 0
				for st.Next() {
					acc.AddChunk(st.Current())
					n++
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
				if n < 3 {
					t.Fatalf("got %d chunks, want each of the backend's", n)
				}
				cc = acc.ChatCompletion
			} else {
				res, err := cl.Chat.Completions.New(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				cc = *res
			}
			if cc.Model != tc.want {
				t.Errorf("model %q, want %q", cc.Model, tc.want)
			}
			msg := cc.Choices[0].Message
			if tc.tools {
				if len(msg.ToolCalls) != 1 || msg.ToolCalls[0].Function.Name != "get_weather" || msg.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
					t.Fatalf("tool calls %+v", msg.ToolCalls)
				}
			} else if msg.Content != "hi hi hi " {
				t.Fatalf("content %q", msg.Content)
			}
			tr.checkBackendSaw(t, tc.want)
			ev := tr.events()
			if len(ev) != 1 || ev[0].Status != 200 || ev[0].Route != "main" || ev[0].Model != tc.want || ev[0].Stream != tc.stream {
				t.Fatalf("audit %+v", ev)
			}
			if !tc.stream && ev[0].Usage.TotalTokens == 0 {
				t.Errorf("audit lacks the tokens the backend reported: %+v", ev[0])
			}
		})
	}
}

func TestRouterCompletionsEmbeddingsModels(t *testing.T) {
	tr := newTestRouter(t, nil)
	cl := tr.openai()
	ctx := context.Background()
	comp, err := cl.Completions.New(ctx, openai.CompletionNewParams{Model: "gpt-4o", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("once")}})
	if err != nil || comp.Choices[0].Text != "once upon" {
		t.Fatalf("completions: %v %+v", err, comp)
	}
	emb, err := cl.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "gpt-4o", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	if err != nil || len(emb.Data) != 1 || len(emb.Data[0].Embedding) != 3 {
		t.Fatalf("embeddings: %v %+v", err, emb)
	}
	tr.checkBackendSaw(t, "meta/llama-3.1-8b-instruct")
	models := func() []string {
		pg, err := cl.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range pg.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	if got := strings.Join(models(), ","); got != "meta/llama-3.1-8b-instruct,gpt-4o,small" {
		t.Fatalf("models %s", got)
	}
}

func TestRouterResponsesTranslated(t *testing.T) {
	for _, tc := range []struct {
		name          string
		stream, tools bool
	}{{"plain", false, false}, {"stream", true, false}, {"tools", false, true}, {"tools stream", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRouter(t, nil)
			cl := tr.openai()
			p := responses.ResponseNewParams{Model: "gpt-4o", Instructions: openai.String("be brief"),
				Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")}}
			if tc.tools {
				p.Tools = []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", weatherTool().Parameters, false)}
			}
			var r responses.Response
			if tc.stream {
				st := cl.Responses.NewStreaming(context.Background(), p)
				var types []string
				for st.Next() {
					ev := st.Current()
					types = append(types, ev.Type)
					if ev.Type == "response.completed" {
						r = ev.Response
					}
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
				if types[0] != "response.created" || types[len(types)-1] != "response.completed" {
					t.Fatalf("event order %v", types)
				}
			} else {
				res, err := cl.Responses.New(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				r = *res
			}
			if tc.tools {
				var fc *responses.ResponseOutputItemUnion
				for i := range r.Output {
					if r.Output[i].Type == "function_call" {
						fc = &r.Output[i]
					}
				}
				if fc == nil || fc.Name != "get_weather" || fc.Arguments.OfString != `{"city":"Paris"}` || fc.CallID != "call_1" {
					t.Fatalf("output %+v", r.Output)
				}
			} else if r.OutputText() != "hi hi hi " {
				t.Fatalf("output text %q", r.OutputText())
			}
			if r.Status != "completed" || r.Usage.TotalTokens == 0 {
				t.Fatalf("status %q usage %+v", r.Status, r.Usage)
			}
			_, bodies, _ := tr.fake.Received()
			var chat chatRequest
			if err := json.Unmarshal(bodies[0], &chat); err != nil || chat.Messages[0].Role != "system" || chat.Messages[1].Content != "hello" {
				t.Fatalf("chat request sent to the backend: %s", bodies[0])
			}
			tr.checkBackendSaw(t, "meta/llama-3.1-8b-instruct")
		})
	}
	// A function call's output goes back as a tool message.
	tr := newTestRouter(t, nil)
	res, body := tr.post(t, "/v1/responses", `{"model":"gpt-4o","input":[{"role":"user","content":"weather?"},{"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},{"type":"function_call_output","call_id":"call_1","output":"sunny"}],"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}]}`)
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	_, bodies, _ := tr.fake.Received()
	if !strings.Contains(string(bodies[0]), `{"role":"tool","content":"sunny","tool_call_id":"call_1"}`) {
		t.Fatalf("backend got %s", bodies[0])
	}
}

func TestRouterMessagesTranslated(t *testing.T) {
	for _, tc := range []struct {
		name          string
		stream, tools bool
	}{{"plain", false, false}, {"stream", true, false}, {"tools", false, true}, {"tools stream", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRouter(t, nil)
			cl := anthropic.NewClient(aoption.WithBaseURL(tr.srv.URL), aoption.WithAPIKey(callerKey), aoption.WithMaxRetries(0))
			p := anthropic.MessageNewParams{Model: "gpt-4o", MaxTokens: 100,
				System:   []anthropic.TextBlockParam{{Text: "be brief"}},
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}}
			if tc.tools {
				p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{Name: "get_weather",
					InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}}
			}
			var m anthropic.Message
			if tc.stream {
				st := cl.Messages.NewStreaming(context.Background(), p)
				for st.Next() {
					if err := m.Accumulate(st.Current()); err != nil {
						t.Fatal(err)
					}
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
			} else {
				res, err := cl.Messages.New(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				m = *res
			}
			if m.Usage.InputTokens != 9 || m.Usage.OutputTokens == 0 {
				t.Errorf("usage %+v", m.Usage)
			}
			if tc.tools {
				if string(m.StopReason) != "tool_use" || len(m.Content) != 1 || m.Content[0].Type != "tool_use" || m.Content[0].Name != "get_weather" || string(m.Content[0].Input) != `{"city":"Paris"}` {
					t.Fatalf("message %+v", m)
				}
			} else if len(m.Content) != 1 || m.Content[0].Text != "hi hi hi " || string(m.StopReason) != "end_turn" {
				t.Fatalf("message %+v", m)
			}
			tr.checkBackendSaw(t, "meta/llama-3.1-8b-instruct")
		})
	}
}

func TestRouterRefusals(t *testing.T) {
	tr := newTestRouter(t, func(c *RouterConfig) { c.MaxBodyBytes = 1 << 10 })
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		want                     string
	}{
		{"not json", "POST", "/v1/chat/completions", `{"model":`, 400, "not JSON"},
		{"array", "POST", "/v1/chat/completions", `[1]`, 400, "must be a JSON object"},
		{"duplicate model", "POST", "/v1/chat/completions", `{"model":"gpt-4o","model":"other"}`, 400, "given twice"},
		{"model not a string", "POST", "/v1/chat/completions", `{"model":5}`, 400, `"model" must be a string`},
		{"stream not a bool", "POST", "/v1/chat/completions", `{"stream":"yes"}`, 400, `"stream" must be true or false`},
		{"trailing data", "POST", "/v1/chat/completions", `{"model":"gpt-4o"} {}`, 400, "after the JSON object"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"gpt-5"}`, 404, `model "gpt-5" is not served here`},
		{"too large", "POST", "/v1/chat/completions", `{"model":"` + strings.Repeat("a", 2000) + `"}`, 413, "over 1024 bytes"},
		{"streamed embeddings", "POST", "/v1/embeddings", `{"stream":true}`, 400, "never streamed"},
		{"GET chat", "GET", "/v1/chat/completions", ``, 405, "use POST"},
		{"unknown path", "POST", "/v1/files", `{}`, 404, "inference.local serves"},
		{"responses previous id", "POST", "/v1/responses", `{"input":"x","previous_response_id":"resp_1"}`, 400, "keeps no conversation state"},
		{"responses hosted tool", "POST", "/v1/responses", `{"input":"x","tools":[{"type":"web_search"}]}`, 400, "function tools only"},
		{"messages bad role", "POST", "/v1/messages", `{"max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, 400, "not user or assistant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tr.srv.URL+tc.path, strings.NewReader(tc.body))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var e struct {
				Error struct{ Message, Type string }
			}
			if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
				t.Fatalf("not an OpenAI- or Anthropic-shaped error: %s", b)
			}
			if res.StatusCode != tc.status || !strings.Contains(e.Error.Message, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", res.StatusCode, b, tc.status, tc.want)
			}
		})
	}
	if auth, _, _ := tr.fake.Received(); len(auth) != 0 {
		t.Fatalf("refused requests reached the backend: %d", len(auth))
	}
}

// sse splits a stream body into its events' data.
func sse(body string) []string {
	var out []string
	for _, ev := range strings.Split(strings.TrimSpace(body), "\n\n") {
		for _, l := range strings.Split(ev, "\n") {
			if d, ok := strings.CutPrefix(l, "data: "); ok {
				out = append(out, d)
			}
		}
	}
	return out
}

func scripted(t *testing.T, b *scriptBackend, idle time.Duration) *testRouter {
	return newTestRouter(t, func(c *RouterConfig) {
		c.Provider = mapProvider{"main": b}
		c.idle = idle
	})
}

const okChunk = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}`

func TestRouterStreamFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      *scriptBackend
		stream bool
		status int
		data   int // data events before the error
		want   string
	}{
		{"truncated", &scriptBackend{chunks: []string{okChunk, okChunk}, then: "error"}, true, 200, 2, "connection reset by the backend"},
		{"idle", &scriptBackend{chunks: []string{okChunk}, then: "block"}, true, 200, 1, "sent nothing for"},
		{"idle, backend ignores its context", &scriptBackend{chunks: []string{okChunk}, then: "hang", release: make(chan struct{})}, true, 200, 1, "sent nothing for"},
		{"idle before the first byte", &scriptBackend{then: "block"}, false, 504, 0, "sent nothing for"},
		{"not JSON mid-stream", &scriptBackend{chunks: []string{okChunk, `{"choices":[`}}, true, 200, 1, "not JSON"},
		{"empty stream", &scriptBackend{}, true, 502, 0, "an empty stream"},
		{"no answer", &scriptBackend{}, false, 502, 0, "no response"},
		{"two answers", &scriptBackend{chunks: []string{`{}`, `{}`}}, false, 502, 0, "more than one chunk"},
		{"answer not JSON", &scriptBackend{chunks: []string{`<html>`}}, false, 502, 0, "not JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := scripted(t, tc.b, 50*time.Millisecond)
			if tc.b.release != nil {
				defer close(tc.b.release)
			}
			body := `{"model":"gpt-4o","messages":[]}`
			if tc.stream {
				body = `{"model":"gpt-4o","stream":true,"messages":[]}`
			}
			res, out := tr.post(t, "/v1/chat/completions", body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("body %q lacks %q", out, tc.want)
			}
			if tc.status == 200 {
				ev := sse(out)
				if len(ev) != tc.data+1 || strings.Contains(out, "[DONE]") {
					t.Fatalf("want %d data events then one error event and no [DONE], got %q", tc.data, out)
				}
				var e struct {
					Error struct{ Message, Type string }
				}
				if json.Unmarshal([]byte(ev[len(ev)-1]), &e) != nil || e.Error.Message == "" {
					t.Fatalf("last event is not an OpenAI error: %s", ev[len(ev)-1])
				}
				// openai-go reports the truncation as an error.
				cl := tr.openai()
				st := cl.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
				for st.Next() {
				}
				if st.Err() == nil {
					t.Fatal("openai-go saw a clean end of a truncated stream")
				}
			}
			a := tr.events()
			if len(a) == 0 || a[0].Error == "" {
				t.Fatalf("audit does not record the failure: %+v", a)
			}
		})
	}
}

func TestRouterTranslatedStreamTruncated(t *testing.T) {
	tr := scripted(t, &scriptBackend{chunks: []string{okChunk}, then: "error"}, 0)
	for _, tc := range []struct{ path, body, errEvent string }{
		{"/v1/responses", `{"model":"gpt-4o","input":"x","stream":true}`, "event: error\ndata: {"},
		{"/v1/messages", `{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"x"}],"stream":true}`, "event: error\ndata: {\"error\":{"},
	} {
		res, out := tr.post(t, tc.path, tc.body)
		if res.StatusCode != 200 || !strings.Contains(out, tc.errEvent) || !strings.Contains(out, "connection reset") ||
			strings.Contains(out, "response.completed") || strings.Contains(out, "message_stop") {
			t.Fatalf("%s: %d %q", tc.path, res.StatusCode, out)
		}
	}
}

func TestRouterNoRouteNoProvider(t *testing.T) {
	tr := newTestRouter(t, func(c *RouterConfig) { c.Active = "" })
	if res, out := tr.post(t, "/v1/chat/completions", `{}`); res.StatusCode != 503 || !strings.Contains(out, "no inference route") {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	tr = newTestRouter(t, func(c *RouterConfig) { c.Provider, c.NoProviderReason = nil, "plugin host down for the test" })
	if res, out := tr.post(t, "/v1/chat/completions", `{}`); res.StatusCode != 503 || !strings.Contains(out, "plugin host down for the test") {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	if _, err := NewRouter(RouterConfig{Active: "nope"}); err == nil {
		t.Fatal("an unknown active profile was accepted")
	}
}

func TestRouterAuditHoldsNoSecrets(t *testing.T) {
	tr := newTestRouter(t, nil)
	prompt := "my-secret-prompt-text"
	res, _ := tr.post(t, "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"`+prompt+`"}]}`, "Authorization", "Bearer "+callerKey)
	if res.StatusCode != 200 {
		t.Fatal(res.Status)
	}
	b, _ := json.Marshal(tr.events())
	for _, s := range []string{prompt, callerKey, testRouteKey, "hi hi"} {
		if strings.Contains(string(b), s) {
			t.Fatalf("audit holds %q: %s", s, b)
		}
	}
}

// Two sandboxes, each its own router on its own route, at once.
func TestRouterTwoSandboxesAtOnce(t *testing.T) {
	fake := newFake(t)
	mk := func(model, key string) *httptest.Server {
		rt, err := NewRouter(RouterConfig{Routes: []Route{{Profile: "p", Config: sdk.Config{Endpoint: fake.URL + "/v1", Model: model, Credential: key}}},
			Active: "p", Provider: mapProvider{"p": &inferencetest.HTTPBackend{}}})
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(rt)
		t.Cleanup(s.Close)
		return s
	}
	a, b := mk("model-a", "key-a"), mk("model-b", "key-b")
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv, want := a, "model-a"
			if i%2 == 1 {
				srv, want = b, "model-b"
			}
			res, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true,"messages":[]}`))
			if err != nil {
				errs <- err.Error()
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !strings.Contains(string(body), `"model":"`+want+`"`) || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
				errs <- string(body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	auth, bodies, _ := fake.Received()
	for i := range auth {
		if (auth[i] == "Bearer key-a") != strings.Contains(string(bodies[i]), "model-a") {
			t.Fatalf("a request for one sandbox's route carried the other's key: %s %s", auth[i], bodies[i])
		}
	}
}

func TestRouterLiveSwitch(t *testing.T) {
	release := make(chan struct{})
	slow := &scriptBackend{chunks: []string{okChunk}, then: "hang", release: release}
	tr := newTestRouter(t, func(c *RouterConfig) {
		c.Routes = append(c.Routes, Route{Profile: "slow", Plugin: "script", Config: sdk.Config{Model: "slow-model"}})
		c.Provider = mapProvider{"main": &inferencetest.HTTPBackend{}, "slow": slow}
		c.Active = "slow"
	})
	// A stream in flight on "slow" keeps its route across the switch.
	res, err := http.Post(tr.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(res.Body, buf); err != nil { // the first chunk arrived
		t.Fatal(err)
	}
	if err := tr.rt.SetRoute("main"); err != nil {
		t.Fatal(err)
	}
	if err := tr.rt.SetRoute("nope"); err == nil || !strings.Contains(err.Error(), "main, slow") {
		t.Fatalf("unknown profile: %v", err)
	}
	cl := tr.openai()
	pg, err := cl.Models.List(context.Background())
	if err != nil || pg.Data[0].ID != "meta/llama-3.1-8b-instruct" {
		t.Fatalf("models after the switch: %v %+v", err, pg)
	}
	r2, out := tr.post(t, "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`)
	if r2.StatusCode != 200 || !strings.Contains(out, "hi hi hi") {
		t.Fatalf("after the switch: %d %s", r2.StatusCode, out)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(rest), `"late":true`) || !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("the in-flight stream did not finish on its route: %q", rest)
	}
}

func FuzzParseObject(f *testing.F) {
	for _, s := range []string{`{"model":"a","stream":true}`, `{"a":1,"a":2}`, `[]`, `{"model":5}`, `{} x`, `{"k":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := parseObject(b)
		if err != nil {
			return
		}
		if _, _, err := o.modelStream(); err != nil {
			return
		}
		o.set("model", "m")
		enc := o.encode()
		o2, err := parseObject(enc)
		if err != nil {
			t.Fatalf("re-encoded object does not parse: %q from %q: %v", enc, b, err)
		}
		if m, _, err := o2.modelStream(); err != nil || m != "m" {
			t.Fatalf("model after rewrite %q %v", m, err)
		}
	})
}

func FuzzTranslate(f *testing.F) {
	for _, s := range []string{
		`{"input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"f"}}`,
		`{"input":[{"role":"user","content":[{"type":"input_text","text":"x"}]},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"}]}`,
		`{"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, fn := range []func([]byte, string, bool) ([]byte, error){responsesToChat, messagesToChat} {
			out, err := fn(b, "m", true)
			if err == nil && !json.Valid(out) {
				t.Fatalf("translation is not JSON: %q", out)
			}
		}
	})
}

// valueBackend is a backend whose type cannot be a map key.
type valueBackend struct {
	*scriptBackend
	tags []string
}

func TestRouterUncomparableBackend(t *testing.T) {
	tr := newTestRouter(t, func(c *RouterConfig) {
		c.Provider = providerFunc(func(context.Context, Route) (sdk.Backend, error) {
			return valueBackend{scriptBackend: &scriptBackend{chunks: []string{`{"choices":[]}`}}, tags: []string{"x"}}, nil
		})
	})
	if res, out := tr.post(t, "/v1/chat/completions", `{"model":"gpt-4o"}`); res.StatusCode != 200 || out != `{"choices":[]}` {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
}

func TestRouterConcurrencyCap(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	tr := newTestRouter(t, func(c *RouterConfig) {
		c.Provider = mapProvider{"main": &scriptBackend{chunks: []string{okChunk}, then: "hang", release: release}}
		c.MaxConcurrent = 1
	})
	res, err := http.Post(tr.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if _, err := io.ReadFull(res.Body, make([]byte, 4)); err != nil { // in flight
		t.Fatal(err)
	}
	r2, out := tr.post(t, "/v1/chat/completions", `{}`)
	if r2.StatusCode != 429 || !strings.Contains(out, "1 inference calls are in flight") {
		t.Fatalf("%d %s", r2.StatusCode, out)
	}
}

func TestRouterScrubsCredentialFromErrors(t *testing.T) {
	tr := scripted(t, &scriptBackend{then: "leak"}, 0)
	res, out := tr.post(t, "/v1/chat/completions", `{}`)
	if res.StatusCode != 401 || strings.Contains(out, testRouteKey) || !strings.Contains(out, "key [credential] was refused") {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
}

// TestRouterNoBuffering: each chunk reaches the client before the backend
// sends the next one.
func TestRouterNoBuffering(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	tr := scripted(t, &scriptBackend{chunks: []string{okChunk}, then: "gate", release: gate}, 0)
	t.Cleanup(open) // before the server's Close: a failure must not leave the handler waiting
	// The request and the first read run aside, so that a router that
	// buffers (no headers, no chunk) fails the test instead of hanging it.
	type got struct {
		br   *bufio.Reader
		body io.Closer
		line string
	}
	first := make(chan got, 1)
	go func() {
		res, err := http.Post(tr.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
		if err != nil {
			first <- got{line: err.Error()}
			return
		}
		br := bufio.NewReader(res.Body)
		l, _ := br.ReadString('\n')
		first <- got{br, res.Body, l}
	}()
	var br *bufio.Reader
	select {
	case g := <-first:
		if g.body != nil {
			defer g.body.Close()
		}
		if g.line != "data: "+okChunk+"\n" {
			t.Fatalf("first line %q", g.line)
		}
		br = g.br
	case <-time.After(30 * time.Second): // a deadlock guard, not a timing check
		t.Fatal("the first chunk did not arrive while the backend waited: the router buffers")
	}
	open()
	rest, _ := io.ReadAll(br)
	if strings.Count(string(rest), okChunk) != 1 || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("rest %q", rest)
	}
}

// FuzzChatStream feeds arbitrary backend chunks through both stream
// translations: they end in an error or in well-formed events, never a
// panic.
func FuzzChatStream(f *testing.F) {
	f.Add([]byte(okChunk), []byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"id":"c","function":{"name":"f","arguments":"{"}}]}}]}`))
	f.Add([]byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"x"}}]}}]}`), []byte(`{"usage":{"prompt_tokens":1}}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		for _, anth := range []bool{false, true} {
			rec := httptest.NewRecorder()
			c := &call{w: rec, anthropic: anth, responsesAPI: !anth, out: newSSEOut(rec)}
			var ev chatEvents = &responsesEmitter{c: c, id: "resp_1"}
			if anth {
				ev = &messagesEmitter{c: c, id: "msg_1"}
			}
			cs := &chatStream{ev: ev}
			err := cs.chunk(sdk.Chunk{Data: a})
			if err == nil {
				err = cs.chunk(sdk.Chunk{Data: b})
			}
			if err == nil {
				err = cs.end()
			}
			if err != nil {
				continue
			}
			for _, d := range sse(rec.Body.String()) {
				if !json.Valid([]byte(d)) {
					t.Fatalf("event data is not JSON: %q", d)
				}
			}
		}
	})
}
