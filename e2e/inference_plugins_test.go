package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/inference/inferencetest"
)

// These tests run inference as a user does: a blueprint directory, the
// real nemoclaw and its real plugin processes (bin/nemoclaw-inference-*,
// pinned by `make build`), calls from inside the sandbox.

// requirePlugins skips unless the plugins are built next to nemoclaw.
func requirePlugins(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(Bin("nemoclaw-inference-" + n)); err != nil {
			testutil.SkipOrFail(t, fmt.Sprintf("The plugin nemoclaw-inference-%s is not in NEMOCLAW_BIN_DIR (%v): run make build.", n, err))
		}
	}
}

// ncEnv is e.nc with extra environment for nemoclaw (a credential).
func (e *supEnv) ncEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := e.cmd(args...)
	cmd.Env = append(cmd.Env, env...)
	timer := time.AfterFunc(3*time.Minute, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	return runCmd(t, cmd)
}

// serveHost serves h on the host's loopback and returns its base URL.
func serveHost(t *testing.T, h http.Handler) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// writeBlueprint writes a blueprint directory with the default's policy
// and one inference profile (YAML lines under the profile's name).
func writeBlueprint(t *testing.T, profile string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bp")
	if out, err := exec.Command("cp", "-r", "../blueprints/default", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	y := `version: "0.1.0"
min_runner_version: "0.1.0"
description: e2e inference through a real plugin
profiles: [main]
default_profile: main
components:
  sandbox:
    name: agent
    command: ["/bin/sh"]
  inference:
    profiles:
      main:
` + indent(profile, "        ") + `
  policy:
    base: policies/sandbox.yaml
`
	if err := os.WriteFile(filepath.Join(dir, "blueprint.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = pre + strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "\n")
}

func randomKey(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "fk-" + hex.EncodeToString(b)
}

func reverse(s string) string {
	r := []byte(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
}

// keyHunt is a Python program run inside the sandbox that looks for the
// key (given reversed, so that no command line holds it) in its
// environment, every /proc/*/environ and cmdline it can read and the files
// it can read under /etc, /sandbox, /tmp and /nemoclaw; it prints
// "FOUND where" per hit and "HUNTED n" with the number of places read.
const keyHunt = `
import os, sys
key = sys.argv[1][::-1].encode()
n = 0
for k, v in os.environ.items():
    n += 1
    if key in (k + "=" + v).encode(): print("FOUND env", k)
for pid in os.listdir("/proc"):
    if not pid.isdigit(): continue
    for f in ("environ", "cmdline"):
        try:
            data = open("/proc/%s/%s" % (pid, f), "rb").read()
        except OSError:
            continue
        n += 1
        if key in data: print("FOUND /proc/%s/%s" % (pid, f))
files = 0
for top in ("/etc", "/sandbox", "/tmp", "/nemoclaw"):
    for root, dirs, names in os.walk(top):
        for nm in names:
            p = os.path.join(root, nm)
            files += 1
            if files > 20000: break
            try:
                if not os.path.isfile(p) or os.path.getsize(p) > (4 << 20): continue
                data = open(p, "rb").read()
            except OSError:
                continue
            n += 1
            if key in data: print("FOUND file", p)
print("HUNTED", n)
`

// TestInferenceThroughPlugin: a blueprint whose profile is served by the
// real vLLM plugin process against a fake OpenAI server on the host's
// loopback. From inside the sandbox (foreground apply), curl through the
// proxy and directly, and Python's urllib, call every endpoint; each
// answer is the fake's, the fake saw only the profile's key (never the
// agent's Authorization), the key is nowhere the agent can read, and the
// audit log has each call with its model and status and without the key.
func TestInferenceThroughPlugin(t *testing.T) {
	requirePlugins(t, "vllm")
	e := newSupEnv(t)
	fake := &inferencetest.FakeOpenAI{}
	base := serveHost(t, fake)
	key := randomKey(t)
	dir := writeBlueprint(t, `provider_type: vllm
endpoint: "`+base+`/v1"
model: fake-model
credential_env: FAKE_INFERENCE_KEY
timeout_secs: 30`)

	const agentAuth = "Bearer sk-agent-own-0123456789"
	chat := `{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`
	stream := `{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	cu := func(tag, flags, path, body string) string {
		c := fmt.Sprintf(`printf '%%s\n' "%s $(curl -sS %s -H 'Authorization: %s' -H 'X-Api-Key: sk-agent-x' `, tag, flags, agentAuth)
		if body != "" {
			c += fmt.Sprintf(`-H 'Content-Type: application/json' -d '%s' `, body)
		}
		return c + path + ` | tr '\n' ' ')"`
	}
	script := strings.Join([]string{
		cu("P_CHAT", "", "http://inference.local/v1/chat/completions", chat),
		cu("P_STREAM", "-N", "http://inference.local/v1/chat/completions", stream),
		cu("P_COMPL", "", "http://inference.local/v1/completions", `{"model":"fake-model","prompt":"once"}`),
		cu("P_EMB", "", "http://inference.local/v1/embeddings", `{"model":"fake-model","input":"hi"}`),
		cu("P_MODELS", "", "http://inference.local/v1/models", ""),
		cu("P_RESP", "", "http://inference.local/v1/responses", `{"model":"fake-model","input":"hi"}`),
		cu("D_CHAT", "--noproxy '*'", "https://inference.local/v1/chat/completions", chat),
		cu("D_STREAM", "-N --noproxy '*'", "https://inference.local/v1/chat/completions", stream),
		cu("D_COMPL", "--noproxy '*'", "http://inference.local/v1/completions", `{"model":"fake-model","prompt":"once"}`),
		cu("D_EMB", "--noproxy '*'", "https://inference.local/v1/embeddings", `{"model":"fake-model","input":"hi"}`),
		cu("D_MODELS", "--noproxy '*'", "https://inference.local/v1/models", ""),
		cu("D_RESP", "--noproxy '*'", "https://inference.local/v1/responses", `{"model":"fake-model","input":"hi"}`),
		`python3 -c 'import urllib.request as u, sys; r = u.Request("http://inference.local/v1/chat/completions", data=sys.argv[1].encode(), headers={"Content-Type": "application/json", "Authorization": "` + agentAuth + `"}); print("PY_CHAT", u.urlopen(r).read().decode().replace("\n", " "))' '` + chat + `'`,
		`NO_PROXY='*' python3 -c 'import urllib.request as u; print("PY_DIRECT", u.urlopen("https://inference.local/v1/models").read().decode())'`,
		`python3 -c '` + strings.ReplaceAll(keyHunt, `'`, `"`) + `' '` + reverse(key) + `'`,
	}, "\n")
	out, errOut, code := e.ncEnv(t, []string{"FAKE_INFERENCE_KEY=" + key}, "blueprint", "apply", dir, "--no-tty", "--", "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	defer func() {
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
		}
	}()
	want := map[string][]string{
		"CHAT":   {`"content":"hi hi hi "`, `"model":"fake-model"`},
		"STREAM": {`"content":"hi "`, `data: [DONE]`},
		"COMPL":  {`"text":"once upon"`},
		"EMB":    {`"embedding":[0.25,-0.5,1]`},
		"MODELS": {`"id":"fake-model"`},
		"RESP":   {`hi hi hi`, `"object":"response"`},
	}
	for _, via := range []string{"P_", "D_"} {
		for tag, ws := range want {
			line := lineWith(out, via+tag+" ")
			for _, w := range ws {
				if !strings.Contains(line, w) {
					t.Errorf("%s%s lacks %s: %q", via, tag, w, line)
				}
			}
		}
	}
	// The plugin stops gracefully at the end of the run: no ERROR for it.
	if strings.Contains(errOut, "level=ERROR") {
		t.Errorf("the run logged an error on the user's terminal:\n%s", errOut)
	}
	if l := lineWith(out, "PY_CHAT "); !strings.Contains(l, `"content":"hi hi hi "`) {
		t.Errorf("python chat: %q", l)
	}
	if l := lineWith(out, "PY_DIRECT "); !strings.Contains(l, `"id":"fake-model"`) {
		t.Errorf("python direct models: %q", l)
	}
	if strings.Contains(out, "FOUND") || !strings.Contains(out, "HUNTED ") {
		t.Errorf("the key is readable inside the sandbox (or the hunt did not run):\n%s", out)
	}
	if n, _ := strconv.Atoi(strings.TrimPrefix(lineWith(out, "HUNTED "), "HUNTED ")); n < 50 {
		t.Errorf("the key hunt read only %d places", n)
	}

	auth, bodies, headers := fake.Received()
	// chat, stream, completions, embeddings, responses (as chat) twice, and Python's chat.
	if len(auth) < 11 {
		t.Errorf("the fake received %d calls, want at least 11", len(auth))
	}
	for i, a := range auth {
		if a != "Bearer "+key {
			t.Errorf("call %d reached the backend with Authorization %q, want the profile's key", i, a)
		}
		if headers[i].Get("X-Api-Key") != "" {
			t.Errorf("call %d carried the agent's x-api-key", i)
		}
		if !strings.Contains(string(bodies[i]), `"model":"fake-model"`) {
			t.Errorf("call %d: model not rewritten: %s", i, bodies[i])
		}
	}

	audit, aerr, acode := e.nc(t, "sandbox", "logs", "--audit", "-o", "json", "agent")
	if acode != 0 {
		t.Fatalf("sandbox logs --audit: exit %d: %s", acode, aerr)
	}
	if strings.Contains(audit, key) {
		t.Errorf("the audit log holds the key")
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(audit, "\n") {
		var ev struct {
			Class, Path, Model string
			Status             int
		}
		if json.Unmarshal([]byte(l), &ev) != nil || ev.Class != "Inference Activity" || ev.Path == "/v1/models" {
			continue
		}
		if ev.Model != "fake-model" || ev.Status != 200 {
			t.Errorf("inference audit line without the model or status 200: %s", l)
		}
		seen[ev.Path] = true
	}
	for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"} {
		if !seen[p] {
			t.Errorf("no Inference Activity audit line for %s:\n%s", p, audit)
		}
	}
}

// TestInferenceOllamaFromSandbox: the real Ollama behind a profile with
// provider ollama, called from inside a sandbox through inference.local
// and the real nemoclaw-inference-ollama plugin process.
func TestInferenceOllamaFromSandbox(t *testing.T) {
	requirePlugins(t, "ollama")
	e := newSupEnv(t)
	o := startRealOllama(t)
	dir := writeBlueprint(t, `provider_type: ollama
endpoint: "`+o.endpoint+`"
model: `+tinyModel+`
timeout_secs: 120`)
	msg := `{"model":"nemoclaw-tiny","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
	smsg := `{"model":"nemoclaw-tiny","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	// printf, not echo: /bin/sh (dash) echo turns a "\\" in the tiny
	// model's random text into "\", and the JSON no longer parses.
	script := strings.Join([]string{
		`printf '%s\n' "CHAT $(curl -sS -d '` + msg + `' http://inference.local/v1/chat/completions)"`,
		`printf '%s\n' "STREAM $(curl -sSN --noproxy '*' -d '` + smsg + `' https://inference.local/v1/chat/completions | tr '\n' ' ')"`,
		`printf '%s\n' "COMPL $(curl -sS -d '{"model":"nemoclaw-tiny","prompt":"once","max_tokens":8}' http://inference.local/v1/completions)"`,
		`printf '%s\n' "EMB $(curl -sS --noproxy '*' -d '{"model":"nemoclaw-tiny","input":"hi"}' http://inference.local/v1/embeddings)"`,
		`printf '%s\n' "MODELS $(curl -sS http://inference.local/v1/models)"`,
	}, "\n")
	out, errOut, code := e.nc(t, "blueprint", "apply", dir, "--no-tty", "--", "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	checks := map[string]func(string) bool{
		"CHAT": func(s string) bool {
			var r struct {
				Choices []struct{ Message struct{ Role string } }
			}
			return json.Unmarshal([]byte(s), &r) == nil && len(r.Choices) == 1 && r.Choices[0].Message.Role == "assistant"
		},
		"STREAM": func(s string) bool {
			return strings.Contains(s, `"object":"chat.completion.chunk"`) && strings.HasSuffix(strings.TrimSpace(s), "data: [DONE]")
		},
		"COMPL": func(s string) bool {
			var r struct{ Choices []struct{ Text *string } }
			return json.Unmarshal([]byte(s), &r) == nil && len(r.Choices) == 1 && r.Choices[0].Text != nil
		},
		"EMB": func(s string) bool {
			var r struct {
				Data []struct{ Embedding []float64 }
			}
			return json.Unmarshal([]byte(s), &r) == nil && len(r.Data) == 1 && len(r.Data[0].Embedding) > 0
		},
		"MODELS": func(s string) bool { return strings.Contains(s, tinyModel) },
	}
	for tag, ok := range checks {
		if s := strings.TrimPrefix(lineWith(out, tag+" "), tag+" "); !ok(s) {
			t.Errorf("%s: %q", tag, s)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

// slowStream is an OpenAI server whose streams send a chunk every 50 ms
// for a minute; anything else is the plain fake's answer.
type slowStream struct{ fake inferencetest.FakeOpenAI }

func (s *slowStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(body), `"stream":true`) {
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		s.fake.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for range 1200 {
		if _, err := fmt.Fprint(w, `data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}`+"\n\n"); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// pluginChildren are the inference plugin processes whose parent is pid.
func pluginChildren(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, d := range ents {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: state ppid ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
		if strings.Contains(exe, "memfd:") || strings.Contains(string(cmdline), "nemoclaw-inference-") {
			out = append(out, p)
		}
	}
	return out
}

// TestInferencePluginKilledMidStream: a sandbox's client is streaming
// from the real vLLM plugin when the plugin is killed with SIGKILL: the
// stream ends with an error event (never [DONE]), and the next request
// is answered by a restarted plugin.
func TestInferencePluginKilledMidStream(t *testing.T) {
	requirePlugins(t, "vllm")
	e := newSupEnv(t)
	base := serveHost(t, &slowStream{})
	dir := writeBlueprint(t, `provider_type: vllm
endpoint: "`+base+`/v1"
model: fake-model
credential_env: FAKE_INFERENCE_KEY
timeout_secs: 30`)
	env := []string{"FAKE_INFERENCE_KEY=" + randomKey(t)}
	if out, errs, code := e.ncEnv(t, env, "blueprint", "apply", dir, "--detach", "--name", "kill", "--", "sleep", "600"); code != 0 {
		t.Fatalf("apply --detach: exit %d: %s%s", code, out, errs)
	}
	sup, _, _ := e.record(t, "kill")

	cmd := e.cmd("sandbox", "exec", "kill", "--", "curl", "-sSN", "--noproxy", "*", "-d",
		`{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "http://inference.local/v1/chat/completions")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 4096)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Wait for a few chunks: the stream is under way.
	var got []string
	deadline := time.After(time.Minute)
	for n := 0; n < 5; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the stream ended before the kill: %q %s", got, stderr.String())
			}
			got = append(got, l)
			if strings.Contains(l, `"tok "`) {
				n++
			}
		case <-deadline:
			t.Fatalf("no chunks in a minute: %q", got)
		}
	}
	plugins := pluginChildren(sup)
	if len(plugins) != 1 {
		t.Fatalf("supervisor %d has %d plugin children %v, want 1", sup, len(plugins), plugins)
	}
	if err := syscall.Kill(plugins[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		got = append(got, l)
	}
	_ = cmd.Wait()
	tailLines := strings.Join(got[max(0, len(got)-4):], "\n")
	t.Logf("stream end after the kill: %s", tailLines)
	if strings.Contains(tailLines, "[DONE]") || !strings.Contains(tailLines, `"error"`) {
		t.Errorf("after the kill the stream ended with %q, want an error event and no [DONE]", tailLines)
	}
	// The next call starts the plugin again.
	var ans string
	for i := 0; i < 20; i++ {
		ans = e.must(t, "sandbox", "exec", "kill", "--", "curl", "-sS", "--noproxy", "*", "-d",
			`{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`, "http://inference.local/v1/chat/completions")
		if strings.Contains(ans, `"content":"hi hi hi "`) {
			break
		}
		time.Sleep(500 * time.Millisecond) // the restart backoff
	}
	if !strings.Contains(ans, `"content":"hi hi hi "`) {
		t.Errorf("the call after the kill: %s", ans)
	}
	if p := pluginChildren(sup); len(p) != 1 || p[0] == plugins[0] {
		t.Errorf("plugin children after the restart: %v (killed %d)", p, plugins[0])
	}
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "kill")
}

// TestInferenceChecksumRefused follows docs/plugins.md as a new plugin
// author: build the echo example into $NEMOCLAW_HOME/plugins, point a
// profile at it. A wrong sha256 in the profile is refused, inside the
// sandbox and in the supervisor's log, naming the mismatch and what to
// do; the right one, or `inference plugins --trust echo`, lets echo
// answer.
func TestInferenceChecksumRefused(t *testing.T) {
	e := newSupEnv(t)
	pdir := filepath.Join(e.home, "plugins")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(pdir, "nemoclaw-inference-echo")
	build := exec.Command("go", "build", "-o", bin, "../plugins/examples/echo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build echo: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	right := hex.EncodeToString(sum[:])
	wrong := strings.Repeat("0", 64)
	profile := func(pin string) string {
		p := "provider_type: custom\nplugin: echo\nendpoint: \"http://127.0.0.1:9/v1\"\nmodel: echo-1"
		if pin != "" {
			p += "\nsha256: \"" + pin + "\""
		}
		return p
	}
	call := []string{"--", "curl", "-sS", "--noproxy", "*", "-d", `{"messages":[{"role":"user","content":"ping"}]}`, "http://inference.local/v1/chat/completions"}

	for _, c := range []struct {
		name, pin string
		trust     bool
		refused   []string
	}{
		{"wrong-sha", wrong, false, []string{"checksum mismatch", right, wrong, "set the profile's sha256"}},
		{"unpinned", "", false, []string{"--trust echo"}},
		{"right-sha", right, false, nil},
		{"trusted", "", true, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.trust {
				e.must(t, "inference", "plugins", "--trust", "echo")
			}
			dir := writeBlueprint(t, profile(c.pin))
			e.must(t, "blueprint", "apply", dir, "--detach", "--name", c.name, "--", "sleep", "600")
			defer e.nc(t, "sandbox", "destroy", "--force", c.name)
			ans := e.must(t, append([]string{"sandbox", "exec", c.name}, call...)...)
			if c.refused == nil {
				if !strings.Contains(ans, `"content":"echo: ping"`) {
					t.Errorf("echo did not answer: %s", ans)
				}
				return
			}
			var er struct{ Error struct{ Message string } }
			if err := json.Unmarshal([]byte(ans), &er); err != nil || er.Error.Message == "" {
				t.Fatalf("refusal is not an OpenAI error: %s", ans)
			}
			t.Logf("refusal: %s", er.Error.Message)
			for _, w := range c.refused {
				if !strings.Contains(er.Error.Message, w) {
					t.Errorf("refusal %q does not name %q", er.Error.Message, w)
				}
			}
			logs := supervisorLog(t, e, c.name)
			if !strings.Contains(logs, "echo") || !strings.Contains(logs, "sha256") {
				t.Errorf("the supervisor log does not say why echo was refused:\n%s", logs)
			}
		})
	}
}

// supervisorLog is the sandbox's supervisor log (whatever directory holds it).
func supervisorLog(t *testing.T, e *supEnv, name string) string {
	t.Helper()
	var all strings.Builder
	filepath.WalkDir(e.home, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "supervisor.log" && strings.Contains(p, name) {
			b, _ := os.ReadFile(p)
			all.Write(b)
		}
		return nil
	})
	return all.String()
}

// TestInferenceAfterStart: a detached sandbox stopped and brought back with
// `sandbox start` (as after a reboot) serves inference.local again through
// the real plugin, with the key read again from start's environment: the
// launch record keeps the routes but never the key.
func TestInferenceAfterStart(t *testing.T) {
	requirePlugins(t, "vllm")
	e := newSupEnv(t)
	fake := &inferencetest.FakeOpenAI{}
	base := serveHost(t, fake)
	key := randomKey(t)
	dir := writeBlueprint(t, `provider_type: vllm
endpoint: "`+base+`/v1"
model: fake-model
credential_env: FAKE_INFERENCE_KEY
timeout_secs: 30`)
	env := []string{"FAKE_INFERENCE_KEY=" + key}
	if out, errs, code := e.ncEnv(t, env, "blueprint", "apply", dir, "--detach", "--name", "inf-start", "--", "sleep", "600"); code != 0 {
		t.Fatalf("apply --detach: exit %d\n%s%s", code, out, errs)
	}
	chat := func() string {
		return e.must(t, "sandbox", "exec", "inf-start", "--", "curl", "-sS", "--noproxy", "*", "-d",
			`{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`, "http://inference.local/v1/chat/completions")
	}
	if got := chat(); !strings.Contains(got, `"choices"`) {
		t.Fatalf("chat before the stop: %s", got)
	}
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "inf-start")
	launch, err := os.ReadFile(filepath.Join(e.home, "sandboxes", "inf-start", "launch.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(launch), key) || !strings.Contains(string(launch), "FAKE_INFERENCE_KEY") {
		t.Fatalf("the launch record holds the key, or not the route:\n%s", launch)
	}
	if out, errs, code := e.ncEnv(t, env, "sandbox", "start", "inf-start"); code != 0 {
		t.Fatalf("start: exit %d\n%s%s", code, out, errs)
	}
	if got := chat(); !strings.Contains(got, `"choices"`) {
		t.Fatalf("chat after start: %s", got)
	}
	auths, _, _ := fake.Received()
	if len(auths) < 2 || auths[len(auths)-1] != "Bearer "+key {
		t.Errorf("the backend got %q after start, want the key", auths)
	}
	// Started without the key: said plainly, and the call is refused
	// with the reason instead of reaching the backend keyless.
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "inf-start")
	_, errs, code := e.nc(t, "sandbox", "start", "inf-start")
	if code != 0 || !strings.Contains(errs, "FAKE_INFERENCE_KEY is not set on the host") {
		t.Fatalf("start without the key: exit %d: %s", code, errs)
	}
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "inf-start")
}
