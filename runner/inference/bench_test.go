package inference

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// BenchmarkRouter is the router's own work per call (no network): a small
// non-streamed chat call and a 100-chunk stream through an in-memory
// backend.
func BenchmarkRouter(b *testing.B) {
	chunks := make([]string, 100)
	for i := range chunks {
		chunks[i] = okChunk
	}
	for _, bc := range []struct {
		name, body string
		be         *scriptBackend
	}{
		{"small", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, &scriptBackend{chunks: []string{`{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`}}},
		{"stream100", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`, &scriptBackend{chunks: chunks}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rt, err := NewRouter(RouterConfig{Routes: []Route{{Profile: "p", Config: sdk.Config{Model: "m"}, Aliases: map[string]string{"gpt-4o": ""}}},
				Active: "p", Provider: mapProvider{"p": bc.be}, Audit: func(AuditEvent) {}})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				rt.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(bc.body)))
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}
