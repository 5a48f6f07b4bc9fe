// Package gpu finds NVIDIA GPUs through NVML (go-nvml) for plan, doctor and,
// later, device passthrough. NVML is loaded at run time: a host without the
// driver gets a clean ErrNoDriver, never a crash.
package gpu

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoDriver means libnvidia-ml could not be loaded: no NVIDIA driver.
var ErrNoDriver = errors.New("no NVIDIA driver: libnvidia-ml.so.1 was not found")

// Config configures Detect.
type Config struct {
	// Logger receives debug notes; nil discards them.
	Logger *slog.Logger
	// Lib is the NVML implementation; nil means the real library. Tests pass
	// go-nvml's mock servers (dgxa100, dgxh100, ...).
	Lib nvml.Interface
}

// Device is one GPU.
type Device struct {
	Index             int     `json:"index"`
	Name              string  `json:"name"`
	UUID              string  `json:"uuid"`
	MemoryGiB         float64 `json:"memory_gib"`
	ComputeCapability string  `json:"compute_capability"`
	MIGEnabled        bool    `json:"mig_enabled"`
}

// Inventory is what NVML reports about the host.
type Inventory struct {
	DriverVersion string   `json:"driver_version"`
	CUDAVersion   string   `json:"cuda_version"`
	Devices       []Device `json:"devices"`
}

// Detect initialises NVML and lists the GPUs. Every NVML call is gated on a
// successful Init, as calling NVML without one aborts the process.
func Detect(cfg Config) (*Inventory, error) {
	lib := cfg.Lib
	if lib == nil {
		lib = nvml.New()
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED {
			return nil, ErrNoDriver
		}
		return nil, fmt.Errorf("nvml init: %s", lib.ErrorString(ret))
	}
	defer lib.Shutdown()
	inv := &Inventory{}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		inv.CUDAVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, fmt.Errorf("nvml device count: %s", lib.ErrorString(ret))
	}
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("nvml device %d: %s", i, lib.ErrorString(ret))
		}
		dev := Device{Index: i}
		if s, ret := d.GetName(); ret == nvml.SUCCESS {
			dev.Name = s
		}
		if s, ret := d.GetUUID(); ret == nvml.SUCCESS {
			dev.UUID = s
		}
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			dev.MemoryGiB = float64(m.Total) / (1 << 30)
		}
		if major, minor, ret := d.GetCudaComputeCapability(); ret == nvml.SUCCESS {
			dev.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
		}
		if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS {
			dev.MIGEnabled = cur == nvml.DEVICE_MIG_ENABLE
		}
		if cfg.Logger != nil {
			cfg.Logger.Debug("gpu found", "index", i, "name", dev.Name, "uuid", dev.UUID)
		}
		inv.Devices = append(inv.Devices, dev)
	}
	return inv, nil
}
