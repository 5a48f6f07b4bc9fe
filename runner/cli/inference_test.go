package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// cliBackend streams a fixed answer and lists one model; down makes
// every call fail as a backend that is not running does.
type cliBackend struct {
	cfg  sdk.Config
	down bool
}

func (b *cliBackend) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "fake", Version: "9.9", Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapStreaming}}, nil
}
func (b *cliBackend) Configure(_ context.Context, c sdk.Config) error { b.cfg = c; return nil }
func (b *cliBackend) Health(context.Context) error {
	if b.down {
		return errors.New("dial tcp 127.0.0.1:11434: connection refused")
	}
	return nil
}
func (b *cliBackend) ListModels(ctx context.Context) ([]sdk.Model, error) {
	if err := b.Health(ctx); err != nil {
		return nil, err
	}
	return []sdk.Model{{ID: b.cfg.Model}, {ID: "other:7b"}}, nil
}
func (b *cliBackend) ChatCompletions(ctx context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	if err := b.Health(ctx); err != nil {
		return err
	}
	for _, tok := range []string{"Hello", " from", " " + r.Model} {
		if err := w.Send(sdk.Chunk{Data: fmt.Appendf(nil, `{"choices":[{"index":0,"delta":{"content":%q}}]}`, tok)}); err != nil {
			return err
		}
	}
	return nil
}
func (b *cliBackend) Completions(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("completions")
}
func (b *cliBackend) Responses(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("responses")
}
func (b *cliBackend) Embeddings(context.Context, *sdk.Request) (*sdk.Chunk, error) {
	return nil, sdk.Unimplemented("embeddings")
}

type cliProvider struct{ b *cliBackend }

func (p cliProvider) Backend(ctx context.Context, r inference.Route) (sdk.Backend, error) {
	return p.b, p.b.Configure(ctx, r.Config)
}

// hostOf is an InferenceHost giving b (nil: the real plugin host).
func hostOf(b *cliBackend) func(*App, map[string]string) (inference.Provider, func() error, error) {
	if b == nil {
		return nil
	}
	return func(*App, map[string]string) (inference.Provider, func() error, error) {
		return cliProvider{b}, func() error { return nil }, nil
	}
}

func TestInferenceCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		host *cliBackend
		env  string
		args []string
		code int
		out  []string
	}{
		{"test", &cliBackend{}, "", []string{"inference", "test", "--profile", "ollama"}, 0, []string{"profile ollama: plugin fake 9.9, model llama3.2", "first chunk after", `answer: "Hello from llama3.2"`}},
		{"models", &cliBackend{}, "", []string{"inference", "models", "--profile", "ollama"}, 0, []string{"inference.local serves\n  llama3.2", "has 2 model(s)", "other:7b"}},
		{"backend down", &cliBackend{down: true}, "", []string{"inference", "test", "--profile", "ollama"}, 1, []string{"connection refused"}},
		{"missing credential", &cliBackend{}, "", []string{"inference", "test"}, 1, []string{"NVIDIA_API_KEY, which is not set on the host"}},
		{"credential set", &cliBackend{}, "nvapi-x", []string{"inference", "test"}, 0, []string{"model nvidia/nemotron"}},
		{"no plugin", nil, "", []string{"inference", "test", "--profile", "ollama"}, 1, []string{"plugin not found"}},
		{"unknown profile", &cliBackend{}, "", []string{"inference", "models", "--profile", "zz"}, 2, []string{`no inference profile "zz"; its profiles: nvidia, ollama, vllm`}},
		{"plan backend down", &cliBackend{down: true}, "", []string{"blueprint", "plan", "--profile", "ollama"}, 0, []string{"inference backend DOWN: dial tcp 127.0.0.1:11434: connection refused"}},
		{"plan backend up", &cliBackend{}, "", []string{"blueprint", "plan", "--profile", "ollama"}, 0, []string{"inference backend up"}},
		{"plan credential missing", &cliBackend{}, "", []string{"blueprint", "plan"}, 0, []string{"NVIDIA_API_KEY (missing)", "inference backend not checked: NVIDIA_API_KEY is not set"}},
		{"set needs profile", nil, "", []string{"inference", "set", "agent"}, 2, []string{"set needs --profile"}},
		{"set on no sandbox", nil, "", []string{"inference", "set", "agent", "--profile", "ollama"}, 1, []string{"no running supervisor"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NVIDIA_API_KEY", tc.env)
			t.Setenv("NEMOCLAW_HOME", t.TempDir())
			var stdout, stderr bytes.Buffer
			err := Execute(context.Background(), Options{Args: tc.args, Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, InferenceHost: hostOf(tc.host)})
			out, errOut, code := stdout.String(), stderr.String(), ExitCode(err)
			all := out + errOut
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, all)
			}
			for _, w := range tc.out {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if tc.env != "" && strings.Contains(all, tc.env) {
				t.Errorf("the key was printed")
			}
		})
	}
}
