package supervisor

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// GPUConfig says where the host's GPUs and driver files are; the zero
// value is the real host (tests pass go-nvml's mocks and temp dirs).
type GPUConfig struct {
	// Lib is NVML (nil: the real library).
	Lib nvml.Interface
	// Passthrough locates the CDI specs, /dev, /proc and the libraries.
	Passthrough gpu.PassthroughConfig
}

// passGPUs selects cfg.GPUs, records the claim in the sandbox's directory
// (released when the supervisor ends) and adds the passthrough to sc.
func (s *Supervisor) passGPUs(sc *sandbox.Config) error {
	cfg := s.cfg
	if cfg.GPUs.Empty() {
		return nil
	}
	inv, err := gpu.Detect(gpu.Config{Lib: cfg.GPU.Lib, Logger: s.log})
	if err != nil {
		return fmt.Errorf("sandbox: --gpus %s: %w", cfg.GPUs, err)
	}
	pid := os.Getpid()
	start, _ := procStart(pid)
	claims := &gpu.Claims{Root: filepath.Join(cfg.Home, "sandboxes"), Alive: ProcessAlive}
	sel, release, err := claims.Claim(cfg.Name, pid, start, inv, cfg.GPUs)
	if err != nil {
		return &RefusedError{fmt.Errorf("sandbox: %w", err)}
	}
	pc := cfg.GPU.Passthrough
	pc.Logger = s.log
	pt, err := gpu.PlanPassthrough(pc, inv, sel, cfg.GPUs.All)
	if err != nil {
		release()
		return fmt.Errorf("sandbox: %w", err)
	}
	s.gpuRelease = release
	sc.Devices = Devices(pt)
	if pt.Params != nil {
		sc.Files = append(sc.Files, sandbox.File{Path: "/proc/driver/nvidia/params", Data: pt.Params})
	}
	for _, n := range pt.Notes {
		s.log.Info("gpu: " + n)
	}
	for _, x := range sel {
		s.log.Info("gpu passed through", "index", x.Index, "uuid", x.UUID, "name", x.Name, "source", pt.Source)
	}
	return nil
}

// Devices turns a passthrough plan into the sandbox's terms: with /proc
// write (CUDA names its threads there) and /proc/driver/nvidia readable.
func Devices(pt *gpu.Passthrough) *sandbox.Devices {
	if pt == nil {
		return nil
	}
	d := &sandbox.Devices{Env: pt.Env, LibraryPath: pt.LibraryPath, ProcWrite: true,
		ProcRead: []string{"/proc/driver/nvidia", "/proc/driver/nvidia-uvm"}}
	for _, n := range pt.Nodes {
		d.Nodes = append(d.Nodes, sandbox.DeviceNode{Path: n.Path, HostPath: n.HostPath})
	}
	for _, m := range pt.Mounts {
		d.Files = append(d.Files, sandbox.DeviceNode{Path: m.Path, HostPath: m.HostPath})
	}
	for _, l := range pt.Symlinks {
		d.Links = append(d.Links, sandbox.DeviceLink{Path: l.Path, Target: l.Target})
	}
	return d
}
