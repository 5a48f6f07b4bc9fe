package onboard

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

func TestDetect(t *testing.T) {
	b, err := blueprint.OpenClaw()
	if err != nil {
		t.Fatal(err)
	}
	up := func(addrs ...string) func(context.Context, string) error {
		return func(_ context.Context, hp string) error {
			for _, a := range addrs {
				if a == hp {
					return nil
				}
			}
			return errors.New("refused")
		}
	}
	for _, tc := range []struct {
		name    string
		profile string
		env     map[string]string
		dial    func(context.Context, string) error
		want    string
		err     string
	}{
		{name: "credential", env: map[string]string{"NVIDIA_API_KEY": "k"}, dial: up(), want: "nvidia"},
		{name: "ollama up", dial: up("127.0.0.1:11434"), want: "ollama"},
		{name: "vllm up", dial: up("127.0.0.1:8000"), want: "vllm"},
		{name: "credential beats a local server", env: map[string]string{"NVIDIA_API_KEY": "k"}, dial: up("127.0.0.1:11434"), want: "nvidia"},
		{name: "asked for", profile: "vllm", dial: up(), want: "vllm"},
		{name: "unknown", profile: "nope", dial: up(), err: `--profile "nope" is not in the blueprint`},
		{name: "nothing", dial: up(), err: "NVIDIA_API_KEY is not set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why, err := Detect(t.Context(), Config{Blueprint: b, Profile: tc.profile,
				Getenv: func(k string) string { return tc.env[k] }, Dial: tc.dial})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q (%v), want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || why == "" {
				t.Fatalf("got %q %q %v, want %q", got, why, err, tc.want)
			}
		})
	}
}

// TestWriteConfig: the config points at inference.local with a
// placeholder key, keeps its gateway token across re-runs, reports no
// change when nothing changed, and refuses a .openclaw the agent replaced
// with a link.
func TestWriteConfig(t *testing.T) {
	ws := filepath.Join(t.TempDir(), "workspace")
	path, changed, err := WriteConfig(ws, "m1")
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	var d Document
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	p := d.Models.Providers[ProviderName]
	if p.BaseURL != InferenceURL || p.APIKey != PlaceholderKey || p.API != "openai-completions" || d.Agents.Defaults.Model.Primary != ProviderName+"/m1" || len(d.Gateway.Auth.Token) != 48 {
		t.Fatalf("config %+v", d)
	}
	if _, changed, err := WriteConfig(ws, "m1"); err != nil || changed {
		t.Errorf("second write: changed %v, %v", changed, err)
	}
	if _, changed, err := WriteConfig(ws, "m2"); err != nil || !changed {
		t.Errorf("new model: changed %v, %v", changed, err)
	}
	var d2 Document
	b, _ = os.ReadFile(path)
	_ = json.Unmarshal(b, &d2)
	if d2.Gateway.Auth.Token != d.Gateway.Auth.Token || d2.Agents.Defaults.Model.Primary != ProviderName+"/m2" {
		t.Errorf("token not kept or model not changed: %+v", d2)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	// The agent replaced .openclaw with a link to somewhere else.
	ws2 := filepath.Join(t.TempDir(), "workspace")
	elsewhere := t.TempDir()
	os.MkdirAll(ws2, 0o755)
	if err := os.Symlink(elsewhere, filepath.Join(ws2, ConfigDir)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := WriteConfig(ws2, "m1"); err == nil {
		t.Errorf("wrote through a symlinked %s", ConfigDir)
	}
	if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
		t.Errorf("files written through the link: %v", ents)
	}
	// A linked config file is not followed either.
	ws3 := filepath.Join(t.TempDir(), "workspace")
	os.MkdirAll(filepath.Join(ws3, ConfigDir), 0o755)
	target := filepath.Join(t.TempDir(), "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	os.Symlink(target, filepath.Join(ws3, ConfigDir, ConfigFile))
	if _, _, err := WriteConfig(ws3, "m1"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("the link's target was written: %q", b)
	}
}

func TestLocalEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:11434":              "127.0.0.1:11434",
		"http://localhost:8000/v1":            "localhost:8000",
		"https://[::1]/v1":                    "[::1]:443",
		"https://integrate.api.nvidia.com/v1": "",
		"http://10.0.0.1:8000":                "",
		"ftp://127.0.0.1":                     "",
		"":                                    "",
	} {
		if got, ok := localEndpoint(in); got != want || ok != (want != "") {
			t.Errorf("localEndpoint(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
}
