package state

import (
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
)

// TestPlanProfileAuto: the embedded blueprint's vllm profile needs an 80 GiB
// GPU and ollama an 8 GiB one; auto takes the biggest that fits, and the
// cloud default without a GPU.
func TestPlanProfileAuto(t *testing.T) {
	a100, _ := gpu.Detect(gpu.Config{Lib: dgxa100.New()})
	h100, _ := gpu.Detect(gpu.Config{Lib: dgxh100.New()})
	tests := []struct {
		name   string
		inv    *gpu.Inventory
		err    error
		want   string
		why    string
		unfits []string
	}{
		{"h100 serves vllm", h100, nil, "vllm", "local profile vllm fits", nil},
		{"a100 40GB serves ollama", a100, nil, "ollama", "local profile ollama fits", []string{"vllm"}},
		{"no driver: cloud", nil, gpu.ErrNoDriver, "nvidia", "default cloud profile nvidia", []string{"ollama", "vllm"}},
	}
	b, err := blueprint.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		p, err := MakePlan(b, PlanOptions{Profile: AutoProfile, Home: t.TempDir(), GPUs: tt.inv, GPUErr: tt.err, Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if p.Inference == nil || p.Inference.Profile != tt.want || !strings.Contains(p.AutoWhy, tt.why) {
			t.Fatalf("%s: chose %+v (%s), want %s", tt.name, p.Inference, p.AutoWhy, tt.want)
		}
		for _, pp := range p.Profiles {
			wantFit := true
			for _, u := range tt.unfits {
				wantFit = wantFit && pp.Name != u
			}
			if pp.Fits != wantFit || pp.Chosen != (pp.Name == tt.want) || pp.Why == "" {
				t.Errorf("%s: profile %+v", tt.name, pp)
			}
		}
	}
	// A blueprint whose GPUs are required refuses without them.
	b.Components.GPU = &blueprint.GPU{Count: 1, Required: true}
	defer func() { b.Components.GPU = nil }()
	p, err := MakePlan(b, PlanOptions{Home: t.TempDir(), GPUErr: gpu.ErrNoDriver})
	if err != nil || len(p.Refusals) != 1 || !strings.Contains(p.Refusals[0], "components.gpu.required") {
		t.Fatalf("required gpu: %v %v", p.Refusals, err)
	}
}
