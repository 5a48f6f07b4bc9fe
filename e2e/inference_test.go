package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestApplyServesInferenceLocal: `blueprint apply` gives the sandbox its
// blueprint's routes: inside it, inference.local answers curl and Python's
// urllib through the proxy and directly (NO_PROXY=*), GET /v1/models lists
// the profile's model from the router itself, and a chat call gets an
// OpenAI-shaped answer or error (which one depends on the plugins this
// build has), never a connection error.
func TestApplyServesInferenceLocal(t *testing.T) {
	home := t.TempDir()
	script := strings.Join([]string{
		`printf '%s\n' "PROXY $(curl -sS http://inference.local/v1/models)"`,
		`printf '%s\n' "PROXYTLS $(curl -sS https://inference.local/v1/models)"`,
		`printf '%s\n' "DIRECT $(curl -sS --noproxy '*' http://inference.local/v1/models)"`,
		`printf '%s\n' "DIRECTTLS $(curl -sS --noproxy '*' https://inference.local/v1/models)"`,
		`printf '%s\n' "CHAT $(curl -sS --noproxy '*' -H 'Authorization: Bearer sk-agent' -d '{"messages":[{"role":"user","content":"hi"}]}' https://inference.local/v1/chat/completions)"`,
		`NO_PROXY='*' python3 -c 'import urllib.request; print("PY", urllib.request.urlopen("https://inference.local/v1/models").read().decode())'`,
	}, "\n")
	out, errOut, code := runNemoclaw(t, home, "blueprint", "apply", "--no-tty", "--profile", "ollama", "--", "/bin/sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, tag := range []string{"PROXY", "PROXYTLS", "DIRECT", "DIRECTTLS", "PY"} {
		line := lineWith(out, tag+" ")
		var list struct {
			Data []struct{ ID string } `json:"data"`
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, tag+" ")), &list); err != nil || len(list.Data) == 0 || list.Data[0].ID != "llama3.2" {
			t.Errorf("%s: models %q (%v)", tag, line, err)
		}
	}
	chat := strings.TrimPrefix(lineWith(out, "CHAT "), "CHAT ")
	var ans struct {
		Choices []json.RawMessage         `json:"choices"`
		Error   *struct{ Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(chat), &ans); err != nil || (len(ans.Choices) == 0 && (ans.Error == nil || ans.Error.Message == "")) {
		t.Errorf("chat: %q is neither an answer nor an OpenAI error", chat)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func lineWith(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestInferenceSetLive: `nemoclaw inference set` switches a detached
// sandbox's route while it runs, and GET /v1/models inside it follows; a
// second sandbox on another profile is untouched; an unknown profile is
// refused with the sandbox's profiles named.
func TestInferenceSetLive(t *testing.T) {
	e := newSupEnv(t)
	for _, s := range []struct{ name, profile string }{{"inf-a", "ollama"}, {"inf-b", "vllm"}} {
		if out := e.must(t, "blueprint", "apply", "--detach", "--name", s.name, "--profile", s.profile, "--", "sleep", "600"); out != s.name+"\n" {
			t.Fatalf("--detach printed %q", out)
		}
	}
	models := func(name string) string {
		return e.must(t, "sandbox", "exec", name, "--", "curl", "-sS", "--noproxy", "*", "http://inference.local/v1/models")
	}
	if got := models("inf-a"); !strings.Contains(got, `"id":"llama3.2"`) {
		t.Fatalf("inf-a before the switch: %s", got)
	}
	if out := e.must(t, "inference", "set", "inf-a", "--profile", "nvidia"); !strings.Contains(out, "profile nvidia") {
		t.Fatalf("inference set: %q", out)
	}
	if got := models("inf-a"); !strings.Contains(got, `"id":"nvidia/nemotron-3-super-120b-a12b"`) {
		t.Fatalf("inf-a after the switch: %s", got)
	}
	if got := models("inf-b"); !strings.Contains(got, `"id":"nvidia/nemotron-3-nano-30b-a3b"`) {
		t.Fatalf("inf-b changed with inf-a: %s", got)
	}
	_, stderr, code := e.nc(t, "inference", "set", "inf-a", "--profile", "nope")
	if code == 0 || !strings.Contains(stderr, "no such profile; its profiles: nvidia, ollama, vllm") {
		t.Fatalf("unknown profile: exit %d: %s", code, stderr)
	}
	// The switch survives a stop and start: the launch record keeps the
	// route in force.
	e.must(t, "sandbox", "stop", "--stop-timeout", "0s", "inf-a")
	e.must(t, "sandbox", "start", "inf-a")
	if got := models("inf-a"); !strings.Contains(got, `"id":"nvidia/nemotron-3-super-120b-a12b"`) {
		t.Fatalf("inf-a after stop and start: %s", got)
	}
	for _, n := range []string{"inf-a", "inf-b"} {
		e.must(t, "sandbox", "stop", "--stop-timeout", "0s", n)
	}
}
