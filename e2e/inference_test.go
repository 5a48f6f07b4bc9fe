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
		`echo "PROXY $(curl -sS http://inference.local/v1/models)"`,
		`echo "PROXYTLS $(curl -sS https://inference.local/v1/models)"`,
		`echo "DIRECT $(curl -sS --noproxy '*' http://inference.local/v1/models)"`,
		`echo "DIRECTTLS $(curl -sS --noproxy '*' https://inference.local/v1/models)"`,
		`echo "CHAT $(curl -sS --noproxy '*' -H 'Authorization: Bearer sk-agent' -d '{"messages":[{"role":"user","content":"hi"}]}' https://inference.local/v1/chat/completions)"`,
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
