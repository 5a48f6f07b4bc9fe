package ollama

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// FuzzChatStream feeds arbitrary bytes as Ollama's /api/chat stream: the
// relay never panics, every chunk it sends is JSON, and it ends either with
// a final chunk (finish_reason set) or with a typed error, never silently.
func FuzzChatStream(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.ndjson"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"done":true}`))
	f.Add([]byte("\n\n{\"error\":\"\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var w recorder
		err := streamChat(newNDJSON(bytes.NewReader(data), "/api/chat"), "m", &w)
		for i := range w.chunks {
			if !json.Valid(w.chunks[i].Data) {
				t.Fatalf("chunk %d is not JSON: %s", i, w.chunks[i].Data)
			}
		}
		var se *sdk.Error
		if err != nil {
			if !errors.As(err, &se) || se.Status != 502 {
				t.Fatalf("error %v is not a 502 *sdk.Error", err)
			}
			return
		}
		var last oaChatResponse
		if json.Unmarshal(w.chunks[len(w.chunks)-1].Data, &last) != nil || last.Choices[0].FinishReason == nil || w.chunks[len(w.chunks)-1].Usage == nil {
			t.Fatalf("stream ended without a final chunk: %s", w.chunks[len(w.chunks)-1].Data)
		}
	})
}

// FuzzChatRequest feeds arbitrary request bodies to the translation: it
// never panics, refuses with a 400, or yields a request that encodes.
func FuzzChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}],"tools":[{"type":"function","function":{"name":"f"}}]}`))
	f.Add([]byte(`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}],"stop":["a"],"n":1}`))
	f.Add([]byte(`{"messages":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := chatRequest(body, route{model: "fallback"})
		if err != nil {
			var se *sdk.Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("error %v is not a 400 *sdk.Error", err)
			}
			return
		}
		if _, err := json.Marshal(out); err != nil {
			t.Fatalf("translated request does not encode: %v", err)
		}
		if out.Model == "" || len(out.Messages) == 0 {
			t.Fatalf("translated request lacks model or messages: %+v", out)
		}
	})
}
