package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/plugins/sdk/sdktest"
)

// scripted is a backend whose answers the test sets.
type scripted struct {
	sdk.UnimplementedBackend
	cfg     chan sdk.Config
	chunks  int
	err     error
	blocked chan struct{} // closed when a held stream saw its context end
}

func (s *scripted) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "s", Version: "2", Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapStreaming}}, nil
}

func (s *scripted) Configure(_ context.Context, c sdk.Config) error {
	s.cfg <- c
	return s.err
}

func (s *scripted) ChatCompletions(ctx context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	for i := 0; i < s.chunks; i++ {
		u := (*sdk.Usage)(nil)
		if i == s.chunks-1 {
			u = &sdk.Usage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
		}
		if err := w.Send(sdk.Chunk{Data: fmt.Appendf(nil, `{"i":%d,"model":%q}`, i, r.Model), Usage: u}); err != nil {
			return err
		}
	}
	if s.blocked != nil {
		<-ctx.Done()
		close(s.blocked)
		return ctx.Err()
	}
	return s.err
}

func (s *scripted) Embeddings(context.Context, *sdk.Request) (*sdk.Chunk, error) { return nil, nil }

func TestWire(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		chunks  int
		wantErr *sdk.Error
	}{
		{"chunks and usage", nil, 3, nil},
		{"backend error after chunks", &sdk.Error{Status: 429, Type: "rate_limit_error", Message: "slow"}, 2, &sdk.Error{Status: 429, Type: "rate_limit_error", Message: "slow"}},
		{"plain error is a 502", errors.New("boom"), 0, &sdk.Error{Status: 502, Type: "backend_error", Message: "boom"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{cfg: make(chan sdk.Config, 1), chunks: tc.chunks, err: tc.err}
			b := sdktest.Serve(t, s)
			cfg := sdk.Config{Endpoint: "http://e/v1", Model: "m", Credential: "k", TimeoutSecs: 7, Options: map[string]string{"a": "b"}}
			err := b.Configure(context.Background(), cfg)
			if got := <-s.cfg; got.Endpoint != cfg.Endpoint || got.Credential != "k" || got.TimeoutSecs != 7 || got.Options["a"] != "b" {
				t.Fatalf("plugin got config %+v", got)
			}
			checkSDKErr(t, err, tc.wantErr)
			chunks, err := sdktest.Chat(context.Background(), b, "m", true, `{}`)
			checkSDKErr(t, err, tc.wantErr)
			if len(chunks) != tc.chunks {
				t.Fatalf("%d chunks, want %d", len(chunks), tc.chunks)
			}
			for i, c := range chunks {
				if string(c.Data) != fmt.Sprintf(`{"i":%d,"model":"m"}`, i) || (c.Usage != nil) != (i == tc.chunks-1) {
					t.Errorf("chunk %d = %s usage %+v", i, c.Data, c.Usage)
				}
			}
			d, err := b.Describe(context.Background())
			if err != nil || d.Name != "s" || d.Version != "2" || !d.Has(sdk.CapStreaming) {
				t.Fatalf("Describe = %+v, %v", d, err)
			}
			var se *sdk.Error
			if _, err := b.ListModels(context.Background()); !errors.As(err, &se) || se.Status != 501 {
				t.Fatalf("ListModels = %v, want 501", err)
			}
			if _, err := b.Embeddings(context.Background(), &sdk.Request{}); !errors.As(err, &se) || se.Status != 502 {
				t.Fatalf("Embeddings with no answer = %v, want 502", err)
			}
		})
	}
}

func checkSDKErr(t *testing.T, err error, want *sdk.Error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	var se *sdk.Error
	if !errors.As(err, &se) || *se != *want {
		t.Fatalf("error = %v, want %+v", err, want)
	}
}

// TestWireCancel: a caller that goes away mid-stream ends the plugin's
// call (its context is cancelled) and gets its own context's error.
func TestWireCancel(t *testing.T) {
	s := &scripted{chunks: 1, blocked: make(chan struct{})}
	b := sdktest.Serve(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.ChatCompletions(ctx, &sdk.Request{Model: "m", Stream: true}, writer(func(sdk.Chunk) error { close(first); return nil }))
	}()
	<-first
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled stream = %v", err)
	}
	<-s.blocked // the plugin saw the cancellation
}

type writer func(sdk.Chunk) error

func (f writer) Send(c sdk.Chunk) error { return f(c) }

// TestWireTransport: a plugin that is gone is ErrTransport, not a backend error.
func TestWireTransport(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sdk.ServerOptions()...)
	sdk.RegisterServer(srv, &scripted{cfg: make(chan sdk.Config, 1)})
	go srv.Serve(ln)
	cc, err := grpc.NewClient("unix://"+sock, append(sdk.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	b := sdk.NewClient(cc)
	if _, err := b.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	_, err = sdktest.Chat(context.Background(), b, "m", true, `{}`)
	var se *sdk.Error
	if !errors.Is(err, sdk.ErrTransport) || errors.As(err, &se) {
		t.Fatalf("call to a stopped plugin = %v, want ErrTransport", err)
	}
}

// TestWireMessageLimit: a request over MaxMessageBytes is the request's
// fault (413), not a failed plugin (which the host would restart).
func TestWireMessageLimit(t *testing.T) {
	b := sdktest.Serve(t, &scripted{chunks: 1})
	big := make([]byte, sdk.MaxMessageBytes+1)
	_, err := sdktest.Chat(context.Background(), b, "m", false, string(big))
	checkSDKErr(t, err, &sdk.Error{Status: 413, Type: "invalid_request_error", Message: "chat completions: the request or its answer exceeds the plugin protocol's 32 MiB message limit"})
	if errors.Is(err, sdk.ErrTransport) {
		t.Fatal("an oversized request was taken for a plugin failure")
	}
	if _, err := sdktest.Chat(context.Background(), b, "m", false, `{}`); err != nil {
		t.Fatalf("the next call: %v", err)
	}
}
