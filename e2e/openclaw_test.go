package e2e

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/blueprints"
	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// fakeOpenAI is an OpenAI-compatible backend on the host (chat
// completions, streamed or not, and models) that records the
// Authorization headers it got.
type fakeOpenAI struct {
	srv  *httptest.Server
	mu   sync.Mutex
	auth []string
}

const fakeReply = "Hello from the fake backend"

func newFakeOpenAI(t *testing.T) *fakeOpenAI {
	f := &fakeOpenAI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		switch {
		case strings.HasSuffix(r.URL.Path, "/models"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"object":"list","data":[{"id":"fake-model","object":"model","owned_by":"e2e"}]}`)
		case strings.HasSuffix(r.URL.Path, "/chat/completions"):
			var req struct {
				Stream bool `json:"stream"`
			}
			_ = json.NewDecoder(r.Body).Decode(&req)
			if !req.Stream {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"id":"c1","object":"chat.completion","created":1,"model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":5,"total_tokens":6}}`, fakeReply)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for i, part := range []string{"Hello from ", "the fake backend"} {
				role := ""
				if i == 0 {
					role = `"role":"assistant",`
				}
				fmt.Fprintf(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake-model\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":%q},\"finish_reason\":null}]}\n\n", role, part)
			}
			fmt.Fprint(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"fake-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":5,\"total_tokens\":6}}\n\ndata: [DONE]\n\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOpenAI) auths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...)
}

// openClawBlueprint writes a copy of the embedded OpenClaw blueprint whose
// default profile "fake" points at backend (an OpenAI-compatible URL on the
// host) with its key in FAKE_OPENAI_KEY.
func openClawBlueprint(t *testing.T, backend string) string {
	t.Helper()
	dir := t.TempDir()
	sub, err := fs.Sub(blueprints.FS, blueprints.OpenClawDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dir, sub); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "blueprint.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "profiles:\n  - nvidia\n", "profiles:\n  - fake\n  - nvidia\n", 1)
	s = strings.Replace(s, "default_profile: nvidia\n", "default_profile: fake\n", 1)
	s = strings.Replace(s, "  inference:\n    profiles:\n", "  inference:\n    profiles:\n      fake:\n        provider_type: openai\n        provider_name: e2e-fake\n        endpoint: \""+backend+"/v1\"\n        model: fake-model\n        credential_env: FAKE_OPENAI_KEY\n        timeout_secs: 60\n", 1)
	if s == string(b) || !strings.Contains(s, "e2e-fake") {
		t.Fatal("the embedded openclaw blueprint changed shape: update openClawBlueprint")
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openClawTools points home's tools directory at a cache kept between
// runs (the npm install of Node and OpenClaw takes minutes; runner/tools
// keys trees by version, so a new pin makes a new tree).
func openClawTools(t *testing.T, home string) {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		testutil.SkipOrFail(t, "npm is not installed (Debian package npm): onboard installs Node and OpenClaw with it")
	}
	base, err := toolCacheDir()
	if err != nil {
		testutil.SkipOrFail(t, "No cache directory for the OpenClaw tools: "+err.Error())
	}
	cache := filepath.Join(base, "openclaw-tools")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cache, filepath.Join(home, "tools")); err != nil {
		t.Fatal(err)
	}
}

// pollFor polls cond every second until it holds or d passes.
func pollFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestOpenClawOnboard (issue 17): `nemoclaw onboard --yes` installs Node
// and OpenClaw (cached between runs), writes OpenClaw's config and starts
// `openclaw gateway run` detached under the blueprint's default limits
// (4Gi: V8's reservations no longer count, issue 17 item 1); OpenClaw's own
// outbound attempts are denied and audited; re-running onboard is
// idempotent; one `openclaw agent` turn goes through inference.local to a
// fake backend on the host that gets the real key, which nothing in the
// sandbox holds.
func TestOpenClawOnboard(t *testing.T) {
	e := newSupEnv(t)
	openClawTools(t, e.home)
	backend := newFakeOpenAI(t)
	bp := openClawBlueprint(t, backend.srv.URL)
	const secret = "sk-e2e-real-key-4f0c2a"
	onboard := func() string {
		cmd := e.cmd("onboard", "--yes", "--blueprint", bp, "--name", "oc")
		cmd.Env = append(cmd.Env, "FAKE_OPENAI_KEY="+secret, "HOME="+os.Getenv("HOME"))
		out, errs, code := runCmd(t, cmd)
		if code != 0 {
			t.Fatalf("onboard: exit %d\n%s%s", code, out, errs)
		}
		return out
	}
	out := onboard()
	if !strings.Contains(out, `started in sandbox "oc"`) || !strings.Contains(out, "profile fake (FAKE_OPENAI_KEY is set)") || !strings.Contains(out, "nemoclaw connect oc") {
		t.Fatalf("onboard output:\n%s", out)
	}
	dir := filepath.Join(e.home, "sandboxes", "oc")
	cfg, err := os.ReadFile(filepath.Join(dir, "workspace", ".openclaw", "openclaw.json"))
	if err != nil || !strings.Contains(string(cfg), "http://inference.local/v1") || !strings.Contains(string(cfg), `"inference-local/fake-model"`) || strings.Contains(string(cfg), secret) {
		t.Fatalf("openclaw.json (%v):\n%s", err, cfg)
	}
	supLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "supervisor.log")); return string(b) }
	agentLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "agent.log")); return string(b) }
	if l := supLog(); !strings.Contains(l, "resources: memory=4294967296 bytes enforced by the supervisor") && !strings.Contains(l, "memory/pids/cpu via cgroup v2") {
		t.Errorf("the run log does not say which mechanism holds the memory limit:\n%s", l)
	}
	// The gateway starts and stays up under the default limits (it took
	// 22 s on a loaded 2-core machine).
	if !pollFor(4*time.Minute, func() bool { return strings.Contains(agentLog(), "http server listening") }) {
		t.Fatalf("the gateway did not start:\n%s\nsupervisor log:\n%s", agentLog(), supLog())
	}
	if st := e.status(t, "oc"); st.State != "running" {
		t.Fatalf("sandbox %s after the gateway started:\nagent:\n%s\nsupervisor:\n%s", st.State, agentLog(), supLog())
	}
	if strings.Contains(supLog(), "memory limit exceeded: killing") {
		t.Fatalf("killed for memory under the default limits:\n%s", supLog())
	}
	// Idempotent: the same onboard again leaves the running sandbox be.
	if out := onboard(); !strings.Contains(out, "already running") {
		t.Errorf("second onboard:\n%s", out)
	}
	// OpenClaw's own destinations (model catalog, ClawHub) are refused
	// and audited.
	audit := func() string { b, _ := os.ReadFile(filepath.Join(dir, "audit.jsonl")); return string(b) }
	if !pollFor(2*time.Minute, func() bool {
		a := audit()
		return strings.Contains(a, `"catalog.openclaw.ai"`) || strings.Contains(a, `"clawhub.ai"`)
	}) {
		t.Errorf("no OpenClaw outbound attempt in the audit log:\n%s", audit())
	}
	for _, line := range strings.Split(strings.TrimSpace(audit()), "\n") {
		var ev struct {
			Host, Decision, Activity string
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Activity == "summary" {
			continue
		}
		if ev.Decision == "allow" && ev.Host != "inference.local" {
			t.Errorf("allowed beyond inference.local: %s", line)
		}
	}
	logs := e.must(t, "logs", "oc")
	if !strings.Contains(logs, "== egress audit ==") || !strings.Contains(logs, "http server listening") {
		t.Errorf("nemoclaw logs:\n%s", logs)
	}
	// Nothing in the sandbox holds the key: not the agent's environment,
	// not its files.
	env := e.must(t, "sandbox", "exec", "oc", "--", "sh", "-c", "cat /proc/1/environ /proc/self/environ | tr '\\0' '\\n'; grep -rl "+secret+" /sandbox /tmp 2>/dev/null; true")
	if strings.Contains(env, secret) {
		t.Errorf("the key is visible inside the sandbox:\n%s", env)
	}

	// One agent turn through inference.local. OpenClaw refuses --local
	// next to a running gateway on the same state directory, so the turn
	// gets its own.
	probe, _, _ := e.nc(t, "sandbox", "exec", "oc", "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://inference.local/v1/models")
	if strings.TrimSpace(probe) == "503" {
		// The refusal is obvious (issue 17 item 5): one line with the
		// reason in the supervisor's log and in the agent's log, where
		// OpenClaw would show only "connection error".
		if !pollFor(10*time.Second, func() bool {
			return strings.Contains(supLog(), "model call refused") && strings.Contains(agentLog(), "[nemoclaw] model call refused")
		}) {
			t.Errorf("a refused model call left no clear line:\nsupervisor:\n%s\nagent:\n%s", supLog(), agentLog())
		}
		if l := e.must(t, "logs", "oc"); !strings.Contains(l, "model call refused") || !strings.Contains(l, "503") {
			t.Errorf("nemoclaw logs does not show the refused model call:\n%s", l)
		}
		testutil.SkipOrFail(t, "inference.local answers 503: no inference router serves this sandbox yet (the router of the inference issue wires the profile to the backend)")
	}
	turn, terr, code := e.nc(t, "sandbox", "exec", "oc", "--env", "OPENCLAW_STATE_DIR=/tmp/openclaw-turn", "--",
		"openclaw", "agent", "--agent", "main", "--local", "-m", "Say hello", "--session-id", "e2e-1")
	if code != 0 || !strings.Contains(turn, fakeReply) {
		t.Fatalf("openclaw agent: exit %d\n%s\n%s\nsupervisor:\n%s", code, turn, terr, supLog())
	}
	got := backend.auths()
	if len(got) == 0 || got[len(got)-1] != "Bearer "+secret {
		t.Errorf("the backend got Authorization %q, want the real key", got)
	}
	for _, a := range got {
		if strings.Contains(a, "nemoclaw-inference-local") {
			t.Errorf("the placeholder key reached the backend: %q", a)
		}
	}
	e.must(t, "sandbox", "destroy", "--force", "oc")
}
