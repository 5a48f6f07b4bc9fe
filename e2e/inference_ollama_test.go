package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/plugins/inference-ollama/ollama"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// ollamaVersion is the Ollama that e2e/tools/ollama.sh builds (CPU only)
// into the tool cache, with the tiny random-weight model next to it.
const ollamaVersion = "v0.17.4"

// tinyModel is the name the tiny model is registered under.
const tinyModel = "nemoclaw-tiny"

// realOllama is a real `ollama serve` on a free loopback port, with its
// models in a temporary directory and the tiny model created in it.
type realOllama struct {
	endpoint string
	bin      string
	env      []string
}

// startRealOllama starts Ollama from the tool cache, or skips (fails under
// NEMOCLAW_STRICT_TESTS=1) when `make e2e-tools` has not built it.
func startRealOllama(t *testing.T) *realOllama {
	t.Helper()
	base, err := toolCacheDir()
	if err != nil {
		testutil.SkipOrFail(t, "No cache directory for the e2e tools: "+err.Error())
	}
	dir := filepath.Join(base, "ollama-"+ollamaVersion)
	bin, gguf := filepath.Join(dir, "ollama"), filepath.Join(dir, "tiny-llama.gguf")
	for _, p := range []string{bin, gguf} {
		if _, err := os.Stat(p); err != nil {
			testutil.SkipOrFail(t, fmt.Sprintf("Ollama %s or its tiny model is not built (%v): run `make e2e-tools` (e2e/tools/ollama.sh).", ollamaVersion, err))
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	home := t.TempDir()
	o := &realOllama{endpoint: "http://" + addr, bin: bin, env: []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"OLLAMA_HOST=" + addr, "OLLAMA_MODELS=" + filepath.Join(home, "models"),
		"OLLAMA_NUM_PARALLEL=1", "OLLAMA_MAX_LOADED_MODELS=1", "OLLAMA_NOPRUNE=1",
	}}
	logf, err := os.Create(filepath.Join(home, "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = o.env, logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Ollama's runner is a child of the server: end the whole group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("ollama serve log (last 4 kB):\n%s", tail(b, 4096))
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(o.endpoint + "/api/version")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ollama serve did not answer on %s within 60 s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The model as a user would register it: a Modelfile and `ollama create`.
	// The template declares .Tools so that Ollama accepts tool requests.
	modelfile := filepath.Join(home, "Modelfile")
	mf := "FROM " + gguf + `
TEMPLATE """{{- if .Tools }}<|tools|>{{ range .Tools }}{{ .Function.Name }} {{ end }}
{{ end }}{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}
{{ end }}<|assistant|>"""
PARAMETER num_thread 1
PARAMETER num_ctx 512
`
	if err := os.WriteFile(modelfile, []byte(mf), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	create := exec.Command(bin, "create", tinyModel, "-f", modelfile)
	create.Env = o.env
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("ollama create: %v\n%s", err, out)
	}
	t.Logf("ollama create %s: %s", tinyModel, time.Since(start).Round(time.Millisecond))
	return o
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// collector is an sdk.StreamWriter that keeps the chunks.
type collector struct{ chunks []sdk.Chunk }

func (c *collector) Send(ch sdk.Chunk) error { c.chunks = append(c.chunks, ch); return nil }

// TestOllamaRealServer drives a real Ollama through the Ollama backend:
// models, health, chat (whole and streamed, with tools declared),
// completions (whole and streamed), embeddings (float and base64), and a
// missing model. The tiny model's words are gibberish, so the checks are on
// shapes, token counts and determinism (greedy decoding streams the same
// text it answers whole).
//
// The same server is what the inference.local end-to-end test (a sandbox
// calling the router, which calls this backend as a plugin) points its
// Ollama profile at: extend from startRealOllama and testOllamaBackend.
func TestOllamaRealServer(t *testing.T) {
	o := startRealOllama(t)
	for _, name := range []string{"in-process", "plugin"} {
		t.Run(name, func(t *testing.T) {
			mk := ollamaBackends[name]
			if mk == nil {
				t.Fatalf("no way to reach the Ollama backend named %q", name)
			}
			testOllamaBackend(t, o, mk(t))
		})
	}
}

// ollamaBackends are the ways the real-server test reaches the Ollama
// backend: in process, and as the plugin binary over go-plugin
// (inference_ollama_plugin_test.go).
var ollamaBackends = map[string]func(t *testing.T) sdk.Backend{
	"in-process": func(*testing.T) sdk.Backend { return ollama.New(nil) },
}

func testOllamaBackend(t *testing.T, o *realOllama, b sdk.Backend) {
	ctx := context.Background()
	if err := b.Configure(ctx, sdk.Config{Endpoint: o.endpoint, Model: tinyModel, TimeoutSecs: 120}); err != nil {
		t.Fatal(err)
	}

	models, err := b.ListModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].ID != tinyModel+":latest" || models[0].Created == 0 {
		t.Errorf("models: %+v", models)
	}
	if err := b.Health(ctx); err != nil {
		t.Errorf("Health: %v", err)
	}

	chatBody := func(stream bool, extra string) *sdk.Request {
		body := fmt.Sprintf(`{"model":%q,"stream":%t,"max_tokens":8,"temperature":0,"seed":42,"messages":[
			{"role":"system","content":"You are tiny."},{"role":"user","content":"say hello world"}]%s}`, tinyModel, stream, extra)
		return &sdk.Request{Model: tinyModel, Stream: stream, Body: []byte(body)}
	}
	type chatMsg struct {
		Choices []struct {
			Message, Delta struct {
				Role      string          `json:"role"`
				Content   *string         `json:"content"`
				ToolCalls json.RawMessage `json:"tool_calls"`
			}
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Object string `json:"object"`
		Usage  *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	decode := func(t *testing.T, c sdk.Chunk) chatMsg {
		t.Helper()
		var m chatMsg
		if err := json.Unmarshal(c.Data, &m); err != nil || len(m.Choices) != 1 {
			t.Fatalf("chunk %s: %v", c.Data, err)
		}
		return m
	}

	var whole string
	t.Run("chat", func(t *testing.T) {
		var w collector
		start := time.Now()
		if err := b.ChatCompletions(ctx, chatBody(false, ""), &w); err != nil {
			t.Fatal(err)
		}
		t.Logf("chat (first call, loads the model): %s", time.Since(start).Round(time.Millisecond))
		if len(w.chunks) != 1 {
			t.Fatalf("%d chunks", len(w.chunks))
		}
		m := decode(t, w.chunks[0])
		c := m.Choices[0]
		if m.Object != "chat.completion" || c.Message.Role != "assistant" || c.Message.Content == nil || c.FinishReason == nil {
			t.Fatalf("response %s", w.chunks[0].Data)
		}
		if *c.FinishReason != "length" && *c.FinishReason != "stop" {
			t.Errorf("finish_reason %q", *c.FinishReason)
		}
		u := m.Usage
		if u == nil || u.PromptTokens == 0 || u.CompletionTokens == 0 || u.CompletionTokens > 8 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Errorf("usage %+v (max_tokens 8)", u)
		}
		whole = *c.Message.Content
		t.Logf("the tiny model answered %q (%d+%d tokens)", whole, u.PromptTokens, u.CompletionTokens)

		// Ollama's own OpenAI-compatible endpoint, given the same request,
		// answers the same text, finish reason and token counts.
		resp, err := http.Post(o.endpoint+"/v1/chat/completions", "application/json", bytes.NewReader(chatBody(false, "").Body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ref chatMsg
		if err := json.NewDecoder(resp.Body).Decode(&ref); err != nil || len(ref.Choices) != 1 || ref.Usage == nil || ref.Choices[0].Message.Content == nil {
			t.Fatalf("Ollama's /v1/chat/completions: %d %v", resp.StatusCode, err)
		}
		rc := ref.Choices[0]
		if *rc.Message.Content != whole || *rc.FinishReason != *c.FinishReason || *ref.Usage != *u {
			t.Errorf("Ollama's own OpenAI endpoint answered %q %s %+v; the backend %q %s %+v", *rc.Message.Content, *rc.FinishReason, *ref.Usage, whole, *c.FinishReason, *u)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		var w collector
		start := time.Now()
		if err := b.ChatCompletions(ctx, chatBody(true, ""), &w); err != nil {
			t.Fatal(err)
		}
		t.Logf("chat stream: %d chunks in %s", len(w.chunks), time.Since(start).Round(time.Millisecond))
		if len(w.chunks) < 3 {
			t.Fatalf("%d chunks", len(w.chunks))
		}
		var text strings.Builder
		for i, ch := range w.chunks {
			m := decode(t, ch)
			if m.Object != "chat.completion.chunk" {
				t.Errorf("chunk %d object %q", i, m.Object)
			}
			if d := m.Choices[0].Delta; d.Content != nil {
				text.WriteString(*d.Content)
			}
			if last := i == len(w.chunks)-1; (m.Choices[0].FinishReason != nil) != last || (ch.Usage != nil) != last {
				t.Errorf("chunk %d: finish_reason and usage belong to the last chunk only: %s", i, ch.Data)
			}
		}
		last := decode(t, w.chunks[len(w.chunks)-1])
		if last.Usage == nil || last.Usage.CompletionTokens == 0 || last.Usage.CompletionTokens > 8 {
			t.Errorf("final usage %+v", last.Usage)
		}
		if whole != "" && text.String() != whole {
			t.Errorf("greedy decoding streamed %q but answered %q whole", text.String(), whole)
		}
	})

	t.Run("chat with tools declared", func(t *testing.T) {
		tools := `,"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]`
		var w collector
		if err := b.ChatCompletions(ctx, chatBody(false, tools), &w); err != nil {
			t.Fatal(err)
		}
		if m := decode(t, w.chunks[0]); m.Choices[0].FinishReason == nil {
			t.Errorf("response %s", w.chunks[0].Data)
		}
	})

	type textMsg struct {
		Object  string `json:"object"`
		Choices []struct {
			Text         string  `json:"text"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("completions stream=%t", stream), func(t *testing.T) {
			var w collector
			body := fmt.Sprintf(`{"model":%q,"prompt":"the tiny model is","max_tokens":6,"temperature":0,"stream":%t}`, tinyModel, stream)
			if err := b.Completions(ctx, &sdk.Request{Model: tinyModel, Stream: stream, Body: []byte(body)}, &w); err != nil {
				t.Fatal(err)
			}
			if n := len(w.chunks); (stream && n < 2) || (!stream && n != 1) {
				t.Fatalf("%d chunks", n)
			}
			var m textMsg
			if err := json.Unmarshal(w.chunks[len(w.chunks)-1].Data, &m); err != nil || m.Object != "text_completion" || m.Choices[0].FinishReason == nil ||
				m.Usage == nil || m.Usage.CompletionTokens == 0 || m.Usage.CompletionTokens > 6 {
				t.Errorf("final chunk %s (%v)", w.chunks[len(w.chunks)-1].Data, err)
			}
		})
	}

	for _, format := range []string{"float", "base64"} {
		t.Run("embeddings "+format, func(t *testing.T) {
			c, err := b.Embeddings(ctx, &sdk.Request{Model: tinyModel, Body: []byte(fmt.Sprintf(`{"model":%q,"input":["hello world","tiny model"],"encoding_format":%q}`, tinyModel, format))})
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Object string `json:"object"`
				Data   []struct {
					Index     int             `json:"index"`
					Embedding json.RawMessage `json:"embedding"`
				} `json:"data"`
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(c.Data, &got); err != nil || got.Object != "list" || len(got.Data) != 2 || got.Data[1].Index != 1 || got.Usage.PromptTokens == 0 {
				t.Fatalf("response %.300s (%v)", c.Data, err)
			}
			// The tiny model's hidden size is 64.
			if format == "float" {
				var v []float32
				if json.Unmarshal(got.Data[0].Embedding, &v); len(v) != 64 {
					t.Errorf("embedding of %d floats, want 64", len(v))
				}
			} else {
				var s string
				if json.Unmarshal(got.Data[0].Embedding, &s); len(s) != 344 { // base64 of 256 bytes
					t.Errorf("base64 embedding of %d characters, want 344", len(s))
				}
			}
		})
	}

	t.Run("missing model", func(t *testing.T) {
		req := &sdk.Request{Model: "absent", Body: []byte(`{"model":"absent","messages":[{"role":"user","content":"hi"}]}`)}
		var se *sdk.Error
		if err := b.ChatCompletions(ctx, req, &collector{}); !errors.As(err, &se) || se.Status != 404 || !strings.Contains(se.Message, "ollama pull absent") {
			t.Errorf("error %v, want a 404 naming `ollama pull absent`", err)
		}
		b.Configure(ctx, sdk.Config{Endpoint: o.endpoint, Model: "absent"})
		defer b.Configure(ctx, sdk.Config{Endpoint: o.endpoint, Model: tinyModel})
		if err := b.Health(ctx); !errors.As(err, &se) || se.Status != 404 {
			t.Errorf("Health of a route to a missing model: %v", err)
		}
	})
}
