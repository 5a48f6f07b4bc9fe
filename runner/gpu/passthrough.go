package gpu

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// PassthroughConfig says where the host's NVIDIA files are; the zero value
// is the real host. Tests point every root at a temporary directory.
type PassthroughConfig struct {
	Logger *slog.Logger
	// CDIDirs are searched for the NVIDIA Container Toolkit's CDI specs
	// (nil: /etc/cdi, /var/run/cdi); NoCDI ignores them.
	CDIDirs []string
	NoCDI   bool
	// DevRoot is prefixed to /dev/... for the plan made without CDI.
	DevRoot string
	// ProcRoot is /proc: the driver's params and MIG capability files.
	ProcRoot string
	// LibDirs and BinDirs are searched for the driver's libraries and
	// tools without CDI (nil: the multiarch and usual library directories;
	// /usr/bin and /bin).
	LibDirs []string
	BinDirs []string
	// LDCache is the host's dynamic linker cache, to tell whether a
	// library folder must go on LD_LIBRARY_PATH ("" : /etc/ld.so.cache).
	LDCache string
}

// Node is a device node given to the sandbox: HostPath bound at Path.
type Node struct {
	Path     string `json:"path"`
	HostPath string `json:"host_path"`
}

// Mount is a driver file (or directory) bound read-only: HostPath at Path.
type Mount struct {
	Path     string `json:"path"`
	HostPath string `json:"host_path"`
}

// Symlink is a link made inside the sandbox: Path -> Target.
type Symlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// Passthrough is everything a sandbox needs to use the selected GPUs:
// what the NVIDIA Container Toolkit's CDI spec says (its container edits,
// with the effect of its hooks done by nemoclaw itself), or the same made
// from NVML and /dev when there is no spec.
type Passthrough struct {
	// Source is "cdi" (SpecFiles name the specs used) or "nvml".
	Source    string     `json:"source"`
	SpecFiles []string   `json:"spec_files,omitempty"`
	CDINames  []string   `json:"cdi_devices,omitempty"`
	Selected  []Selected `json:"selected"`
	Nodes     []Node     `json:"device_nodes"`
	Mounts    []Mount    `json:"mounts"`
	Symlinks  []Symlink  `json:"symlinks,omitempty"`
	Env       []string   `json:"env,omitempty"`
	// LibraryPath are folders update-ldcache would have put in the
	// container's ld.so.cache that the host's cache does not serve: the
	// sandbox puts them on LD_LIBRARY_PATH (see docs/gpu.md).
	LibraryPath []string `json:"library_path,omitempty"`
	// Params is /proc/driver/nvidia/params with ModifyDeviceFiles: 0,
	// bound over the sandbox's copy (nil: the host has none): the driver
	// libraries then never try to create or chmod device nodes.
	Params []byte `json:"-"`
	// Notes say what of the spec was not applied, and why.
	Notes []string `json:"notes,omitempty"`
}

// devicePath are the device nodes every NVIDIA compute container gets.
var controlNodes = []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"}

// computeLibs are the driver libraries CUDA and NVML programs load
// (nvidia-container-cli's "compute" and "utility" sets).
var computeLibs = []string{"libcuda", "libcudadebugger", "libnvidia-ml", "libnvidia-ptxjitcompiler", "libnvidia-nvvm",
	"libnvidia-gpucomp", "libnvidia-allocator", "libnvidia-cfg", "libnvidia-opencl", "libnvidia-pkcs11", "libnvidia-pkcs11-openssl3"}

// tools are the driver's utility binaries.
var tools = []string{"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server"}

func (c *PassthroughConfig) root(r, def string) string {
	if r == "" {
		return def
	}
	return r
}

// PlanPassthrough plans the passthrough of sel: from a CDI spec that
// names every selected device, else from NVML's inventory and /dev.
func PlanPassthrough(cfg PassthroughConfig, inv *Inventory, sel []Selected, all bool) (*Passthrough, error) {
	if len(sel) == 0 {
		return nil, nil
	}
	var pt *Passthrough
	if !cfg.NoCDI {
		specs, err := LoadCDI(cfg.CDIDirs)
		if err != nil {
			return nil, err
		}
		if pt, err = specs.plan(sel, all); err != nil {
			return nil, err
		}
		if pt == nil && len(specs.Files) > 0 && cfg.Logger != nil {
			cfg.Logger.Info("gpu: the CDI spec does not name every selected device; planning from NVML and /dev", "specs", specs.Files)
		}
	}
	if pt == nil {
		var err error
		if pt, err = planNVML(cfg, inv, sel); err != nil {
			return nil, err
		}
	}
	pt.Selected = sel
	procRoot := cfg.root(cfg.ProcRoot, "/proc")
	if b, err := os.ReadFile(filepath.Join(procRoot, "driver/nvidia/params")); err == nil {
		pt.Params = disableNodeModification(b)
	}
	pt.LibraryPath = notCached(cfg.root(cfg.LDCache, "/etc/ld.so.cache"), pt.LibraryPath, pt.Mounts)
	return pt, nil
}

var modifyDeviceFiles = regexp.MustCompile(`(?m)^ModifyDeviceFiles: *1$`)

// disableNodeModification is nvidia-cdi-hook's disable-device-node-
// modification, natively: the driver's user-space then leaves /dev alone.
func disableNodeModification(params []byte) []byte {
	return modifyDeviceFiles.ReplaceAll(params, []byte("ModifyDeviceFiles: 0"))
}

// notCached keeps the folders of dirs whose libraries (among mounts) the
// host's ld.so.cache does not list: ld.so finds the others already. The
// cache stores each library's full path as a NUL-terminated string.
func notCached(cachePath string, dirs []string, mounts []Mount) []string {
	cache, err := os.ReadFile(cachePath)
	var out []string
	for _, d := range dirs {
		served := err == nil
		any := false
		for _, m := range mounts {
			if filepath.Dir(m.Path) != filepath.Clean(d) || !strings.Contains(filepath.Base(m.Path), ".so") {
				continue
			}
			any = true
			if !bytes.Contains(cache, []byte(m.Path+"\x00")) && !bytes.Contains(cache, []byte(soPrefix(m.Path))) {
				served = false
			}
		}
		if !served || !any {
			out = append(out, d)
		}
	}
	return out
}

// soPrefix is "/dir/libX.so." for /dir/libX.so.535.104.05: the cache
// lists the library by its soname (libX.so.1), whose number is not the
// file's.
func soPrefix(p string) string {
	base := filepath.Base(p)
	i := strings.Index(base, ".so.")
	if i < 0 {
		return p + "\x00"
	}
	return filepath.Join(filepath.Dir(p), base[:i+4])
}

// defaultLibDirs are where distributions put the driver's libraries.
func defaultLibDirs() []string {
	triple := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	return []string{"/usr/lib/" + triple, "/lib/" + triple, "/usr/lib64", "/usr/lib", "/lib64"}
}

// planNVML plans without CDI: the control nodes and /dev/nvidiaN (plus the
// MIG capability nodes) under DevRoot, the driver's libraries of the
// version NVML reports, its tools, and their soname links.
func planNVML(cfg PassthroughConfig, inv *Inventory, sel []Selected) (*Passthrough, error) {
	devRoot := cfg.root(cfg.DevRoot, "/")
	procRoot := cfg.root(cfg.ProcRoot, "/proc")
	pt := &Passthrough{Source: "nvml"}
	addNode := func(p string, required bool) error {
		host := filepath.Join(devRoot, p)
		if _, err := os.Stat(host); err != nil {
			if required {
				return fmt.Errorf("gpu passthrough: device node %s: %w; is the NVIDIA kernel module loaded (nvidia-modprobe)?", host, err)
			}
			pt.Notes = append(pt.Notes, fmt.Sprintf("%s is not on this host: not passed", p))
			return nil
		}
		for _, n := range pt.Nodes {
			if n.Path == p {
				return nil
			}
		}
		pt.Nodes = append(pt.Nodes, Node{Path: p, HostPath: host})
		return nil
	}
	for i, n := range controlNodes {
		if err := addNode(n, i < 2); err != nil { // nvidiactl and nvidia-uvm are a must for CUDA
			return nil, err
		}
	}
	for _, s := range sel {
		if s.Minor < 0 {
			return nil, fmt.Errorf("gpu passthrough: NVML gave no minor number for GPU %d", s.Index)
		}
		if err := addNode(fmt.Sprintf("/dev/nvidia%d", s.Minor), true); err != nil {
			return nil, err
		}
		if s.MIG != nil {
			base := filepath.Join(procRoot, "driver/nvidia/capabilities", fmt.Sprintf("gpu%d", s.Minor), "mig",
				fmt.Sprintf("gi%d", s.MIG.GPUInstance))
			for _, f := range []string{filepath.Join(base, "access"), filepath.Join(base, fmt.Sprintf("ci%d", s.MIG.ComputeInstance), "access")} {
				minor, err := capMinor(f)
				if err != nil {
					return nil, fmt.Errorf("gpu passthrough: MIG device %s: %w", s.UUID, err)
				}
				if err := addNode(fmt.Sprintf("/dev/nvidia-caps/nvidia-cap%d", minor), true); err != nil {
					return nil, err
				}
			}
		}
	}
	if inv == nil || inv.DriverVersion == "" {
		return nil, fmt.Errorf("gpu passthrough: NVML reported no driver version, so its libraries cannot be found")
	}
	libDirs := cfg.LibDirs
	if libDirs == nil {
		libDirs = defaultLibDirs()
	}
	seen := map[string]bool{}
	for _, lib := range computeLibs {
		for _, d := range libDirs {
			p := filepath.Join(d, lib+".so."+inv.DriverVersion)
			real, err := filepath.EvalSymlinks(p)
			if err != nil || seen[real] {
				continue
			}
			seen[real] = true
			pt.Mounts = append(pt.Mounts, Mount{Path: p, HostPath: p})
			pt.Symlinks = append(pt.Symlinks, Symlink{Path: filepath.Join(d, lib+".so.1"), Target: filepath.Base(p)})
			if lib == "libcuda" {
				pt.Symlinks = append(pt.Symlinks, Symlink{Path: filepath.Join(d, "libcuda.so"), Target: "libcuda.so.1"})
			}
			if !contains(pt.LibraryPath, d) {
				pt.LibraryPath = append(pt.LibraryPath, d)
			}
			break
		}
	}
	if len(pt.Mounts) == 0 {
		return nil, fmt.Errorf("gpu passthrough: no driver library of version %s in %s", inv.DriverVersion, strings.Join(libDirs, ", "))
	}
	binDirs := cfg.BinDirs
	if binDirs == nil {
		binDirs = []string{"/usr/bin", "/bin"}
	}
	for _, t := range tools {
		for _, d := range binDirs {
			p := filepath.Join(d, t)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				pt.Mounts = append(pt.Mounts, Mount{Path: p, HostPath: p})
				break
			}
		}
	}
	return pt, nil
}

// capMinor reads "DeviceFileMinor: N" from a MIG capability access file.
func capMinor(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "DeviceFileMinor:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, fmt.Errorf("%s: %q: %w", path, line, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no DeviceFileMinor line", path)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// sortNodes orders nodes by path, for stable plans and output.
func sortNodes(n []Node) {
	sort.Slice(n, func(i, j int) bool { return n[i].Path < n[j].Path })
}
