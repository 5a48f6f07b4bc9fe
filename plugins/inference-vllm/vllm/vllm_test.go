package vllm_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/inference-vllm/vllm"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/openaicompat"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

// vLLM's own answer to "tool_choice": "auto" when it was started without
// --enable-auto-tool-choice (vllm/entrypoints/openai/serving_chat.py), in
// its error shape ({"object": "error", ...}).
const toolRefusal = `{"object":"error","message":"\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set","type":"BadRequestError","param":null,"code":400}`

// fakeVLLM answers /v1/models like `vllm serve MODEL` and refuses tool
// calls unless tools is set.
func fakeVLLM(t *testing.T, tools bool) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"nvidia/nemotron-3-nano-30b-a3b","object":"model","created":1,"owned_by":"vllm","root":"nvidia/nemotron-3-nano-30b-a3b","max_model_len":4096}]}`)
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), `"tools"`) && !tools {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, toolRefusal)
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"chatcmpl-tool-1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28}}`)
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

const toolRequest = `{"model":"nvidia/nemotron-3-nano-30b-a3b","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`

func TestToolParserMissing(t *testing.T) {
	b := vllm.New()
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: fakeVLLM(t, false).URL + "/v1", Model: "nvidia/nemotron-3-nano-30b-a3b"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Fatalf("Health = %v", err)
	}
	_, err := sdktest.Chat(context.Background(), b, "nvidia/nemotron-3-nano-30b-a3b", false, toolRequest)
	var se *sdk.Error
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, "restart it with `--enable-auto-tool-choice --tool-call-parser PARSER`") {
		t.Fatalf("tool call on a vLLM without a parser = %v", err)
	}
	// Other 400s keep vLLM's own message.
	if _, err := sdktest.Chat(context.Background(), b, "m", false, `{}`); err != nil {
		t.Fatalf("plain chat = %v", err)
	}
}

// TestBinary launches the built nemoclaw-inference-vllm over go-plugin as
// the host does and makes a tool call through it.
func TestBinary(t *testing.T) {
	bin := sdktest.Build(t, "github.com/nemoclaw/nemoclaw/plugins/inference-vllm", "vllm")
	b := sdktest.Launch(t, bin)
	d, err := b.Describe(context.Background())
	if err != nil || d.Name != "vllm" || !d.Has(sdk.CapTools) || !d.Has(sdk.CapStreaming) {
		t.Fatalf("Describe = %+v, %v", d, err)
	}
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: fakeVLLM(t, true).URL + "/v1", Model: "nvidia/nemotron-3-nano-30b-a3b"}); err != nil {
		t.Fatal(err)
	}
	chunks, err := sdktest.Chat(context.Background(), b, "nvidia/nemotron-3-nano-30b-a3b", false, toolRequest)
	if err != nil || len(chunks) != 1 || !strings.Contains(string(chunks[0].Data), `"tool_calls"`) || chunks[0].Usage == nil || chunks[0].Usage.TotalTokens != 28 {
		t.Fatalf("tool call through the binary = %+v, %v", chunks, err)
	}
}

// TestDefaultEndpoint: a route without an endpoint probes vLLM's default
// address with GET /v1/models.
func TestDefaultEndpoint(t *testing.T) {
	o := vllm.Options()
	var asked string
	o.Transport = roundTrip(func(r *http.Request) (*http.Response, error) {
		asked = r.Method + " " + r.URL.String()
		return nil, errors.New("connection refused")
	})
	b := openaicompat.New(o)
	if err := b.Configure(context.Background(), sdk.Config{}); err != nil {
		t.Fatal(err)
	}
	err := b.Health(context.Background())
	var se *sdk.Error
	if !errors.As(err, &se) || se.Type != "backend_unavailable" || asked != "GET http://127.0.0.1:8000/v1/models" {
		t.Fatalf("probe asked %q and got %v", asked, err)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
