package nvidia_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/inference-nvidia/nvidia"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

func TestCatalogNeedsKey(t *testing.T) {
	b := nvidia.New()
	var se *sdk.Error
	for _, ep := range []string{"", nvidia.CatalogEndpoint, "https://ai.api.nvidia.com/v1"} {
		if err := b.Configure(context.Background(), sdk.Config{Endpoint: ep}); !errors.As(err, &se) || se.Status != 401 || !strings.Contains(se.Message, "credential_env") {
			t.Errorf("Configure(%q) without a key = %v; want a 401 naming credential_env", ep, err)
		}
	}
	// A local NIM may run without a key.
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: "http://nim-service.local:8000/v1"}); err != nil {
		t.Errorf("keyless local NIM refused: %v", err)
	}
}

// TestNIMStream: a NIM endpoint's stream (NIM speaks OpenAI's chunks) with
// the key as a Bearer token.
func TestNIMStream(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer nvapi-test" {
			w.WriteHeader(401)
			io.WriteString(w, `{"status":401,"title":"Unauthorized","detail":"Authentication failed"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"id\":\"1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer s.Close()
	b := nvidia.New()
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: s.URL + "/v1", Credential: "nvapi-test"}); err != nil {
		t.Fatal(err)
	}
	chunks, err := sdktest.Chat(context.Background(), b, "nvidia/nemotron-3-super-120b-a12b", true, `{"stream":true}`)
	if err != nil || len(chunks) != 1 || !strings.Contains(string(chunks[0].Data), `"hi"`) {
		t.Fatalf("stream = %+v, %v", chunks, err)
	}
	if err := b.Configure(context.Background(), sdk.Config{Endpoint: s.URL + "/v1", Credential: "wrong"}); err != nil {
		t.Fatal(err)
	}
	_, err = sdktest.Chat(context.Background(), b, "m", true, `{"stream":true}`)
	var se *sdk.Error
	if !errors.As(err, &se) || se.Status != 401 || !strings.Contains(se.Message, "Authentication failed") {
		t.Fatalf("wrong key = %v", err)
	}
}
