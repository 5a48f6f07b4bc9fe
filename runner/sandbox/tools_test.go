package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestToolsReadOnly: Config.Tools shows at ToolsPath, its bin is on PATH,
// and the agent can run but not change it, even where the host tree is
// under the hidden $NEMOCLAW_HOME.
func TestToolsReadOnly(t *testing.T) {
	needKernel(t)
	home := t.TempDir()
	tools := filepath.Join(home, "tools", "sha256-test")
	if err := os.MkdirAll(filepath.Join(tools, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tools, "bin", "hello"), []byte("#!/bin/sh\necho hello from tools\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := testPolicy()
	pol.Filesystem.ReadOnly = append(pol.Filesystem.ReadOnly, ToolsPath)
	code, out, errs := run(t, Config{Policy: pol, Home: home, Tools: tools, Command: []string{"/bin/sh", "-c",
		`hello; touch ` + ToolsPath + `/bin/x 2>/dev/null && echo WROTE; rm ` + ToolsPath + `/bin/hello 2>/dev/null && echo REMOVED; ls ` + home + ` 2>/dev/null | grep -c . || true`}})
	if code != 0 || !strings.HasPrefix(out, "hello from tools\n") || strings.Contains(out, "WROTE") || strings.Contains(out, "REMOVED") {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errs)
	}
	if strings.TrimSpace(strings.TrimPrefix(out, "hello from tools\n")) != "0" {
		t.Errorf("$NEMOCLAW_HOME shows in the sandbox next to the tools: %q", out)
	}
	if _, err := Start(t.Context(), Config{Policy: pol, Home: home, Tools: "relative/dir", Command: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "tools") {
		t.Errorf("relative tools dir: %v, want a tools error", err)
	}
}
