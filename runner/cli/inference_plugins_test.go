package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInferencePlugins lists the example plugin untrusted, trusts it, and
// lists it again with what it says of itself.
func TestInferencePlugins(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nemoclaw-inference-echo")
	if b, err := exec.Command("go", "build", "-o", bin, "../../plugins/examples/echo").CombinedOutput(); err != nil {
		t.Fatalf("go build echo: %v\n%s", err, b)
	}
	home := t.TempDir()
	out, _, code := runHome(t, home, "inference", "plugins", "--plugin-dir", dir)
	if code != 0 || !strings.Contains(out, "echo") || !strings.Contains(out, "no") || !strings.Contains(out, "--trust echo") {
		t.Fatalf("untrusted listing (exit %d):\n%s", code, out)
	}
	_, errs, code := runHome(t, home, "inference", "plugins", "--plugin-dir", dir, "--trust", "echo")
	if code != 0 || !strings.Contains(errs, "trusted echo: sha256 ") {
		t.Fatalf("--trust echo (exit %d): %s", code, errs)
	}
	out, _, code = runHome(t, home, "inference", "plugins", "--plugin-dir", dir, "-o", "json")
	var rows []pluginListing
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil {
		t.Fatalf("json listing (exit %d, %v):\n%s", code, err, out)
	}
	if len(rows) != 1 || !rows[0].Trusted || rows[0].Version != "1.0.0" || strings.Join(rows[0].Capabilities, ",") != "chat" || len(rows[0].SHA256) != 64 {
		t.Fatalf("rows = %+v", rows)
	}
	_, errs, code = runHome(t, home, "inference", "plugins", "--plugin-dir", dir, "--trust", "nope")
	if code != ExitRefused || !strings.Contains(errs, "no nemoclaw-inference-nope") {
		t.Fatalf("--trust nope (exit %d): %s", code, errs)
	}
}
