package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// fakeDevices makes character devices with /dev/null's numbers under
// temporary names, and fake driver libraries, the way a GPU host has them.
func fakeDevices(t *testing.T) (dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testutil.SkipOrFail(t, "making device nodes (mknod) needs root")
	}
	dir = t.TempDir()
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia0", "nvidia1"} {
		if err := unix.Mknod(filepath.Join(dir, n), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatalf("mknod %s: %v", n, err)
		}
		if err := os.Chmod(filepath.Join(dir, n), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"libcuda.so.550.54.15": "fake libcuda\n", "libnvidia-ml.so.550.54.15": "fake nvml\n",
		"libnvidia-ptxjitcompiler.so.550.54.15": "fake ptx\n", "libother.so.1": "not selected\n"} {
		if err := os.WriteFile(filepath.Join(dir, "lib", name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "nvidia-smi"), []byte("#!/bin/sh\necho fake nvidia-smi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSandboxDevicePassthrough gives a real sandbox GPU 0 of two fake ones
// and checks, from inside, that exactly the selected nodes exist and open
// (with ioctl allowed by Landlock: stty's TCGETS reaches the device and
// gets ENOTTY, not EACCES), that the other GPU is absent, that the driver
// files are there read-only with their link, and the environment.
func TestSandboxDevicePassthrough(t *testing.T) {
	needKernel(t)
	dir := fakeDevices(t)
	lib := "/run/nvidia/lib"
	devs := &Devices{
		Nodes: []DeviceNode{
			{Path: "/dev/nvidiactl", HostPath: filepath.Join(dir, "nvidiactl")},
			{Path: "/dev/nvidia-uvm", HostPath: filepath.Join(dir, "nvidia-uvm")},
			{Path: "/dev/nvidia0", HostPath: filepath.Join(dir, "nvidia0")},
		},
		Files: []DeviceNode{
			{Path: lib + "/libcuda.so.550.54.15", HostPath: filepath.Join(dir, "lib/libcuda.so.550.54.15")},
			{Path: lib + "/libnvidia-ml.so.550.54.15", HostPath: filepath.Join(dir, "lib/libnvidia-ml.so.550.54.15")},
			// A driver outside the host's /usr (a driver container's
			// root): relocated, as the read-only /usr cannot take it.
			{Path: "/usr/lib/nemoclaw-test-absent/libnvidia-ptxjitcompiler.so.550.54.15", HostPath: filepath.Join(dir, "lib/libnvidia-ptxjitcompiler.so.550.54.15")},
			{Path: "/usr/bin/nemoclaw-test-nvidia-smi", HostPath: filepath.Join(dir, "lib/nvidia-smi")},
		},
		Links: []DeviceLink{{Path: lib + "/libcuda.so.1", Target: "libcuda.so.550.54.15"},
			{Path: "/usr/lib/nemoclaw-test-absent/libnvidia-ptxjitcompiler.so.1", Target: "libnvidia-ptxjitcompiler.so.550.54.15"}},
		Env:         []string{"NVIDIA_VISIBLE_DEVICES=void"},
		LibraryPath: []string{lib},
		ProcWrite:   true,
		ProcRead:    []string{"/proc/driver/nvidia"},
	}
	script := `
for d in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia0 /dev/nvidia1 /dev/nvidia-uvm-tools; do
  if (exec 3<>"$d") 2>/dev/null; then echo "open $d ok"; else echo "open $d fail"; fi
done
stty -F /dev/nvidia0 2>&1 | sed 's/^stty: //'
cat ` + lib + `/libcuda.so.1 ` + lib + `/libnvidia-ml.so.550.54.15
if (echo x > ` + lib + `/libcuda.so.550.54.15) 2>/dev/null; then echo "lib writable"; else echo "lib read-only"; fi
if (echo x > /dev/nvidia2) 2>/dev/null; then echo "dev writable"; else echo "dev read-only"; fi
for f in ` + lib + `/libcuda.so.1 ` + lib + `/libcuda.so.550.54.15 ` + lib + `/libother.so.1 /dev/nvidia-uvm /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl; do [ -e "$f" ] && echo "has $f" || echo "lacks $f"; done
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"
nemoclaw-test-nvidia-smi
cat ` + LinkDir + `/libnvidia-ptxjitcompiler.so.1
echo cuda-thread > /proc/self/comm && read c < /proc/$$/comm && echo "comm=$c"
if (exec 3<"` + filepath.Join(dir, "nvidia1") + `") 2>/dev/null; then echo "host node reachable"; else echo "host node unreachable"; fi
`
	code, out, errOut := run(t, Config{Command: []string{"/bin/bash", "-c", script}, Devices: devs})
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"open /dev/nvidiactl ok", "open /dev/nvidia-uvm ok", "open /dev/nvidia0 ok",
		"open /dev/nvidia1 fail", "open /dev/nvidia-uvm-tools fail",
		"/dev/nvidia0: Inappropriate ioctl for device",
		"fake libcuda\nfake nvml\n",
		"lib read-only", "dev read-only",
		"has /run/nvidia/lib/libcuda.so.1", "has /run/nvidia/lib/libcuda.so.550.54.15", "lacks /run/nvidia/lib/libother.so.1",
		"has /dev/nvidia-uvm", "has /dev/nvidia0", "lacks /dev/nvidia1", "has /dev/nvidiactl",
		"LD_LIBRARY_PATH=" + LinkDir + ":/run/nvidia/lib NVIDIA_VISIBLE_DEVICES=void",
		"fake nvidia-smi\nfake ptx\n",
		"comm=cuda-thread\n",
		"host node unreachable",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s\nstderr:\n%s", want, out, errOut)
		}
	}
}

// TestSandboxDeviceIoctlNeedsRule is the control for the test above: the
// same ioctl on a node the sandbox has without a device rule (/dev/random,
// read-only) is refused by Landlock (EACCES), so ioctl reaches exactly the
// passed-through nodes.
func TestSandboxDeviceIoctlNeedsRule(t *testing.T) {
	needKernel(t)
	if Probe().LandlockABI < 5 {
		testutil.SkipOrFail(t, "Landlock ABI 5 (ioctl on devices) is not in this kernel")
	}
	dir := fakeDevices(t)
	devs := &Devices{Nodes: []DeviceNode{{Path: "/dev/nvidia0", HostPath: filepath.Join(dir, "nvidia0")}}}
	code, out, errOut := run(t, Config{Command: []string{"/bin/bash", "-c", "stty -F /dev/nvidia0 2>&1; stty -F /dev/random 2>&1; true"}, Devices: devs})
	if code != 0 || !strings.Contains(out, "/dev/nvidia0: Inappropriate ioctl for device") || !strings.Contains(out, "/dev/random: Permission denied") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

func TestDevicesPlanRefuses(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "reg")
	if err := os.WriteFile(reg, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		d    Devices
		err  string
	}{
		{"node outside /dev", Devices{Nodes: []DeviceNode{{Path: "/etc/nvidia0", HostPath: "/dev/null"}}}, "must lie in /dev"},
		{"node in /dev/shm", Devices{Nodes: []DeviceNode{{Path: "/dev/shm/x", HostPath: "/dev/null"}}}, "must lie in /dev"},
		{"node not a device", Devices{Nodes: []DeviceNode{{Path: "/dev/nvidia0", HostPath: reg}}}, "is not a device"},
		{"node missing", Devices{Nodes: []DeviceNode{{Path: "/dev/nvidia0", HostPath: filepath.Join(dir, "none")}}}, "no such file"},
		{"relative", Devices{Files: []DeviceNode{{Path: "usr/lib/x", HostPath: reg}}}, "clean absolute"},
		{"dotdot", Devices{Files: []DeviceNode{{Path: "/run/../etc/x", HostPath: reg}}}, "clean absolute"},
		{"into workspace", Devices{Files: []DeviceNode{{Path: "/sandbox/lib.so", HostPath: reg}}}, "nothing may be placed under /sandbox"},
		{"into proc", Devices{Files: []DeviceNode{{Path: "/proc/driver/x", HostPath: reg}}}, "under /proc"},
		{"link into workspace", Devices{Links: []DeviceLink{{Path: "/sandbox/x", Target: "/etc/passwd"}}}, "under /sandbox"},
		{"file over nothing", Devices{Files: []DeviceNode{{Path: "/usr/share/nemoclaw-no-such.json", HostPath: reg}}}, "not on the host"},
	}
	for _, tt := range tests {
		_, _, err := tt.d.plan()
		if err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.err)
		}
	}
}

// TestDevicesLandlockRules: nodes get read, write and ioctl; files read
// and execute; nothing else is added.
func TestDevicesLandlockRules(t *testing.T) {
	s := &devicesSpec{
		Nodes: []deviceBind{{From: "/dev/nvidia0", Dst: "/dev/nvidia0", Create: true}},
		Files: []deviceBind{{Dst: "/usr/lib/libcuda.so.1"}},
	}
	plan := landlockPlan{ABI: 6, HandledFS: fsRightsForABI(6), Rules: []pathRule{{Path: "/usr", Access: fsReadOnly}}}
	s.addRules(&plan, &Devices{ProcWrite: true})
	got := map[string]uint64{}
	for _, r := range plan.Rules {
		got[r.Path] = r.Access
	}
	want := map[string]uint64{
		"/usr":                  fsReadOnly,
		"/dev/nvidia0":          unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV,
		"/usr/lib/libcuda.so.1": unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_EXECUTE,
		"/proc":                 unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE,
	}
	if len(got) != len(want) {
		t.Fatalf("rules %v", got)
	}
	for p, a := range want {
		if got[p] != a {
			t.Errorf("%s: %#x, want %#x", p, got[p], a)
		}
	}
}

// BenchmarkStartDevices is what GPU passthrough adds to a sandbox's start
// and run of /bin/true: three device nodes and two driver files with a link.
func BenchmarkStartDevices(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("making device nodes (mknod) needs root")
	}
	dir := b.TempDir()
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia0"} {
		if err := unix.Mknod(filepath.Join(dir, n), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []string{"libcuda.so.550.54.15", "libnvidia-ml.so.550.54.15"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	devs := &Devices{ProcWrite: true, LibraryPath: []string{"/run/nvidia/lib"}}
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia0"} {
		devs.Nodes = append(devs.Nodes, DeviceNode{Path: "/dev/" + n, HostPath: filepath.Join(dir, n)})
	}
	for _, n := range []string{"libcuda.so.550.54.15", "libnvidia-ml.so.550.54.15"} {
		devs.Files = append(devs.Files, DeviceNode{Path: "/run/nvidia/lib/" + n, HostPath: filepath.Join(dir, n)})
	}
	devs.Links = []DeviceLink{{Path: "/run/nvidia/lib/libcuda.so.1", Target: "libcuda.so.550.54.15"}}
	home := b.TempDir()
	for _, c := range []struct {
		name string
		devs *Devices
	}{{"none", nil}, {"gpu", devs}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				sb, err := Start(b.Context(), Config{Policy: testPolicy(), Home: home, Command: []string{"/bin/true"}, Devices: c.devs})
				if err != nil {
					b.Fatal(err)
				}
				if code, err := sb.Wait(); code != 0 || err != nil {
					b.Fatalf("exit %d %v", code, err)
				}
				sb.Close()
			}
		})
	}
}
