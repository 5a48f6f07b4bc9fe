package inference

import (
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

func TestRoutesFromBlueprint(t *testing.T) {
	b, err := blueprint.Default()
	if err != nil {
		t.Fatal(err)
	}
	b.Components.Inference.Profiles["ollama"].Aliases = map[string]string{"gpt-4o": "", "big": "llama3.3:70b"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		profile string
		plugin  string
		cred    string
		missing string
	}{
		{"key from the host env", map[string]string{"NVIDIA_API_KEY": "nvapi-1"}, "nvidia", "nvidia", "nvapi-1", ""},
		{"key missing", nil, "nvidia", "nvidia", "", "NVIDIA_API_KEY"},
		{"default credential", nil, "vllm", "vllm", "dummy", ""},
		{"keyless", nil, "ollama", "ollama", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			look := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			var r *Route
			routes := Routes(b, look)
			for i := range routes {
				if routes[i].Profile == tc.profile {
					r = &routes[i]
				}
			}
			if len(routes) != 3 || r == nil {
				t.Fatalf("routes %+v", routes)
			}
			if r.Plugin != tc.plugin || r.Config.Credential != tc.cred {
				t.Fatalf("route %+v", r)
			}
			_, p, _ := b.Profile(tc.profile)
			if got := MissingCredential(p, look); got != tc.missing {
				t.Fatalf("missing %q, want %q", got, tc.missing)
			}
			if tc.profile == "ollama" && (r.Aliases["big"] != "llama3.3:70b" || r.Config.TimeoutSecs != 300) {
				t.Fatalf("aliases or timeout not carried: %+v", r)
			}
		})
	}
}
