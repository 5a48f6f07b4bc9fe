package supervisor

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/inference/inferencetest"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// echoBackend answers chat with the model and whether it holds the
// route's credential; it records the credentials it was configured with.
type echoBackend struct {
	mu    sync.Mutex
	creds []string
}

func (b *echoBackend) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: "echo", Capabilities: []sdk.Capability{sdk.CapChat, sdk.CapStreaming}}, nil
}
func (b *echoBackend) Health(context.Context) error                    { return nil }
func (b *echoBackend) ListModels(context.Context) ([]sdk.Model, error) { return nil, nil }
func (b *echoBackend) Embeddings(context.Context, *sdk.Request) (*sdk.Chunk, error) {
	return nil, sdk.Unimplemented("embeddings")
}
func (b *echoBackend) Completions(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("completions")
}
func (b *echoBackend) Responses(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("responses")
}
func (b *echoBackend) Configure(_ context.Context, c sdk.Config) error {
	b.mu.Lock()
	b.creds = append(b.creds, c.Credential)
	b.mu.Unlock()
	return nil
}
func (b *echoBackend) ChatCompletions(_ context.Context, r *sdk.Request, w sdk.StreamWriter) error {
	return w.Send(sdk.Chunk{Data: fmt.Appendf(nil, `{"id":"c","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"answer from %s"},"finish_reason":"stop"}]}`, r.Model, r.Model)})
}

type routeProvider struct{ b *echoBackend }

func (p routeProvider) Backend(ctx context.Context, r inference.Route) (sdk.Backend, error) {
	return p.b, p.b.Configure(ctx, r.Config)
}

// TestInferenceInSandbox: inside a real sandbox, inference.local answers
// curl and Python's urllib through the proxy (http and https) and
// directly (proxy variables ignored, via the 127.0.0.2 listeners); the
// route's key is nowhere the agent can read; a live route switch over the
// control socket changes /v1/models for the running agent.
func TestInferenceInSandbox(t *testing.T) {
	needKernel(t)
	for _, tool := range []string{"/usr/bin/curl", "/usr/bin/python3"} {
		if _, err := os.Stat(tool); err != nil {
			testutil.SkipOrFail(t, tool+" is not installed (apt-get install curl python3)")
		}
	}
	if got := egress.InferenceAddr.As4(); got != sandbox.InferenceAddr {
		t.Fatalf("egress resolves inference.local to %v, the sandbox listens on %v", got, sandbox.InferenceAddr)
	}
	const key = "nvapi-supervisor-test-secret-42"
	home := t.TempDir()
	out := &testutil.Buffer{}
	be := &echoBackend{}
	chat := `{"model":"alias-a","messages":[{"role":"user","content":"hi"}]}`
	py := `import json,urllib.request,sys
r=urllib.request.Request(sys.argv[1],data=json.dumps({"messages":[{"role":"user","content":"x"}]}).encode(),headers={"Content-Type":"application/json","Authorization":"Bearer sk-agent"})
print("PY", json.load(urllib.request.urlopen(r))["choices"][0]["message"]["content"])`
	script := strings.Join([]string{
		"set -u",
		`echo "PROXY $(curl -sS -H 'Authorization: Bearer sk-agent' -d '` + chat + `' http://inference.local/v1/chat/completions)"`,
		`echo "PROXYTLS $(curl -sS -d '` + chat + `' https://inference.local/v1/chat/completions)"`,
		`echo "DIRECT $(curl -sS --noproxy '*' -d '` + chat + `' http://inference.local/v1/chat/completions)"`,
		`echo "DIRECTTLS $(curl -sS --noproxy '*' -d '` + chat + `' https://inference.local/v1/chat/completions)"`,
		`python3 -c '` + py + `' http://inference.local/v1/chat/completions`,
		`NO_PROXY='*' no_proxy='*' python3 -c '` + py + `' https://inference.local/v1/chat/completions`,
		`env; cat /proc/[0-9]*/cmdline /proc/[0-9]*/environ 2>/dev/null | tr '\0' '\n'; grep -rs . /run/nemoclaw /etc/resolv.conf /sandbox`,
		`echo "MODELS1 $(curl -sS http://inference.local/v1/models)"`,
		`i=0; while ! curl -s --noproxy '*' http://inference.local/v1/models | grep -q model-b && [ $i -lt 1500 ]; do i=$((i+1)); sleep 0.02; done`,
		`echo "MODELS2 $(curl -sS --noproxy '*' http://inference.local/v1/models)"`,
	}, "\n")
	s := start(t, Config{Name: "inf", Home: home, Detached: true, Stdout: out, Stderr: out,
		Command: []string{"sh", "-c", script},
		Inference: &InferenceConfig{Profile: "a", Provider: routeProvider{be}, Routes: []inference.Route{
			{Profile: "a", Plugin: "echo", Config: sdk.Config{Model: "model-a", Credential: key}, Aliases: map[string]string{"alias-a": ""}},
			{Profile: "b", Plugin: "echo", Config: sdk.Config{Model: "model-b", Credential: key}},
		}}})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "MODELS1 {") {
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not get to MODELS1:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := NewClient(home, "inf").SetInference(context.Background(), "b")
	if err != nil || info.Model != "model-b" {
		t.Fatalf("inference-set: %+v %v", info, err)
	}
	if _, err := NewClient(home, "inf").SetInference(context.Background(), "zz"); err == nil || !strings.Contains(err.Error(), "no such profile") {
		t.Fatalf("inference-set to an unknown profile: %v", err)
	}
	if code, err := s.Wait(); err != nil || code != 0 {
		t.Fatalf("agent exit %d %v:\n%s", code, err, out.String())
	}
	got := out.String()
	for _, want := range []string{"PROXY {", "PROXYTLS {", "DIRECT {", "DIRECTTLS {", "PY answer from model-a\nPY answer from model-a"} {
		if !strings.Contains(got, want) {
			t.Errorf("agent output lacks %q", want)
		}
	}
	if strings.Count(got, `"content":"answer from model-a"`) != 4 {
		t.Errorf("want 4 curl answers from model-a")
	}
	if !strings.Contains(got, `MODELS1 {"object":"list","data":[{"id":"model-a"`) || !strings.Contains(got, `MODELS2 {"object":"list","data":[{"id":"model-b"`) {
		t.Errorf("models before and after the switch")
	}
	if strings.Contains(got, key) {
		t.Errorf("the route's key is visible inside the sandbox")
	}
	if t.Failed() {
		t.Fatalf("agent output:\n%s", got)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.creds) == 0 || be.creds[0] != key {
		t.Fatalf("the backend was not configured with the route's key: %q", be.creds)
	}
	_ = s.Close()
	audit, _ := os.ReadFile(filepath.Join(home, "sandboxes", "inf", "audit.jsonl"))
	if strings.Contains(string(audit), key) || strings.Contains(string(audit), "sk-agent") {
		t.Fatal("the audit log holds a key")
	}
}

// buildOpenAIClient compiles testdata/openaiclient (the official OpenAI Go
// client) statically into a directory the sandbox user can read.
func buildOpenAIClient(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("nemoclaw-openaiclient-%d-%08x", os.Getuid(), crc32.ChecksumIEEE([]byte(wd))))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	tmp := filepath.Join(dir, fmt.Sprintf("openaiclient.%d", os.Getpid()))
	cmd := exec.Command("go", "build", "-o", tmp, "./testdata/openaiclient")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the OpenAI client: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "openaiclient")
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

type httpProvider struct{ b *inferencetest.HTTPBackend }

func (p httpProvider) Backend(ctx context.Context, r inference.Route) (sdk.Backend, error) {
	return p.b, p.b.Configure(ctx, r.Config)
}

// TestOpenAIClientInSandbox: the official OpenAI Go client, inside a real
// sandbox, through https://inference.local (the proxy) and
// http://127.0.0.2 (direct): chat streamed and not, tools, responses
// streamed and not (translated), embeddings and models, answered by a
// fake OpenAI server on the host that receives the route's key, which the
// agent never sees.
func TestOpenAIClientInSandbox(t *testing.T) {
	needKernel(t)
	if _, err := exec.LookPath("go"); err != nil {
		testutil.SkipOrFail(t, "the go toolchain is not on PATH to build the OpenAI client")
	}
	bin := buildOpenAIClient(t)
	const key = "nvapi-openai-client-test-secret-7"
	fake := &inferencetest.FakeOpenAI{}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	out := &testutil.Buffer{}
	// The client goes in the workspace, which a root launcher wants owned
	// by someone else (a user's project).
	base, err := os.MkdirTemp("", "nemoclaw-oai-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	work := filepath.Join(base, "work")
	data, err := os.ReadFile(bin)
	if err == nil {
		err = errors.Join(os.Chmod(base, 0o755), os.Mkdir(work, 0o755), os.WriteFile(filepath.Join(work, "openaiclient"), data, 0o755))
	}
	if err == nil && os.Geteuid() == 0 {
		err = errors.Join(os.Chown(work, 1000, 1000), os.Chown(filepath.Join(work, "openaiclient"), 1000, 1000))
	}
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{Name: "oai", Detached: true, Stdout: out, Stderr: out, Workdir: work,
		Command: []string{"sh", "-c", "/sandbox/openaiclient && NO_PROXY='*' no_proxy='*' /sandbox/openaiclient http://inference.local/v1 && env && cat /proc/[0-9]*/cmdline | tr '\\0' ' '"},
		Inference: &InferenceConfig{Profile: "main", Provider: httpProvider{&inferencetest.HTTPBackend{}}, Routes: []inference.Route{
			{Profile: "main", Plugin: "http", Config: sdk.Config{Endpoint: srv.URL + "/v1", Model: "meta/llama-3.1-8b-instruct", Credential: key}, Aliases: map[string]string{"gpt-4o": ""}},
		}}})
	if code, err := s.Wait(); err != nil || code != 0 {
		t.Fatalf("agent exit %d %v:\n%s", code, err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`chat meta/llama-3.1-8b-instruct "hi hi hi "`, `stream 5 chunks "hi hi hi "`, `tools get_weather {"city":"Paris"}`,
		`responses completed "hi hi hi "`, `responses-stream "hi hi hi "`, "embeddings 3", "model meta/llama-3.1-8b-instruct\nmodel gpt-4o",
	} {
		if strings.Count(got, want) != 2 {
			t.Errorf("want %q twice (through the proxy and direct)", want)
		}
	}
	if strings.Contains(got, key) {
		t.Error("the route's key is visible inside the sandbox")
	}
	if t.Failed() {
		t.Fatalf("agent output:\n%s", got)
	}
	auth, _, _ := fake.Received()
	if len(auth) != 12 { // six calls per run reach it; models is the router's own
		t.Fatalf("the backend got %d requests, want 12", len(auth))
	}
	for _, a := range auth {
		if a != "Bearer "+key {
			t.Fatalf("the backend got Authorization %q, want the route's key", a)
		}
	}
}
