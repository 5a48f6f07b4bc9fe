package inference

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// mapProvider hands each route the backend registered for its profile.
type mapProvider map[string]sdk.Backend

func (p mapProvider) Backend(_ context.Context, r Route) (sdk.Backend, error) {
	b, ok := p[r.Profile]
	if !ok {
		return nil, fmt.Errorf("no backend for %s", r.Profile)
	}
	if err := b.Configure(context.Background(), r.Config); err != nil {
		return nil, err
	}
	return b, nil
}

// httpBackend is an OpenAI-compatible backend in process: what the vLLM
// and NVIDIA plugins do over the network, here over HTTP to a fake server.
// It holds the route's credential and sends it as a Bearer token.
type httpBackend struct {
	caps []sdk.Capability
	mu   sync.Mutex
	cfg  sdk.Config
	hc   *http.Client
}

func (b *httpBackend) Describe(context.Context) (sdk.Description, error) {
	caps := b.caps
	if caps == nil {
		caps = []sdk.Capability{sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming}
	}
	return sdk.Description{Name: "http-test", Version: "0", Capabilities: caps}, nil
}

func (b *httpBackend) Configure(_ context.Context, cfg sdk.Config) error {
	b.mu.Lock()
	b.cfg = cfg
	b.mu.Unlock()
	return nil
}

func (b *httpBackend) Health(ctx context.Context) error {
	_, err := b.ListModels(ctx)
	return err
}

func (b *httpBackend) ListModels(context.Context) ([]sdk.Model, error) {
	return []sdk.Model{{ID: b.config().Model}}, nil
}

func (b *httpBackend) config() sdk.Config {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

func (b *httpBackend) post(ctx context.Context, path string, req *sdk.Request, w sdk.StreamWriter) error {
	cfg := b.config()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.Endpoint+path, bytes.NewReader(req.Body))
	if err != nil {
		return err
	}
	hr.Header.Set("Authorization", "Bearer "+cfg.Credential)
	hr.Header.Set("Content-Type", "application/json")
	hc := b.hc
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

func (b *httpBackend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.post(ctx, "/chat/completions", req, w)
}

func (b *httpBackend) Completions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.post(ctx, "/completions", req, w)
}

func (b *httpBackend) Responses(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("responses")
}

func (b *httpBackend) Embeddings(ctx context.Context, req *sdk.Request) (*sdk.Chunk, error) {
	var got *sdk.Chunk
	err := b.post(ctx, "/embeddings", req, writerFunc(func(c sdk.Chunk) error { got = &c; return nil }))
	return got, err
}

// fakeOpenAI is a fake OpenAI-compatible server: it answers chat (plain,
// streamed, with a tool call when the request offers tools), completions
// and embeddings in the API's wire format, and records what it received.
type fakeOpenAI struct {
	*httptest.Server
	mu      sync.Mutex
	auth    []string // Authorization headers received
	headers []http.Header
	bodies  [][]byte
	// chunks is how many content chunks a streamed answer has (default 3).
	chunks int
}

func newFakeOpenAI(t testing.TB) *fakeOpenAI {
	f := &fakeOpenAI{chunks: 3}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) received() (auth []string, bodies [][]byte, headers []http.Header) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...), append([][]byte(nil), f.bodies...), append([]http.Header(nil), f.headers...)
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.headers = append(f.headers, r.Header.Clone())
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
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
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, req.Model, strings.Repeat("hi ", f.chunks), f.chunks, 9+f.chunks)
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
		for range f.chunks {
			emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{"content":"hi "},"finish_reason":null}]}`, req.Model))
		}
	}
	emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":{},"finish_reason":%q}]}`, req.Model, finish))
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		emit(fmt.Sprintf(`{"id":"chatcmpl-2","object":"chat.completion.chunk","created":1,"model":%q,"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}`, req.Model, f.chunks, 9+f.chunks))
	}
	emit("[DONE]")
}

// scriptBackend is a backend whose chat answer is a script: it sends the
// given chunks, then blocks, fails or returns as told.
type scriptBackend struct {
	httpBackend
	chunks []string
	// then: "" returns nil, "error" returns an error, "block" waits for
	// the context, "hang" ignores it (until release closes).
	then    string
	release chan struct{}
	embed   *sdk.Chunk
}

func (b *scriptBackend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	for _, c := range b.chunks {
		if err := w.Send(sdk.Chunk{Data: []byte(c)}); err != nil {
			return err
		}
	}
	switch b.then {
	case "error":
		return errors.New("connection reset by the backend")
	case "block":
		<-ctx.Done()
		return ctx.Err()
	case "hang":
		<-b.release
		return w.Send(sdk.Chunk{Data: []byte(`{"late":true}`)})
	}
	return nil
}

func (b *scriptBackend) Embeddings(context.Context, *sdk.Request) (*sdk.Chunk, error) {
	return b.embed, nil
}
