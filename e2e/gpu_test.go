package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// fakeNVML builds testdata/fakenvml into a directory holding
// libnvidia-ml.so.1: nemoclaw dlopens it through go-nvml as it would the
// driver's, when that directory is on LD_LIBRARY_PATH.
func fakeNVML(t *testing.T, dir string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		testutil.SkipOrFail(t, "no C compiler (cc) to build the fake libnvidia-ml.so.1")
	}
	if dir == "" {
		dir = t.TempDir()
	}
	out, err := exec.Command(cc, "-shared", "-fPIC", "-o", filepath.Join(dir, "libnvidia-ml.so.1"), filepath.Join("testdata", "fakenvml", "fakenvml.c")).CombinedOutput()
	if err != nil {
		t.Fatalf("build fake NVML: %v\n%s", err, out)
	}
	return dir
}

const (
	h100 = "NVIDIA H100 80GB HBM3,GPU-11111111-2222-3333-4444-555555555555,80,9.0"
	a100 = "NVIDIA A100-SXM4-40GB,GPU-aaaaaaaa-2222-3333-4444-555555555555,40,8.0"
)

// TestGPUWithFakeDriver runs nemoclaw's GPU commands against a fake NVML:
// the inventory, doctor, the profile auto picks for a big GPU, a small one
// and none, a failing Init, and --gpus refusals, each with what it says.
func TestGPUWithFakeDriver(t *testing.T) {
	lib := fakeNVML(t, "")
	nc := func(gpus string, extra []string, args ...string) (string, string, int) {
		cmd := exec.Command(Bin("nemoclaw"), args...)
		cmd.Env = append(os.Environ(), "NEMOCLAW_HOME="+t.TempDir(), "LD_LIBRARY_PATH="+lib, "FAKE_NVML_GPUS="+gpus)
		cmd.Env = append(cmd.Env, extra...)
		return runCmd(t, cmd)
	}

	out, errOut, code := nc(h100+";"+a100, nil, "gpu", "-o", "json")
	var rep struct {
		Driver    bool
		Inventory struct {
			DriverVersion string `json:"driver_version"`
			CUDAVersion   string `json:"cuda_version"`
			Devices       []struct {
				Index             int
				Name, UUID        string
				MemoryTotal       uint64 `json:"memory_total_bytes"`
				MemoryFree        uint64 `json:"memory_free_bytes"`
				ComputeCapability string `json:"compute_capability"`
			}
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("gpu -o json: exit %d\n%s\n%s", code, out, errOut)
	}
	inv := rep.Inventory
	if !rep.Driver || inv.DriverVersion != "550.54.15" || inv.CUDAVersion != "12.4" || len(inv.Devices) != 2 ||
		inv.Devices[1].UUID != "GPU-aaaaaaaa-2222-3333-4444-555555555555" || inv.Devices[0].MemoryTotal != 80<<30 ||
		inv.Devices[0].MemoryFree != 60<<30 || inv.Devices[1].ComputeCapability != "8.0" {
		t.Fatalf("inventory: %+v", rep)
	}
	out, _, code = nc(h100, nil, "gpu")
	if code != 0 || !strings.Contains(out, "driver 550.54.15, CUDA 12.4, 1 GPU(s)") || !strings.Contains(out, "0  NVIDIA H100 80GB HBM3") {
		t.Errorf("gpu: exit %d\n%s", code, out)
	}
	out, _, _ = nc(h100, nil, "doctor")
	if !strings.Contains(out, "driver 550.54.15, CUDA 12.4, 1 GPU(s); #0 NVIDIA H100 80GB HBM3 80 GiB cc 9.0") || !strings.Contains(out, "gpu: CDI spec") || !strings.Contains(out, "gpu: device nodes") {
		t.Errorf("doctor:\n%s", out)
	}

	for _, tt := range []struct{ gpus, want string }{
		{h100, "auto chose vllm: local profile vllm fits"},
		{a100, "auto chose ollama: local profile ollama fits"},
		{"", "auto chose nvidia: no local GPU profile fits this host"},
	} {
		out, errOut, code := nc(tt.gpus, nil, "blueprint", "plan", "--profile", "auto")
		if code != 0 || !strings.Contains(out, tt.want) {
			t.Errorf("plan --profile auto with %q: exit %d, want %q\n%s\n%s", tt.gpus, code, tt.want, out, errOut)
		}
	}

	out, _, code = nc(h100, []string{"FAKE_NVML_INIT_FAIL=1"}, "gpu")
	if code != 0 || !strings.Contains(out, "NVIDIA driver present, but NVML failed: nvml init: Unknown Error (fake)") {
		t.Errorf("gpu with a failing Init: exit %d\n%s", code, out)
	}

	if _, errOut, code := nc(h100, nil, "sandbox", "run", "--gpus", "GPU-00000000-dead", "--", "true"); code != 3 || !strings.Contains(errOut, "no GPU has UUID GPU-00000000-dead (nemoclaw gpu lists them)") {
		t.Errorf("--gpus unknown uuid: exit %d %q", code, errOut)
	}
	if _, errOut, code := nc(h100, nil, "sandbox", "run", "--gpus", "2", "--", "true"); code != 3 || !strings.Contains(errOut, "--gpus 2: only 1 of 1 GPU(s) are free") {
		t.Errorf("--gpus 2 of 1: exit %d %q", code, errOut)
	}
	if _, err := os.Stat("/dev/nvidiactl"); os.IsNotExist(err) {
		// The fake driver has no kernel module: the plan made without CDI
		// says which node is missing.
		if _, errOut, code := nc(h100, nil, "sandbox", "run", "--gpus", "all", "--", "true"); code != 1 || !strings.Contains(errOut, "device node /dev/nvidiactl") || !strings.Contains(errOut, "is the NVIDIA kernel module loaded") {
			t.Errorf("--gpus all without device nodes: exit %d %q", code, errOut)
		}
	}
}

// TestSandboxGPUPassthroughFakeDriver is the whole path through the binary,
// as root and as a new unprivileged user: a fake NVML with two GPUs, fake
// device nodes (character devices with /dev/null's numbers) and a driver
// under its own root, described by a CDI spec written the way
// `nvidia-ctk cdi generate --driver-root --dev-root` writes one. The sandbox
// asks for the second GPU by UUID and sees exactly its nodes, the driver's
// library and nvidia-smi, with ioctl allowed on the node and CUDA's thread
// naming through /proc working.
func TestSandboxGPUPassthroughFakeDriver(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "making device nodes (mknod) needs root")
	}
	base, err := os.MkdirTemp("", "nemoclaw-e2e-gpu-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	for _, d := range []string{"", "lib", "dev", "cdi", "drv/usr/lib/x86_64-linux-gnu", "drv/usr/bin"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(filepath.Join(base, d), 0o755)
	}
	lib := fakeNVML(t, filepath.Join(base, "lib"))
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidia1"} {
		p := filepath.Join(base, "dev", n)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, 0o666)
	}
	drv := filepath.Join(base, "drv")
	if err := os.WriteFile(filepath.Join(drv, "usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15"), []byte("fake libcuda\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drv, "usr/bin/nvidia-smi"), []byte("#!/bin/sh\necho fake nvidia-smi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	uuids := []string{"GPU-11111111-2222-3333-4444-555555555555", "GPU-aaaaaaaa-2222-3333-4444-555555555555"}
	var spec strings.Builder
	fmt.Fprintf(&spec, "---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits:\n  env: [NVIDIA_VISIBLE_DEVICES=void]\n  deviceNodes:\n")
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"} {
		fmt.Fprintf(&spec, "  - path: /dev/%s\n    hostPath: %s/dev/%s\n", n, base, n)
	}
	fmt.Fprintf(&spec, "  hooks:\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.550.54.15::/usr/lib/x86_64-linux-gnu/libcuda.so.1]\n")
	fmt.Fprintf(&spec, "  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]\n  mounts:\n")
	for _, m := range []string{"/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "/usr/bin/nvidia-smi"} {
		fmt.Fprintf(&spec, "  - {hostPath: %s%s, containerPath: %s, options: [ro, nosuid, nodev, rbind, rprivate]}\n", drv, m, m)
	}
	fmt.Fprintf(&spec, "devices:\n")
	for i, u := range uuids {
		for _, name := range []string{fmt.Sprint(i), u} {
			fmt.Fprintf(&spec, "- name: %q\n  containerEdits:\n    deviceNodes:\n    - {path: /dev/nvidia%d, hostPath: %s/dev/nvidia%d}\n", name, i, base, i)
		}
	}
	cdi := filepath.Join(base, "cdi")
	if err := os.WriteFile(filepath.Join(cdi, "nvidia.yaml"), []byte(spec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `for d in /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl /dev/nvidia-uvm-tools; do [ -e $d ] && echo "has $d" || echo "lacks $d"; done
(exec 3<>/dev/nvidia1) && echo "open ok"
stty -F /dev/nvidia1 2>&1
nvidia-smi
cat /run/nemoclaw/gpu/lib/libcuda.so.1
echo "LD=$LD_LIBRARY_PATH NV=$NVIDIA_VISIBLE_DEVICES"
echo cuda > /proc/self/comm && echo "comm ok"`
	asEachLauncher(t, func(t *testing.T, uid int) {
		r := newSandboxRun(t, uid)
		r.env = []string{"LD_LIBRARY_PATH=" + lib, "FAKE_NVML_GPUS=" + h100 + ";" + a100}
		out, errOut, code := r.run(t, []string{"--gpus", uuids[1], "--cdi-spec-dir", cdi}, "/bin/sh", "-c", script)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
		for _, want := range []string{"lacks /dev/nvidia0", "has /dev/nvidia1", "has /dev/nvidiactl", "has /dev/nvidia-uvm-tools", "open ok",
			"/dev/nvidia1: Inappropriate ioctl for device", "fake nvidia-smi", "fake libcuda",
			"LD=/run/nemoclaw/gpu/lib:/usr/lib/x86_64-linux-gnu NV=void", "comm ok"} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q in:\n%s\nstderr: %s", want, out, errOut)
			}
		}
	})
}
