package gpu

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// The UUIDs the testdata CDI specs name.
func gpuUUID(i int) string { return fmt.Sprintf("GPU-a3c0f2a4-1111-4e2b-9f6e-%012d", i) }
func migUUID(i int) string { return fmt.Sprintf("MIG-0b6e3a54-2222-5c3f-8a7d-%012d", i) }

// fixUUIDs gives a mock server's devices the testdata's UUIDs (the mocks
// make random ones) and half their memory free.
func fixUUIDs(s *server.Server) *server.Server {
	for i, d := range s.Devices {
		dev := d.(*server.Device)
		dev.UUID = gpuUUID(i)
		dev.MemoryInfo.Free = dev.MemoryInfo.Total / 2
	}
	return s
}

// migHost is two A100s, the first in MIG mode with two instances (a
// 3g.20gb and a 1g.5gb), the capability ids the mig testdata spec uses.
func migHost() *server.Server {
	s := fixUUIDs(dgxa100.NewWithGPUs(gpus.A100_SXM4_40GB, gpus.A100_SXM4_40GB))
	d := s.Devices[0].(*server.Device)
	d.MigMode = nvml.DEVICE_MIG_ENABLE
	migs := []*mock.Device{migMock(0, "3g.20gb", 20, 1, 0), migMock(1, "1g.5gb", 5, 2, 0)}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(i int) (nvml.Device, nvml.Return) {
		if i < len(migs) {
			return migs[i], nvml.SUCCESS
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	return s
}

func migMock(i int, name string, gib uint64, gi, ci int) *mock.Device {
	return &mock.Device{
		GetUUIDFunc:              func() (string, nvml.Return) { return migUUID(i), nvml.SUCCESS },
		GetNameFunc:              func() (string, nvml.Return) { return "MIG " + name, nvml.SUCCESS },
		GetMemoryInfoFunc:        func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: gib * GiB}, nvml.SUCCESS },
		GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return gi, nvml.SUCCESS },
		GetComputeInstanceIdFunc: func() (int, nvml.Return) { return ci, nvml.SUCCESS },
	}
}

// hosts are the mock machines every table runs against.
func hosts() map[string]nvml.Interface {
	return map[string]nvml.Interface{
		"a100":  fixUUIDs(dgxa100.New()),
		"h100":  fixUUIDs(dgxh100.New()),
		"mig":   migHost(),
		"mixed": fixUUIDs(dgxa100.NewWithGPUs(gpus.A100_SXM4_40GB, gpus.H100_SXM5_80GB)),
		"none":  dgxa100.NewWithGPUs(),
	}
}

func detect(t *testing.T, host string) *Inventory {
	t.Helper()
	inv, err := Detect(Config{Lib: hosts()[host]})
	if err != nil {
		t.Fatalf("detect %s: %v", host, err)
	}
	return inv
}

func TestDetect(t *testing.T) {
	tests := []struct {
		host    string
		n       int
		cc      []string
		minGiB  []float64
		migs    int
		names   []string
		version string
	}{
		{"a100", 8, []string{"8.0"}, []float64{39}, 0, []string{"A100"}, "550.54.15"},
		{"h100", 8, []string{"9.0"}, []float64{79}, 0, []string{"H100"}, ""},
		{"mig", 2, []string{"8.0", "8.0"}, []float64{39, 39}, 2, []string{"A100", "A100"}, "550.54.15"},
		{"mixed", 2, []string{"8.0", "9.0"}, []float64{39, 79}, 0, []string{"A100", "H100"}, "550.54.15"},
		{"none", 0, nil, nil, 0, nil, "550.54.15"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			inv := detect(t, tt.host)
			if len(inv.Devices) != tt.n {
				t.Fatalf("devices = %d, want %d", len(inv.Devices), tt.n)
			}
			if inv.DriverVersion == "" || inv.CUDAVersion == "" {
				t.Errorf("driver %q cuda %q: want both", inv.DriverVersion, inv.CUDAVersion)
			}
			if tt.version != "" && inv.DriverVersion != tt.version {
				t.Errorf("driver = %q, want %q", inv.DriverVersion, tt.version)
			}
			migs := 0
			for i, d := range inv.Devices {
				j := min(i, len(tt.cc)-1)
				if d.Index != i || d.Minor != i || d.UUID != gpuUUID(i) {
					t.Errorf("device %d: index %d minor %d uuid %s", i, d.Index, d.Minor, d.UUID)
				}
				if d.ComputeCapability != tt.cc[j] {
					t.Errorf("device %d: cc %s, want %s", i, d.ComputeCapability, tt.cc[j])
				}
				if d.MemoryGiB() < tt.minGiB[j] || d.MemoryFreeBytes == 0 || d.MemoryFreeBytes > d.MemoryTotalBytes {
					t.Errorf("device %d: %.1f GiB total, %d free", i, d.MemoryGiB(), d.MemoryFreeBytes)
				}
				if !strings.Contains(d.Name, tt.names[j]) {
					t.Errorf("device %d: name %q, want %s", i, d.Name, tt.names[j])
				}
				migs += len(d.MIGDevices)
				if d.MIGEnabled != (len(d.MIGDevices) > 0) {
					t.Errorf("device %d: MIG mode %v with %d MIG devices", i, d.MIGEnabled, len(d.MIGDevices))
				}
			}
			if migs != tt.migs {
				t.Fatalf("MIG devices = %d, want %d", migs, tt.migs)
			}
			if tt.migs > 0 {
				m := inv.Devices[0].MIGDevices[1]
				if m.UUID != migUUID(1) || m.GPUInstance != 2 || m.ComputeInstance != 0 || m.MemoryTotalBytes != 5*GiB {
					t.Errorf("MIG device 1 = %+v", m)
				}
			}
		})
	}
}

func TestDetectNoDriver(t *testing.T) {
	for _, ret := range []nvml.Return{nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED} {
		lib := &mock.Interface{InitFunc: func() nvml.Return { return ret }}
		_, err := Detect(Config{Lib: lib})
		if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "no NVIDIA driver found") {
			t.Fatalf("ret %d: err = %v, want ErrNoDriver", ret, err)
		}
	}
}

// TestDetectRealLibraryAbsent runs the real loader: on a host without the
// driver it must say so, not crash; on one with it, list the GPUs.
func TestDetectRealLibraryAbsent(t *testing.T) {
	inv, err := Detect(Config{})
	if err != nil && !errors.Is(err, ErrNoDriver) {
		t.Logf("NVML present but failing: %v", err)
		return
	}
	if err == nil && inv.DriverVersion == "" {
		t.Fatal("the real NVML reported no driver version")
	}
}

func TestDetectInitFailureStopsEarly(t *testing.T) {
	// No other NVML call may happen after a failed Init (it would abort).
	lib := &mock.Interface{
		InitFunc:        func() nvml.Return { return nvml.ERROR_UNKNOWN },
		ErrorStringFunc: func(nvml.Return) string { return "unknown error" },
	}
	_, err := Detect(Config{Lib: lib})
	if err == nil || errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "unknown error") {
		t.Fatalf("err = %v, want the init error", err)
	}
	calls := len(lib.DeviceGetCountCalls()) + len(lib.SystemGetDriverVersionCalls()) + len(lib.ShutdownCalls()) +
		len(lib.DeviceGetHandleByIndexCalls()) + len(lib.SystemGetCudaDriverVersionCalls())
	if calls != 0 {
		t.Fatalf("%d NVML calls after a failed Init", calls)
	}
}
