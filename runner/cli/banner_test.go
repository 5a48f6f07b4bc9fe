package cli

import (
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func TestBannerInferenceLine(t *testing.T) {
	routes := []inference.Route{{Profile: "nvidia", Plugin: "nvidia", Config: sdk.Config{Model: "nemotron"}}, {Profile: "ollama", Plugin: "ollama"}}
	for _, tc := range []struct {
		name string
		ic   *supervisor.InferenceConfig
		want string
	}{
		{"no inference", nil, "none: inference.local answers 503"},
		{"route", &supervisor.InferenceConfig{Profile: "nvidia", Routes: routes, Provider: cliProvider{&cliBackend{}}}, "inference.local -> profile nvidia, plugin nvidia, model nemotron"},
		{"missing key", &supervisor.InferenceConfig{Profile: "nvidia", Routes: routes, MissingCredential: "NVIDIA_API_KEY", Provider: cliProvider{&cliBackend{}}}, "(NVIDIA_API_KEY is not set: calls will be refused)"},
		{"no host", &supervisor.InferenceConfig{Profile: "ollama", Routes: routes, Unavailable: "the inference plugin host did not start: x"}, "model - (unavailable: the inference plugin host did not start: x)"},
	} {
		if got := inferenceLine(tc.ic); !strings.Contains(got, tc.want) {
			t.Errorf("%s: %q lacks %q", tc.name, got, tc.want)
		}
	}
}
