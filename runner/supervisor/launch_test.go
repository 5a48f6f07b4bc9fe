package supervisor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// TestLaunchRecordKeepsRoutesNotKeys: what `sandbox start` needs comes back
// from the launch record (the routes, the CDI directories), and the record
// never holds a route's key.
func TestLaunchRecordKeepsRoutesNotKeys(t *testing.T) {
	const key = "nvapi-launch-secret-42"
	cfg := &Config{
		GPU: GPUConfig{Passthrough: gpu.PassthroughConfig{CDIDirs: []string{"/opt/cdi"}}},
		Inference: &InferenceConfig{Profile: "main", Routes: []inference.Route{{
			Profile: "main", Plugin: "nvidia", CredentialEnv: "NVIDIA_API_KEY",
			Config: sdk.Config{Endpoint: "https://integrate.api.nvidia.com/v1", Model: "m", Credential: key},
		}}},
	}
	l := launchOf(cfg, nil)
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), key) {
		t.Fatalf("the launch record holds the key: %s", b)
	}
	if cfg.Inference.Routes[0].Config.Credential != key {
		t.Fatal("writing the record took the key from the running route")
	}
	var back Launch
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.CDIDirs) != 1 || back.CDIDirs[0] != "/opt/cdi" {
		t.Errorf("CDI directories: %v", back.CDIDirs)
	}
	if back.Inference == nil || back.Inference.Profile != "main" || len(back.Inference.Routes) != 1 {
		t.Fatalf("routes: %+v", back.Inference)
	}
	for _, tc := range []struct {
		env     map[string]string
		want    string
		missing string
	}{
		{map[string]string{"NVIDIA_API_KEY": key}, key, ""},
		{map[string]string{}, "", "NVIDIA_API_KEY"},
	} {
		r, missing := back.Inference.Routes[0].Rekeyed(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if r.Config.Credential != tc.want || missing != tc.missing {
			t.Errorf("rekeyed with %v: credential %q, missing %q", tc.env, r.Config.Credential, missing)
		}
	}
}
