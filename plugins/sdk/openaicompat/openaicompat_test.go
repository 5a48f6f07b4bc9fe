package openaicompat_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/openaicompat"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

const key = "sk-test-0123456789"

// Shapes from OpenAI's API reference (chat.completion, chat.completion.chunk,
// tool_calls deltas, stream_options.include_usage's final chunk).
const (
	completion = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}`
	chunk1     = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`
	chunk2     = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`
	chunk3     = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}`
	usageChunk = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`
	toolChunk1 = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`
	toolChunk2 = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":null}]}`
	toolChunk3 = `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`
	models     = `{"object":"list","data":[{"id":"meta/llama-3.1-8b-instruct","object":"model","created":1700000000,"owned_by":"meta"},{"id":"m","object":"model","created":1,"owned_by":"me"}]}`
	embedding  = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"e","usage":{"prompt_tokens":3,"total_tokens":3}}`
)

func sse(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "data: %s\n\n", e)
	}
	return b.String()
}

// fake is an OpenAI-compatible server whose chat endpoint runs h; it
// checks the bearer key on every request.
func fake(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	auth := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// Read the body first: net/http notices a client that went
			// away (and cancels r.Context) only once the body was read.
			io.Copy(io.Discard, r.Body)
			if r.Header.Get("Authorization") != "Bearer "+key {
				w.WriteHeader(401)
				io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
				return
			}
			next(w, r)
		}
	}
	mux.HandleFunc("GET /v1/models", auth(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, models) }))
	mux.HandleFunc("POST /v1/chat/completions", auth(h))
	mux.HandleFunc("POST /v1/completions", auth(h))
	mux.HandleFunc("POST /v1/embeddings", auth(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, embedding) }))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func writeSSE(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, body)
}

func newBackend(t *testing.T, endpoint string, timeout int) *openaicompat.Backend {
	t.Helper()
	b := openaicompat.New(openaicompat.Options{
		Name: "test", Version: "1", DefaultEndpoint: "http://127.0.0.1:1/v1",
		Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming},
	})
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: endpoint, Model: "m", Credential: key, TimeoutSecs: timeout}); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChat(t *testing.T) {
	tests := []struct {
		name      string
		stream    bool
		timeout   int
		handler   http.HandlerFunc
		want      []string // chunk data
		wantUsage *sdk.Usage
		// wantErr: status and a part of the message; status 0 is success.
		wantStatus int
		wantType   string
		wantMsg    string
	}{
		{name: "json", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, completion)
		}, want: []string{completion}, wantUsage: &sdk.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}},
		{name: "stream", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept") != "text/event-stream" {
				w.WriteHeader(400)
				return
			}
			writeSSE(w, ": keep-alive comment\n\n"+sse(chunk1, chunk2, chunk3, usageChunk, "[DONE]"))
		}, want: []string{chunk1, chunk2, chunk3, usageChunk}, wantUsage: &sdk.Usage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9}},
		{name: "stream tools", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(toolChunk1, toolChunk2, toolChunk3, "[DONE]"))
		}, want: []string{toolChunk1, toolChunk2, toolChunk3}},
		{name: "stream with CRLF and event fields", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, "event: message\r\nid: 1\r\ndata: "+chunk2+"\r\n\r\ndata:[DONE]\r\n\r\n")
		}, want: []string{chunk2}},
		{name: "400", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"message":"'messages' is a required property","type":"invalid_request_error","param":null,"code":null}}`)
		}, wantStatus: 400, wantType: "invalid_request_error", wantMsg: "'messages' is a required property"},
		{name: "422 fastapi", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(422)
			io.WriteString(w, `{"detail":"temperature must be >= 0"}`)
		}, wantStatus: 400, wantType: "invalid_request_error", wantMsg: "temperature must be >= 0"},
		{name: "401", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"message":"Incorrect API key provided: `+key+`","type":"invalid_request_error"}}`)
		}, wantStatus: 401, wantType: "authentication_error", wantMsg: "Incorrect API key provided: [credential]"},
		{name: "429", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "20")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`)
		}, wantStatus: 429, wantType: "rate_limit_error", wantMsg: "retry after 20"},
		{name: "500 plain text", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream exploded", 500)
		}, wantStatus: 502, wantType: "backend_error", wantMsg: "HTTP 500: upstream exploded"},
		{name: "malformed json", handler: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"id":"x","choices":[`)
		}, wantStatus: 502, wantMsg: "malformed"},
		{name: "malformed event", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1, `{"choices":[{"delta":`, "[DONE]"))
		}, want: []string{chunk1}, wantStatus: 502, wantMsg: "stream event 2 is malformed"},
		{name: "error event mid-stream", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1, `{"error":{"message":"CUDA out of memory","type":"server_error"}}`))
		}, want: []string{chunk1}, wantStatus: 502, wantMsg: "CUDA out of memory"},
		{name: "truncated stream", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1, chunk2))
		}, want: []string{chunk1, chunk2}, wantStatus: 502, wantMsg: "cut short"},
		{name: "connection cut mid-event", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1))
			w.(http.Flusher).Flush()
			conn, buf, _ := http.NewResponseController(w).Hijack()
			buf.WriteString("20\r\ndata: {\"id\":\"c\",\"object\":\"ch")
			buf.Flush()
			conn.Close()
		}, want: []string{chunk1}, wantStatus: 502},
		{name: "stream answered as json", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, completion)
		}, wantStatus: 502, wantMsg: "not text/event-stream"},
		{name: "idle before head", timeout: 1, handler: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, wantStatus: 504, wantType: "timeout", wantMsg: "sent nothing for 1s"},
		{name: "idle mid-stream", stream: true, timeout: 1, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, want: []string{chunk1}, wantStatus: 504, wantType: "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fake(t, tc.handler)
			b := newBackend(t, s.URL+"/v1", tc.timeout)
			var rec sdktest.Recorder
			err := b.ChatCompletions(context.Background(), &sdk.Request{Model: "m", Stream: tc.stream, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)}, &rec)
			checkErr(t, err, tc.wantStatus, tc.wantType, tc.wantMsg)
			got := rec.Chunks()
			if len(got) != len(tc.want) {
				t.Fatalf("got %d chunks, want %d: %+v", len(got), len(tc.want), got)
			}
			var usage *sdk.Usage
			for i, c := range got {
				if string(c.Data) != tc.want[i] {
					t.Errorf("chunk %d = %s, want %s", i, c.Data, tc.want[i])
				}
				if c.Usage != nil {
					usage = c.Usage
				}
			}
			if (usage == nil) != (tc.wantUsage == nil) || usage != nil && *usage != *tc.wantUsage {
				t.Errorf("usage = %+v, want %+v", usage, tc.wantUsage)
			}
		})
	}
}

func checkErr(t *testing.T, err error, status int, typ, msg string) {
	t.Helper()
	if status == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var se *sdk.Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want an *sdk.Error %d", err, err, status)
	}
	if se.Status != status || typ != "" && se.Type != typ || !strings.Contains(se.Message, msg) {
		t.Fatalf("error = %+v, want status %d type %q message containing %q", se, status, typ, msg)
	}
	if strings.Contains(se.Message, key) {
		t.Fatalf("error message holds the credential: %s", se.Message)
	}
}

func TestModelsHealthEmbeddings(t *testing.T) {
	s := fake(t, nil)
	b := newBackend(t, s.URL+"/v1/", 0) // a trailing slash is fine
	ms, err := b.ListModels(context.Background())
	if err != nil || len(ms) != 2 || ms[0] != (sdk.Model{ID: "meta/llama-3.1-8b-instruct", OwnedBy: "meta", Created: 1700000000}) {
		t.Fatalf("ListModels = %+v, %v", ms, err)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Fatalf("Health = %v", err)
	}
	c, err := b.Embeddings(context.Background(), &sdk.Request{Model: "e", Body: []byte(`{"model":"e","input":"x"}`)})
	if err != nil || string(c.Data) != embedding || c.Usage == nil || c.Usage.PromptTokens != 3 {
		t.Fatalf("Embeddings = %+v, %v", c, err)
	}
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: s.URL + "/v1", Model: "gone", Credential: key}); err != nil {
		t.Fatal(err)
	}
	checkErr(t, b.Health(context.Background()), 404, "not_found_error", `does not serve model "gone" (it lists meta/llama-3.1-8b-instruct, m)`)
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: s.URL + "/v1", Model: "m", Credential: "wrong"}); err != nil {
		t.Fatal(err)
	}
	checkErr(t, b.Health(context.Background()), 401, "authentication_error", "credential_env")
}

func TestConfigureRefuses(t *testing.T) {
	b := openaicompat.New(openaicompat.Options{Name: "t", DefaultEndpoint: "https://api.example.com/v1",
		CredentialRequired: func(u *url.URL) bool { return u.Hostname() == "api.example.com" }})
	tests := []struct {
		cfg        sdk.Config
		wantStatus int
		wantMsg    string
	}{
		{sdk.Config{Endpoint: "ftp://x/v1"}, 400, "not an http(s) URL"},
		{sdk.Config{Endpoint: "http://user:pw@127.0.0.1/v1"}, 400, "credential_env"},
		{sdk.Config{}, 401, "api.example.com needs an API key"},
		{sdk.Config{Endpoint: "http://127.0.0.1:8000/v1"}, 0, ""},
	}
	for _, tc := range tests {
		checkErr(t, b.Configure(context.Background(), tc.cfg), tc.wantStatus, "", tc.wantMsg)
	}
}

func TestFailures(t *testing.T) {
	unconfigured := openaicompat.New(openaicompat.Options{Name: "t", Capabilities: []sdk.Capability{sdk.CapChat}})
	checkErr(t, unconfigured.ChatCompletions(context.Background(), &sdk.Request{Body: []byte(`{}`)}, &sdktest.Recorder{}), 503, "", "no route")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	b := newBackend(t, "http://"+addr+"/v1", 0)
	checkErr(t, b.ChatCompletions(context.Background(), &sdk.Request{Body: []byte(`{}`)}, &sdktest.Recorder{}), 502, "backend_unavailable", "reach backend")
	checkErr(t, b.Responses(context.Background(), &sdk.Request{Body: []byte(`{}`)}, &sdktest.Recorder{}), 501, "not_implemented", "/responses")

	// A caller that went away stops the relay with its own error.
	s := fake(t, func(w http.ResponseWriter, r *http.Request) { writeSSE(w, sse(chunk1, chunk2, "[DONE]")) })
	b = newBackend(t, s.URL+"/v1", 0)
	gone := errors.New("client went away")
	if err := b.ChatCompletions(context.Background(), &sdk.Request{Stream: true, Body: []byte(`{}`)}, &sdktest.Recorder{Fail: gone}); !errors.Is(err, gone) {
		t.Fatalf("relay to a gone caller = %v, want %v", err, gone)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.ChatCompletions(ctx, &sdk.Request{Body: []byte(`{}`)}, &sdktest.Recorder{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request = %v", err)
	}
}

// TestOverTheWire: the backend behind the real gRPC service — chunks,
// usage and the in-band errors arrive as the router sees them.
func TestOverTheWire(t *testing.T) {
	s := fake(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/completions") && !strings.Contains(r.URL.Path, "chat") {
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"message":"slow down"}}`)
			return
		}
		writeSSE(w, sse(chunk1, usageChunk))
	})
	b := sdktest.Serve(t, newBackend(t, s.URL+"/v1", 0))
	chunks, err := sdktest.Chat(context.Background(), b, "m", true, `{}`)
	checkErr(t, err, 502, "backend_error", "cut short")
	if len(chunks) != 2 || string(chunks[1].Data) != usageChunk || chunks[1].Usage == nil || chunks[1].Usage.TotalTokens != 9 {
		t.Fatalf("chunks = %+v", chunks)
	}
	checkErr(t, b.Completions(context.Background(), &sdk.Request{Body: []byte(`{}`)}, &sdktest.Recorder{}), 429, "rate_limit_error", "slow down")
	d, err := b.Describe(context.Background())
	if err != nil || d.Name != "test" || !d.Has(sdk.CapTools) {
		t.Fatalf("Describe = %+v, %v", d, err)
	}
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: "gopher://x"}); err == nil {
		t.Fatal("Configure over the wire accepted a gopher URL")
	}
}

// TestConnectionReuse: calls one after another reuse one connection to the
// backend. A stream stopped reading at its [DONE] event, before the end of
// the HTTP body, so every streamed call closed its connection and dialled a
// new one (a TCP handshake per call on the plugin's path).
func TestConnectionReuse(t *testing.T) {
	tests := []struct {
		name    string
		stream  bool
		handler http.HandlerFunc
	}{
		{name: "stream, end of body sent after [DONE]", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1, chunk2, "[DONE]"))
			w.(http.Flusher).Flush()
		}},
		{name: "stream, end of body with [DONE]", stream: true, handler: func(w http.ResponseWriter, r *http.Request) {
			writeSSE(w, sse(chunk1, chunk2, "[DONE]"))
		}},
		{name: "json", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, completion)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int32
			s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				tt.handler(w, r)
			}))
			s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					conns.Add(1)
				}
			}
			s.Start()
			t.Cleanup(s.Close)
			b := newBackend(t, s.URL+"/v1", 0)
			const calls = 5
			for i := range calls {
				if _, err := sdktest.Chat(context.Background(), b, "m", tt.stream, `{"model":"m","messages":[]}`); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("%d calls opened %d connections to the backend, want 1 (kept alive)", calls, n)
			}
		})
	}
}
