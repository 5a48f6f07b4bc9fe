// Package inferencetest holds test doubles for the inference router: a
// fake OpenAI-compatible server and an in-process backend that calls one
// over HTTP, as the vLLM and NVIDIA plugins do. Tests and benchmarks use
// them; nemoclaw itself never does.
package inferencetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// sendFunc adapts a function to sdk.StreamWriter.
type sendFunc func(sdk.Chunk) error

// Send implements sdk.StreamWriter.
func (f sendFunc) Send(c sdk.Chunk) error { return f(c) }

// HTTPBackend is an OpenAI-compatible sdk.Backend in process: what the
// vLLM and NVIDIA plugins do, over HTTP to Config.Endpoint. It holds the
// route's credential and sends it as a Bearer token.
type HTTPBackend struct {
	// Caps are the capabilities it declares (nil: chat, completions,
	// embeddings, tools, streaming).
	Caps []sdk.Capability
	// Client sends the requests (nil: http.DefaultClient).
	Client *http.Client
	mu     sync.Mutex
	cfg    sdk.Config
}

// Describe implements sdk.Backend.
func (b *HTTPBackend) Describe(context.Context) (sdk.Description, error) {
	caps := b.Caps
	if caps == nil {
		caps = []sdk.Capability{sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming}
	}
	return sdk.Description{Name: "http-test", Version: "0", Capabilities: caps}, nil
}

// Configure implements sdk.Backend.
func (b *HTTPBackend) Configure(_ context.Context, cfg sdk.Config) error {
	b.mu.Lock()
	b.cfg = cfg
	b.mu.Unlock()
	return nil
}

// Health implements sdk.Backend.
func (b *HTTPBackend) Health(ctx context.Context) error {
	_, err := b.ListModels(ctx)
	return err
}

// ListModels implements sdk.Backend: the configured model.
func (b *HTTPBackend) ListModels(context.Context) ([]sdk.Model, error) {
	return []sdk.Model{{ID: b.config().Model}}, nil
}

func (b *HTTPBackend) config() sdk.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

func (b *HTTPBackend) post(ctx context.Context, path string, req *sdk.Request, w sdk.StreamWriter) error {
	cfg := b.config()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Endpoint+path, bytes.NewReader(req.Body))
	if err != nil {
		return err
	}
	hr.Header.Set("Authorization", "Bearer "+cfg.Credential)
	hr.Header.Set("Content-Type", "application/json")
	hc := b.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(hr)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return &sdk.Error{Status: res.StatusCode, Type: "upstream_error", Message: strings.TrimSpace(string(msg))}
	}
	if !req.Stream {
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		return w.Send(sdk.Chunk{Data: body})
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			return nil
		}
		if err := w.Send(sdk.Chunk{Data: []byte(line)}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("stream ended without [DONE]")
}

// ChatCompletions implements sdk.Backend.
func (b *HTTPBackend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.post(ctx, "/chat/completions", req, w)
}

// Completions implements sdk.Backend.
func (b *HTTPBackend) Completions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.post(ctx, "/completions", req, w)
}

// Responses implements sdk.Backend: not supported (the router translates).
func (b *HTTPBackend) Responses(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("responses")
}

// Embeddings implements sdk.Backend.
func (b *HTTPBackend) Embeddings(ctx context.Context, req *sdk.Request) (*sdk.Chunk, error) {
	var got *sdk.Chunk
	err := b.post(ctx, "/embeddings", req, sendFunc(func(c sdk.Chunk) error { got = &c; return nil }))
	return got, err
}

// FakeOpenAI is a fake OpenAI-compatible server (an http.Handler for
// /v1/...): it answers chat (plain, streamed, with a tool call when the
// request offers tools and the last message is not a tool result),
// completions, embeddings and GET /v1/models (fake-model) in the API's
// wire format, and records what it
// received unless Quiet.
type FakeOpenAI struct {
	// Chunks is how many "hi " content chunks an answer has (0: 3).
	Chunks int
	// Quiet keeps no record (benchmarks).
	Quiet   bool
	mu      sync.Mutex
	auth    []string // Authorization headers received
	headers []http.Header
	bodies  [][]byte
}

// Received returns the Authorization headers, bodies and headers of the
// requests received so far.
func (f *FakeOpenAI) Received() (auth []string, bodies [][]byte, headers []http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...), append([][]byte(nil), f.bodies...), append([]http.Header(nil), f.headers...)
}

// ServeHTTP implements http.Handler.
func (f *FakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/v1/models" {
		// What vLLM answers: the plugins probe it.
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"object":"list","data":[{"id":"fake-model","object":"model","created":1,"owned_by":"fake"}]}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !f.Quiet {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.headers = append(f.headers, r.Header.Clone())
		f.bodies = append(f.bodies, body)
		f.mu.Unlock()
	}
	chunks := f.Chunks
	if chunks == 0 {
		chunks = 3
	}
	var req struct {
		Model    string            `json:"model"`
		Stream   bool              `json:"stream"`
		Tools    []json.RawMessage `json:"tools"`
		Messages []struct {
			Role string `json:"role"`
		} `json:"messages"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/v1/embeddings":
		fmt.Fprintf(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.25,-0.5,1]}],"model":%q,"usage":{"prompt_tokens":4,"total_tokens":4}}`, req.Model)
		return
	case "/v1/completions":
		fmt.Fprintf(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":%q,"choices":[{"index":0,"text":"once upon","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":2,"total_tokens":4}}`, req.Model)
		return
	case "/v1/chat/completions":
	default:
		http.NotFound(w, r)
		return
	}
	tool := len(req.Tools) > 0 && req.Messages[len(req.Messages)-1].Role != "tool"
	if !req.Stream {
		if tool {
			fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}`, req.Model)
			return
		}
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, req.Model, strings.Repeat("hi ", chunks), chunks, 9+chunks)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	emit := func(s string) {
		fmt.Fprintf(w, "data: %s\n\n", s)
		fl.Flush()
	}
	emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`, req.Model))
	finish := "stop"
	if tool {
		emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`, req.Model))
		for _, a := range []string{`{\"city\":`, `\"Paris\"}`} {
			emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"%s"}}]},"finish_reason":null}]}`, req.Model, a))
		}
		finish = "tool_calls"
	} else {
		for range chunks {
			emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"content":"hi "},"finish_reason":null}]}`, req.Model))
		}
	}
	emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{},"finish_reason":%q}]}`, req.Model, finish))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, req.Model, chunks, 9+chunks))
	}
	emit("[DONE]")
}
