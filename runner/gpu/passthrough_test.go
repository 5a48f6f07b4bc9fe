package gpu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func nodePaths(pt *Passthrough) string {
	var out []string
	for _, n := range pt.Nodes {
		out = append(out, n.Path)
	}
	return strings.Join(out, " ")
}

// emptyCache is an ld.so.cache listing none of the driver's libraries.
func emptyCache(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "ld.so.cache")
	if err := os.WriteFile(p, []byte("glibc-ld.so.cache1.1\x00/usr/lib/x86_64-linux-gnu/libc.so.6\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanPassthroughCDI(t *testing.T) {
	const ctl = "/dev/nvidia-modeset /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidiactl"
	tests := []struct {
		name, spec, host, req string
		nodes                 string
		cdi                   string
	}{
		{"one gpu by uuid", "full", "mixed", gpuUUID(1), "/dev/nvidia-modeset /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia1 /dev/nvidiactl", "nvidia.com/gpu=" + gpuUUID(1)},
		{"one gpu by count", "full", "mixed", "1", "/dev/nvidia-modeset /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia0 /dev/nvidiactl", "nvidia.com/gpu=" + gpuUUID(0)},
		{"all", "full", "mixed", "all", "/dev/nvidia-modeset /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia0 /dev/nvidia1 /dev/nvidiactl", "nvidia.com/gpu=all"},
		{"mig instance", "mig", "mig", migUUID(1), "/dev/nvidia-caps/nvidia-cap30 /dev/nvidia-caps/nvidia-cap31 /dev/nvidia-modeset /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia0 /dev/nvidiactl", "nvidia.com/gpu=" + migUUID(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := detect(t, tt.host)
			r, _ := ParseRequest(tt.req)
			sel, err := Select(inv, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg := PassthroughConfig{CDIDirs: []string{filepath.Join("testdata/cdi", tt.spec)}, LDCache: emptyCache(t), ProcRoot: t.TempDir()}
			pt, err := PlanPassthrough(cfg, inv, sel, r.All)
			if err != nil {
				t.Fatal(err)
			}
			if pt.Source != "cdi" || len(pt.SpecFiles) != 1 {
				t.Fatalf("source %s specs %v", pt.Source, pt.SpecFiles)
			}
			if got := nodePaths(pt); got != tt.nodes {
				t.Errorf("nodes %s\nwant  %s", got, tt.nodes)
			}
			if strings.Join(pt.CDINames, " ") != tt.cdi {
				t.Errorf("cdi devices %v, want %s", pt.CDINames, tt.cdi)
			}
			if !strings.Contains(nodePaths(pt), strings.Split(ctl, " ")[3]) {
				t.Error("no /dev/nvidiactl")
			}
			if len(pt.Env) != 1 || pt.Env[0] != "NVIDIA_VISIBLE_DEVICES=void" {
				t.Errorf("env %v", pt.Env)
			}
			if len(pt.LibraryPath) != 1 || pt.LibraryPath[0] != "/usr/lib/x86_64-linux-gnu" {
				t.Errorf("library path %v: the cache lists none of the libraries", pt.LibraryPath)
			}
			if tt.spec == "full" {
				if len(pt.Mounts) != 6 || pt.Mounts[5].Path != "/usr/bin/nvidia-smi" {
					t.Errorf("mounts %v", pt.Mounts)
				}
				if len(pt.Symlinks) != 2 || pt.Symlinks[0] != (Symlink{Path: "/usr/lib/x86_64-linux-gnu/libcuda.so", Target: "libcuda.so.1"}) {
					t.Errorf("symlinks %v", pt.Symlinks)
				}
				if !strings.Contains(strings.Join(pt.Notes, "\n"), "enable-cuda-compat: not applied") {
					t.Errorf("notes %v", pt.Notes)
				}
			}
		})
	}
}

// TestPlanPassthroughCached: libraries the host's ld.so.cache lists need
// no LD_LIBRARY_PATH.
func TestPlanPassthroughCached(t *testing.T) {
	inv := detect(t, "a100")
	sel, _ := Select(inv, Request{Count: 1}, nil)
	cache := filepath.Join(t.TempDir(), "ld.so.cache")
	var b []byte
	for _, l := range []string{"libcuda.so.1", "libcudadebugger.so.1", "libnvidia-ml.so.1", "libnvidia-ptxjitcompiler.so.1"} {
		b = append(b, "/usr/lib/x86_64-linux-gnu/"+l+"\x00"...)
	}
	if err := os.WriteFile(cache, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The a100 mock's first GPU is not in the full spec by UUID... it is:
	// the testdata UUIDs are the mocks' fixed ones.
	pt, err := PlanPassthrough(PassthroughConfig{CDIDirs: []string{"testdata/cdi/full"}, LDCache: cache, ProcRoot: t.TempDir()}, inv, sel, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(pt.LibraryPath) != 0 {
		t.Fatalf("library path %v, want none: the host's cache serves them", pt.LibraryPath)
	}
}

// TestPlanPassthroughFallsBackToNVML: a spec that lacks the device (GPU 2
// of an a100 host) is not used; the plan comes from /dev and the libraries.
func TestPlanPassthroughNVML(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "dev")
	lib := filepath.Join(root, "lib")
	bin := filepath.Join(root, "bin")
	proc := filepath.Join(root, "proc")
	for _, d := range []string{dev, lib, bin, filepath.Join(proc, "driver/nvidia/capabilities/gpu0/mig/gi2/ci0")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	touch := func(p, data string) {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia0", "nvidia1", "nvidia2"} {
		touch(filepath.Join(dev, n), "")
	}
	touch(filepath.Join(lib, "libcuda.so.550.54.15"), "elf")
	touch(filepath.Join(lib, "libnvidia-ml.so.550.54.15"), "elf")
	touch(filepath.Join(lib, "libnvidia-ml.so.535.1.1"), "old")
	touch(filepath.Join(bin, "nvidia-smi"), "elf")
	touch(filepath.Join(proc, "driver/nvidia/params"), "ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 1\nDeviceFileUID: 0\n")
	touch(filepath.Join(proc, "driver/nvidia/capabilities/gpu0/mig/gi2/access"), "DeviceFileMinor: 30\nDeviceFileMode: 292\n")
	touch(filepath.Join(proc, "driver/nvidia/capabilities/gpu0/mig/gi2/ci0/access"), "DeviceFileMinor: 31\nDeviceFileMode: 292\n")
	cfg := PassthroughConfig{NoCDI: true, DevRoot: root, ProcRoot: proc, LibDirs: []string{lib}, BinDirs: []string{bin}, LDCache: emptyCache(t)}

	tests := []struct {
		host, req, nodes string
	}{
		{"a100", "device=2", "/dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia2"},
		{"mig", migUUID(1), "/dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia0 /dev/nvidia-caps/nvidia-cap30 /dev/nvidia-caps/nvidia-cap31"},
	}
	for _, tt := range tests {
		inv := detect(t, tt.host)
		r, _ := ParseRequest(tt.req)
		sel, err := Select(inv, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.host == "mig" {
			// The MIG capability nodes are checked on the host too.
			os.MkdirAll(filepath.Join(dev, "nvidia-caps"), 0o755)
			touch(filepath.Join(dev, "nvidia-caps/nvidia-cap30"), "")
			touch(filepath.Join(dev, "nvidia-caps/nvidia-cap31"), "")
		}
		pt, err := PlanPassthrough(cfg, inv, sel, false)
		if err != nil {
			t.Fatalf("%s: %v", tt.req, err)
		}
		if pt.Source != "nvml" || nodePaths(pt) != tt.nodes {
			t.Fatalf("%s: %s nodes %s\nwant %s", tt.req, pt.Source, nodePaths(pt), tt.nodes)
		}
		if pt.Nodes[0].HostPath != filepath.Join(dev, "nvidiactl") {
			t.Errorf("host path %s", pt.Nodes[0].HostPath)
		}
		if !strings.Contains(strings.Join(pt.Notes, " "), "/dev/nvidia-modeset is not on this host") {
			t.Errorf("notes %v", pt.Notes)
		}
		var mounts []string
		for _, m := range pt.Mounts {
			mounts = append(mounts, filepath.Base(m.Path))
		}
		if strings.Join(mounts, " ") != "libcuda.so.550.54.15 libnvidia-ml.so.550.54.15 nvidia-smi" {
			t.Errorf("mounts %v (the 535 library is another driver's)", mounts)
		}
		if len(pt.Symlinks) != 3 || !strings.Contains(string(pt.Params), "ModifyDeviceFiles: 0\n") || strings.Contains(string(pt.Params), "ModifyDeviceFiles: 1") {
			t.Errorf("symlinks %v params %q", pt.Symlinks, pt.Params)
		}
	}
	// The MIG node missing: a clear error, not a plan without it.
	os.Remove(filepath.Join(dev, "nvidia-caps/nvidia-cap31"))
	inv := detect(t, "mig")
	sel, _ := Select(inv, Request{Devices: []string{migUUID(1)}}, nil)
	if _, err := PlanPassthrough(cfg, inv, sel, false); err == nil || !strings.Contains(err.Error(), "nvidia-cap31") {
		t.Fatalf("missing MIG node: %v", err)
	}
	// A driver whose libraries are not there.
	inv.DriverVersion = "999.1"
	if _, err := PlanPassthrough(cfg, inv, sel[:0:0], false); err != nil {
		t.Fatalf("no selection: %v", err)
	}
}

func TestCheckCDI(t *testing.T) {
	inv := detect(t, "mixed")
	// The testdata's files are not on this host: present but not current.
	st := CheckCDI([]string{"testdata/cdi/full"}, inv)
	if len(st.Files) != 1 || st.Current || !strings.Contains(strings.Join(st.Problems, "\n"), "nvidia-smi is missing") {
		t.Fatalf("full spec: %+v", st)
	}
	st = CheckCDI([]string{"testdata/cdi/invalid"}, inv)
	if st.Current || len(st.Problems) == 0 {
		t.Fatalf("invalid spec: %+v", st)
	}
	st = CheckCDI([]string{t.TempDir()}, inv)
	if len(st.Files) != 0 || st.Current {
		t.Fatalf("no spec: %+v", st)
	}
	// A spec that names a file of an older driver is stale.
	dir := t.TempDir()
	lib := filepath.Join(dir, "libcuda.so.535.104.05")
	os.WriteFile(lib, nil, 0o644)
	spec := "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n- name: \"1\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia1\ncontainerEdits:\n  mounts:\n  - hostPath: " + lib + "\n    containerPath: " + lib + "\n"
	os.WriteFile(filepath.Join(dir, "nvidia.yaml"), []byte(spec), 0o644)
	st = CheckCDI([]string{dir}, inv)
	if st.Current || !strings.Contains(strings.Join(st.Problems, "\n"), "not of the running driver 550.54.15") {
		t.Fatalf("stale spec: %+v", st)
	}
	inv.DriverVersion = "535.104.05"
	if st = CheckCDI([]string{dir}, inv); !st.Current {
		t.Fatalf("current spec: %+v", st)
	}
}

// FuzzCDIPlan feeds spec files to the CDI loader and the plan: whatever a
// spec holds, the plan has only clean absolute paths and never panics.
func FuzzCDIPlan(f *testing.F) {
	for _, p := range []string{"testdata/cdi/full/nvidia.yaml", "testdata/cdi/mig/nvidia.yaml", "testdata/cdi/invalid/nvidia.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	inv, err := Detect(Config{Lib: migHost()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "nvidia.yaml"), spec, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, r := range []Request{{All: true}, {Devices: []string{migUUID(1)}}, {Count: 1}} {
			sel, err := Select(inv, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			pt, err := PlanPassthrough(PassthroughConfig{CDIDirs: []string{dir}, ProcRoot: dir, LDCache: filepath.Join(dir, "none"),
				DevRoot: dir, LibDirs: []string{dir}, BinDirs: []string{dir}}, inv, sel, r.All)
			if err != nil || pt == nil {
				continue
			}
			for _, n := range pt.Nodes {
				if !filepath.IsAbs(n.Path) || filepath.Clean(n.Path) != n.Path {
					t.Fatalf("node %q", n.Path)
				}
			}
			for _, m := range pt.Mounts {
				if !filepath.IsAbs(m.Path) || filepath.Clean(m.Path) != m.Path || !filepath.IsAbs(m.HostPath) {
					t.Fatalf("mount %+v", m)
				}
			}
			for _, l := range pt.Symlinks {
				if !filepath.IsAbs(l.Path) {
					t.Fatalf("link %+v", l)
				}
			}
		}
	})
}
