package gpu

import (
	"errors"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

func TestDetectDGXA100(t *testing.T) {
	inv, err := Detect(Config{Lib: dgxa100.New()})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Devices) != 8 {
		t.Fatalf("devices = %d, want 8", len(inv.Devices))
	}
	d := inv.Devices[0]
	if d.Name == "" || d.UUID == "" {
		t.Errorf("device 0 lacks name or uuid: %+v", d)
	}
	if d.ComputeCapability != "8.0" {
		t.Errorf("compute capability = %q, want 8.0 (A100)", d.ComputeCapability)
	}
	if d.MemoryGiB < 39 {
		t.Errorf("memory = %.1f GiB, want an A100's 40+", d.MemoryGiB)
	}
	if inv.DriverVersion == "" {
		t.Error("driver version is empty")
	}
}

func TestDetectNoDriver(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
	_, err := Detect(Config{Lib: lib})
	if !errors.Is(err, ErrNoDriver) {
		t.Fatalf("err = %v, want ErrNoDriver", err)
	}
}

func TestDetectInitFailureStopsEarly(t *testing.T) {
	// No other NVML call may happen after a failed Init (it would abort).
	lib := &mock.Interface{
		InitFunc:        func() nvml.Return { return nvml.ERROR_UNKNOWN },
		ErrorStringFunc: func(nvml.Return) string { return "unknown error" },
	}
	if _, err := Detect(Config{Lib: lib}); err == nil {
		t.Fatal("Detect succeeded after a failed Init")
	}
	if n := len(lib.DeviceGetCountCalls()); n != 0 {
		t.Fatalf("DeviceGetCount called %d times after a failed Init", n)
	}
}
