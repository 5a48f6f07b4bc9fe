package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
)

// fakeDriverRoot is a driver installed under a root of its own, as the GPU
// Operator's driver container has it: fake device nodes (/dev/null's
// numbers), libraries and nvidia-smi, and a CDI spec written the way
// `nvidia-ctk cdi generate --driver-root=ROOT --dev-root=ROOT` writes it
// (host paths under ROOT, container paths as in a container).
func fakeDriverRoot(t *testing.T, uuids []string) (root, cdiDir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "making device nodes (mknod) needs root")
	}
	root = t.TempDir()
	lib := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	for _, d := range []string{filepath.Join(root, "dev"), lib, filepath.Join(root, "usr/bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidia1"} {
		p := filepath.Join(root, "dev", n)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(p, 0o666)
	}
	if err := os.WriteFile(filepath.Join(lib, "libcuda.so.550.54.15"), []byte("fake libcuda\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/nvidia-smi"), []byte("#!/bin/sh\necho fake nvidia-smi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var spec bytes.Buffer
	fmt.Fprintf(&spec, "---\ncdiVersion: 0.5.0\nkind: nvidia.com/gpu\ncontainerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  deviceNodes:\n")
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"} {
		fmt.Fprintf(&spec, "  - path: /dev/%s\n    hostPath: %s/dev/%s\n", n, root, n)
	}
	fmt.Fprintf(&spec, "  hooks:\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.550.54.15::/usr/lib/x86_64-linux-gnu/libcuda.so.1]\n")
	fmt.Fprintf(&spec, "  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]\n")
	fmt.Fprintf(&spec, "  mounts:\n")
	for _, m := range []string{"/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "/usr/bin/nvidia-smi"} {
		fmt.Fprintf(&spec, "  - hostPath: %s%s\n    containerPath: %s\n    options: [ro, nosuid, nodev, rbind, rprivate]\n", root, m, m)
	}
	fmt.Fprintf(&spec, "devices:\n")
	for i, u := range uuids {
		for _, name := range []string{fmt.Sprint(i), u} {
			fmt.Fprintf(&spec, "- name: %q\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia%d\n      hostPath: %s/dev/nvidia%d\n", name, i, root, i)
		}
	}
	cdiDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cdiDir, "nvidia.yaml"), spec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, cdiDir
}

// TestSupervisorGPUPassthrough runs two sandboxes through the supervisor
// on a mock two-GPU host whose driver lives under its own root: the first
// gets GPU 1 by UUID from the CDI spec, the second asks for the same GPU
// and is refused while the first runs, then a count gives it GPU 0.
func TestSupervisorGPUPassthrough(t *testing.T) {
	needKernel(t)
	lib := dgxa100.NewWithGPUs(gpus.A100_SXM4_40GB, gpus.A100_SXM4_40GB)
	var uuids []string
	for _, d := range lib.Devices {
		uuids = append(uuids, d.(*server.Device).UUID)
	}
	_, cdiDir := fakeDriverRoot(t, uuids)
	home := t.TempDir()
	gc := GPUConfig{Lib: lib, Passthrough: gpu.PassthroughConfig{CDIDirs: []string{cdiDir}, ProcRoot: t.TempDir()}}
	script := `for d in /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl; do [ -e $d ] && echo "has $d" || echo "lacks $d"; done
nvidia-smi; cat /run/nemoclaw/gpu/lib/libcuda.so.1; echo "LD=$LD_LIBRARY_PATH"
while [ ! -e /sandbox/done ]; do sleep 0.05; done`
	var out bytes.Buffer
	ws := t.TempDir()
	if err := os.Chown(ws, 10001, 10001); err != nil { // a root-owned workspace is refused
		t.Fatal(err)
	}
	// Detached: kept after the run, with its launch record.
	a := start(t, Config{Name: "gpu-a", Home: home, Workdir: ws, Detached: true, Command: []string{"/bin/bash", "-c", script}, Stdout: &out, Stderr: &out,
		GPUs: gpu.Request{Devices: []string{uuids[1]}}, GPU: gc})

	if _, err := New(Config{Name: "gpu-b", Home: home, Policy: testPolicy(), Command: []string{"true"}, GPUs: gpu.Request{Devices: []string{uuids[1]}}, GPU: gc}); err == nil ||
		!strings.Contains(err.Error(), `in use by running sandbox "gpu-a"`) {
		t.Fatalf("second sandbox on the same GPU: %v", err)
	}
	b := start(t, Config{Name: "gpu-b", Home: home, Command: []string{"/bin/sh", "-c", "[ -e /dev/nvidia0 ] && [ ! -e /dev/nvidia1 ]"}, GPUs: gpu.Request{Count: 1}, GPU: gc})
	if code, err := b.Wait(); code != 0 || err != nil {
		t.Fatalf("sandbox b with GPU 0: exit %d %v", code, err)
	}
	if err := os.WriteFile(filepath.Join(ws, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, err := a.Wait(); code != 0 || err != nil {
		t.Fatalf("sandbox a: exit %d %v", code, err)
	}
	got := out.String()
	for _, want := range []string{"lacks /dev/nvidia0", "has /dev/nvidia1", "has /dev/nvidiactl", "fake nvidia-smi", "fake libcuda", "LD=/run/nemoclaw/gpu/lib:/usr/lib/x86_64-linux-gnu"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	// a's claim goes with it.
	_ = a.Close()
	if _, err := os.Stat(filepath.Join(home, "sandboxes", "gpu-a", gpu.ClaimFile)); !os.IsNotExist(err) {
		t.Fatalf("claim left after the run: %v", err)
	}
	// sandbox start asks for the same GPU again.
	if l, err := LoadLaunch(home, "gpu-a"); err != nil || len(l.GPUs.Devices) != 1 || l.GPUs.Devices[0] != uuids[1] {
		t.Fatalf("launch record's GPUs: %+v %v", l, err)
	}
}
