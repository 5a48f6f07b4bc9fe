// Package gpu finds NVIDIA GPUs through NVML (go-nvml) and plans how the
// chosen ones reach a sandbox: the inventory (Detect), the choice of devices
// (Select, with Claims so that a device is not handed to two running
// sandboxes), what a profile needs (Fit, Choose) and the passthrough itself
// (PlanPassthrough: device nodes, driver files, environment and the effect
// of the NVIDIA Container Toolkit's hooks, from its CDI spec when there is
// one, else from NVML and /dev).
//
// NVML is loaded at run time: a host without the driver gets ErrNoDriver,
// never a crash, and no NVML call is made unless Init succeeded (go-nvml
// aborts the process otherwise). Everything above NVML takes an
// nvml.Interface, so go-nvml's mock servers stand in for a GPU in tests.
package gpu

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// ErrNoDriver means the NVIDIA driver is not there: libnvidia-ml.so.1 could
// not be loaded, or the kernel module is not loaded.
var ErrNoDriver = errors.New("no NVIDIA driver found (libnvidia-ml.so.1 could not be loaded)")

// Config configures Detect.
type Config struct {
	// Logger receives debug notes; nil discards them.
	Logger *slog.Logger
	// Lib is the NVML implementation; nil means the real library. Tests pass
	// go-nvml's mock servers (dgxa100, dgxh100, ...).
	Lib nvml.Interface
}

// GiB is 2^30 bytes.
const GiB = 1 << 30

// Device is one physical GPU.
type Device struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	UUID  string `json:"uuid"`
	// Minor is the N of /dev/nvidiaN (-1 when NVML did not say).
	Minor            int    `json:"minor"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	MemoryFreeBytes  uint64 `json:"memory_free_bytes"`
	// ComputeCapability is CUDA's "major.minor", e.g. "9.0".
	ComputeCapability string `json:"compute_capability"`
	// MIGEnabled is the current MIG mode; MIGDevices its instances.
	MIGEnabled bool        `json:"mig_enabled"`
	MIGDevices []MIGDevice `json:"mig_devices,omitempty"`
}

// MIGDevice is one MIG instance of a MIG-enabled GPU.
type MIGDevice struct {
	// Index is the instance's index on its parent (NVML's MIG index).
	Index            int    `json:"index"`
	UUID             string `json:"uuid"`
	Name             string `json:"name,omitempty"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes"`
	// GPUInstance and ComputeInstance are its ids: they name its
	// capability files under /proc/driver/nvidia/capabilities.
	GPUInstance     int `json:"gpu_instance"`
	ComputeInstance int `json:"compute_instance"`
}

// MemoryGiB is the device's total memory in GiB.
func (d Device) MemoryGiB() float64 { return float64(d.MemoryTotalBytes) / GiB }

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
		// The library is loaded (only its Init failed), so its
		// ErrorString may be called.
		return nil, fmt.Errorf("nvml init: %s", lib.ErrorString(ret))
	}
	defer lib.Shutdown()
	errf := func(what string, ret nvml.Return) error {
		return fmt.Errorf("nvml %s: %s", what, lib.ErrorString(ret))
	}
	inv := &Inventory{}
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
		inv.CUDAVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, errf("device count", ret)
	}
	for i := 0; i < n; i++ {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, errf(fmt.Sprintf("device %d", i), ret)
		}
		dev := Device{Index: i, Minor: -1}
		if s, ret := d.GetName(); ret == nvml.SUCCESS {
			dev.Name = s
		}
		if s, ret := d.GetUUID(); ret != nvml.SUCCESS {
			// The UUID is what selection and claims are keyed on.
			return nil, errf(fmt.Sprintf("device %d uuid", i), ret)
		} else {
			dev.UUID = s
		}
		if m, ret := d.GetMinorNumber(); ret == nvml.SUCCESS {
			dev.Minor = m
		}
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			dev.MemoryTotalBytes, dev.MemoryFreeBytes = m.Total, m.Free
		}
		if major, minor, ret := d.GetCudaComputeCapability(); ret == nvml.SUCCESS {
			dev.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
		}
		if cur, _, ret := d.GetMigMode(); ret == nvml.SUCCESS && cur == nvml.DEVICE_MIG_ENABLE {
			dev.MIGEnabled = true
			dev.MIGDevices = migDevices(d)
		}
		if cfg.Logger != nil {
			cfg.Logger.Debug("gpu found", "index", i, "name", dev.Name, "uuid", dev.UUID, "mig", len(dev.MIGDevices))
		}
		inv.Devices = append(inv.Devices, dev)
	}
	return inv, nil
}

// migDevices lists a MIG-enabled GPU's instances; the slots NVML reports
// empty (ERROR_NOT_FOUND) are skipped.
func migDevices(d nvml.Device) []MIGDevice {
	max, ret := d.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	var out []MIGDevice
	for j := 0; j < max; j++ {
		m, ret := d.GetMigDeviceHandleByIndex(j)
		if ret != nvml.SUCCESS {
			continue
		}
		md := MIGDevice{Index: j, GPUInstance: -1, ComputeInstance: -1}
		if s, ret := m.GetUUID(); ret == nvml.SUCCESS {
			md.UUID = s
		} else {
			continue
		}
		if s, ret := m.GetName(); ret == nvml.SUCCESS {
			md.Name = s
		}
		if mem, ret := m.GetMemoryInfo(); ret == nvml.SUCCESS {
			md.MemoryTotalBytes = mem.Total
		}
		if v, ret := m.GetGpuInstanceId(); ret == nvml.SUCCESS {
			md.GPUInstance = v
		}
		if v, ret := m.GetComputeInstanceId(); ret == nvml.SUCCESS {
			md.ComputeInstance = v
		}
		out = append(out, md)
	}
	return out
}
