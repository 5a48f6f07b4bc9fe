package cli

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/gpu"
)

// TestGPUCommands runs what a new user on a host without a GPU would: each
// says what it found and chose, none crashes. On a host with a driver the
// inventory is printed instead.
func TestGPUCommands(t *testing.T) {
	_, derr := gpu.Detect(gpu.Config{})
	noDriver := errors.Is(derr, gpu.ErrNoDriver)

	out, errOut, code := run(t, "gpu")
	if code != 0 {
		t.Fatalf("gpu: exit %d: %s", code, errOut)
	}
	if noDriver && !strings.Contains(out, "no NVIDIA driver found") {
		t.Errorf("gpu without a driver: %q", out)
	}
	if !noDriver && !strings.Contains(out, "driver ") {
		t.Errorf("gpu with a driver: %q", out)
	}
	out, _, code = run(t, "gpu", "-o", "json")
	var rep gpuReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Driver == noDriver {
		t.Errorf("gpu -o json: exit %d %q", code, out)
	}
	if _, _, code = run(t, "gpu", "-o", "yaml"); code != 2 {
		t.Errorf("gpu -o yaml: exit %d, want 2", code)
	}

	out, errOut, code = run(t, "blueprint", "plan", "--profile", "auto")
	if code != 0 || !strings.Contains(out, "auto chose") || !strings.Contains(out, "profiles   (what this host can run)") {
		t.Errorf("plan --profile auto: exit %d\n%s\n%s", code, out, errOut)
	}
	if noDriver && !strings.Contains(out, "vllm       local does not fit needs 1 GPU(s) with >= 80 GiB and compute capability >= 8.0; this host has no NVIDIA driver") {
		t.Errorf("plan without a driver does not say why vllm does not fit:\n%s", out)
	}
	out, _, _ = run(t, "doctor")
	if !strings.Contains(out, "nvml") {
		t.Errorf("doctor has no nvml line:\n%s", out)
	}

	if _, errOut, code = run(t, "sandbox", "run", "--gpus", "gpu0", "--", "true"); code != 2 || !strings.Contains(errOut, "want an index") {
		t.Errorf("--gpus gpu0: exit %d %q", code, errOut)
	}
	if noDriver {
		if _, errOut, code = run(t, "sandbox", "run", "--gpus", "1", "--", "true"); code != 1 || !strings.Contains(errOut, "--gpus 1: no NVIDIA driver found") {
			t.Errorf("--gpus 1 without a driver: exit %d %q", code, errOut)
		}
	}
}
