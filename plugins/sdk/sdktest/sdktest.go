// Package sdktest lets a plugin author test a backend the way nemoclaw
// calls it: in-process behind the real gRPC service (Serve), or as the
// built plugin binary launched over go-plugin exactly as the host launches
// it (Build, Launch). Both return an sdk.Backend whose calls cross the wire.
package sdktest

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Serve exposes b on a gRPC server (on a Unix socket in a temporary
// directory, with the options every plugin serves with) and returns a
// client for it; both stop when t ends.
func Serve(t testing.TB, b sdk.Backend) sdk.Backend {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("sdktest: listen on %s: %v", sock, err)
	}
	srv := grpc.NewServer(sdk.ServerOptions()...)
	sdk.RegisterServer(srv, b)
	go func() { _ = srv.Serve(ln) }()
	cc, err := grpc.NewClient("unix://"+sock, append(sdk.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		srv.Stop()
		t.Fatalf("sdktest: dial %s: %v", sock, err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
	})
	return sdk.NewClient(cc)
}

// Build compiles the main package pkg (an import path or a ./relative
// directory, as go build takes it) into a temporary directory as
// nemoclaw-inference-NAME and returns the binary's path.
func Build(t testing.TB, pkg, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "nemoclaw-inference-"+name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sdktest: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Launch starts the plugin binary at path over go-plugin with the host's
// settings (gRPC only, AutoMTLS, no host environment, the message limits)
// and returns its backend; the process is killed when t ends. Plugin log
// lines go to t.Log.
func Launch(t testing.TB, path string) sdk.Backend {
	t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Name: filepath.Base(path), Output: testWriter{t}, Level: hclog.Info})
	c := plugin.NewClient(sdk.ClientConfig(exec.Command(path), logger))
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("sdktest: start plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		t.Fatalf("sdktest: dispense plugin %s: %v", path, err)
	}
	return raw.(sdk.Backend)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Recorder is a StreamWriter that keeps what it is sent.
type Recorder struct {
	mu     sync.Mutex
	chunks []sdk.Chunk
	// Fail, when set, is returned by Send (a caller that went away).
	Fail error
}

// Send implements sdk.StreamWriter.
func (r *Recorder) Send(c sdk.Chunk) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Fail != nil {
		return r.Fail
	}
	r.chunks = append(r.chunks, c)
	return nil
}

// Chunks returns the chunks sent so far.
func (r *Recorder) Chunks() []sdk.Chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sdk.Chunk(nil), r.chunks...)
}

// Chat sends a chat completion request with body through b and returns
// what b sent back.
func Chat(ctx context.Context, b sdk.Backend, model string, stream bool, body string) ([]sdk.Chunk, error) {
	var r Recorder
	err := b.ChatCompletions(ctx, &sdk.Request{Model: model, Stream: stream, Body: []byte(body)}, &r)
	return r.Chunks(), err
}
