package ollama

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// reply is what the fake Ollama answers on one path.
type reply struct {
	status int    // 0: 200
	file   string // testdata file sent as the body
	body   string // or this body
	// handler, when set, answers instead (slow streams, dropped connections).
	handler http.HandlerFunc
}

// received is one request the fake Ollama got.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// fakeOllama is an httptest server that answers Ollama's API paths with
// the wire format from Ollama's docs (the testdata files) and records what
// the backend sent.
type fakeOllama struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []received
}

func newFake(t *testing.T, routes map[string]reply) *fakeOllama {
	t.Helper()
	f := &fakeOllama{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, received{r.Method, r.URL.Path, r.Header.Clone(), body})
		f.mu.Unlock()
		rep, ok := routes[r.URL.Path]
		if !ok {
			// Ollama's router answers an unknown path with a plain 404.
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		if rep.handler != nil {
			rep.handler(w, r)
			return
		}
		data := []byte(rep.body)
		if rep.file != "" {
			var err error
			if data, err = os.ReadFile(filepath.Join("testdata", rep.file)); err != nil {
				t.Errorf("fake ollama: %v", err)
			}
		}
		if filepath.Ext(rep.file) == ".ndjson" {
			w.Header().Set("Content-Type", "application/x-ndjson")
		} else {
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
		}
		if rep.status != 0 {
			w.WriteHeader(rep.status)
		}
		w.Write(data)
	}))
	t.Cleanup(f.Close)
	return f
}

// last returns the last request the fake got on path, decoded into v.
func (f *fakeOllama) last(t *testing.T, path string, v any) received {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.reqs) - 1; i >= 0; i-- {
		if r := f.reqs[i]; r.path == path {
			if v != nil {
				if err := json.Unmarshal(r.body, v); err != nil {
					t.Fatalf("the backend sent %s a body that is not JSON: %v\n%s", path, err, r.body)
				}
			}
			return r
		}
	}
	t.Fatalf("the backend sent nothing to %s", path)
	return received{}
}

// count is how many requests the fake got.
func (f *fakeOllama) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

// newBackend returns a Backend configured for the fake.
func newBackend(t *testing.T, f *fakeOllama, cfg sdk.Config) *Backend {
	t.Helper()
	b := New(nil)
	cfg.Endpoint = f.URL
	if err := b.Configure(context.Background(), cfg); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return b
}

// recorder is an sdk.StreamWriter that keeps the chunks; failAfter > 0
// makes Send fail from that chunk on, as when the caller went away.
type recorder struct {
	chunks    []sdk.Chunk
	failAfter int
}

var errGone = errors.New("caller went away")

func (r *recorder) Send(c sdk.Chunk) error {
	if r.failAfter > 0 && len(r.chunks) >= r.failAfter {
		return errGone
	}
	r.chunks = append(r.chunks, c)
	return nil
}

// decode decodes chunk i's payload.
func (r *recorder) decode(t *testing.T, i int, v any) {
	t.Helper()
	if i >= len(r.chunks) {
		t.Fatalf("chunk %d of %d", i, len(r.chunks))
	}
	if err := json.Unmarshal(r.chunks[i].Data, v); err != nil {
		t.Fatalf("chunk %d is not JSON: %v\n%s", i, err, r.chunks[i].Data)
	}
}

// sdkErr asserts err is an *sdk.Error with status.
func sdkErr(t *testing.T, err error, status int) *sdk.Error {
	t.Helper()
	var se *sdk.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an *sdk.Error", err, err)
	}
	if se.Status != status {
		t.Fatalf("status %d, want %d: %v", se.Status, status, se)
	}
	return se
}

func chatReq(body string) *sdk.Request {
	var s struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	_ = json.Unmarshal([]byte(body), &s)
	return &sdk.Request{Model: s.Model, Stream: s.Stream, Body: []byte(body)}
}

// discard is an sdk.StreamWriter that drops the chunks (benchmarks).
type discard struct{}

func (discard) Send(sdk.Chunk) error { return nil }
