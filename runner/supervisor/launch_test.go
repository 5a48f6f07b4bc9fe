package supervisor

import (
	"context"
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

// TestNewInferenceConfig: keyed and unkeyed routes are keyed alike from
// the launcher's environment; only the active route's missing key counts.
func TestNewInferenceConfig(t *testing.T) {
	routes := []inference.Route{
		{Profile: "cloud", Plugin: "nvidia", CredentialEnv: "CLOUD_KEY"},
		{Profile: "local", Plugin: "ollama", CredentialEnv: "LOCAL_KEY", CredentialDefault: "dummy"},
	}
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	for _, tc := range []struct {
		name, profile string
		env           map[string]string
		missing       string
		creds         [2]string
	}{
		{"key set", "cloud", map[string]string{"CLOUD_KEY": "k1"}, "", [2]string{"k1", "dummy"}},
		{"active key unset", "cloud", nil, "CLOUD_KEY", [2]string{"", "dummy"}},
		{"other profile's key unset", "local", nil, "", [2]string{"", "dummy"}},
		{"empty counts as unset", "cloud", map[string]string{"CLOUD_KEY": ""}, "CLOUD_KEY", [2]string{"", "dummy"}},
	} {
		ic := NewInferenceConfig(routes, tc.profile, env(tc.env))
		if ic.MissingCredential != tc.missing || ic.Routes[0].Config.Credential != tc.creds[0] || ic.Routes[1].Config.Credential != tc.creds[1] {
			t.Errorf("%s: missing %q, creds %q %q", tc.name, ic.MissingCredential, ic.Routes[0].Config.Credential, ic.Routes[1].Config.Credential)
		}
		if err := ic.CheckActive(context.Background()); err != nil {
			t.Errorf("%s: no provider, yet CheckActive = %v", tc.name, err)
		}
	}
	if NewInferenceConfig(nil, "x", env(nil)) != nil {
		t.Error("no routes: want nil")
	}
}
