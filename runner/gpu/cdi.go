package gpu

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"tags.cncf.io/container-device-interface/pkg/cdi"
	specs "tags.cncf.io/container-device-interface/specs-go"
)

// CDIKind is the device kind the NVIDIA Container Toolkit's specs declare.
const CDIKind = "nvidia.com/gpu"

// CDISpecs are the NVIDIA CDI specs found on the host.
type CDISpecs struct {
	cache *cdi.Cache
	// Dirs are the directories searched; Files the nvidia.com/gpu specs.
	Dirs  []string `json:"dirs"`
	Files []string `json:"files,omitempty"`
	// Errors are specs that failed to load, by file.
	Errors map[string]string `json:"errors,omitempty"`
}

// LoadCDI reads the CDI specs in dirs (nil: /etc/cdi and /var/run/cdi)
// with the CDI project's own loader, which validates them and resolves
// a device named in two specs by the directories' priority.
func LoadCDI(dirs []string) (*CDISpecs, error) {
	if dirs == nil {
		dirs = cdi.DefaultSpecDirs
	}
	c, err := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	if err != nil && c == nil {
		return nil, fmt.Errorf("read CDI specs in %s: %w", strings.Join(dirs, ", "), err)
	}
	s := &CDISpecs{cache: c, Dirs: dirs}
	for _, sp := range c.GetVendorSpecs("nvidia.com") {
		if sp.Kind == CDIKind {
			s.Files = append(s.Files, sp.GetPath())
		}
	}
	sort.Strings(s.Files)
	for path, errs := range c.GetErrors() {
		if s.Errors == nil {
			s.Errors = map[string]string{}
		}
		var msgs []string
		for _, e := range errs {
			msgs = append(msgs, e.Error())
		}
		s.Errors[path] = strings.Join(msgs, "; ")
	}
	return s, nil
}

// names are the CDI device names nvidia-ctk gives s, most stable first.
func cdiNames(s Selected) []string {
	n := []string{CDIKind + "=" + s.UUID}
	if s.MIG != nil {
		return append(n, fmt.Sprintf("%s=%d:%d", CDIKind, s.Index, s.MIG.Index))
	}
	return append(n, fmt.Sprintf("%s=%d", CDIKind, s.Index))
}

// plan merges the container edits of the spec-wide section and each
// selected device (of "all" when every device is selected and the spec
// has it). It returns nil when a selected device is not in any spec.
func (s *CDISpecs) plan(sel []Selected, all bool) (*Passthrough, error) {
	if s.cache == nil || len(s.Files) == 0 {
		return nil, nil
	}
	var devs []*cdi.Device
	if all {
		if d := s.cache.GetDevice(CDIKind + "=all"); d != nil {
			devs = append(devs, d)
		}
	}
	if devs == nil {
		for _, x := range sel {
			var found *cdi.Device
			for _, n := range cdiNames(x) {
				if found = s.cache.GetDevice(n); found != nil {
					break
				}
			}
			if found == nil {
				return nil, nil
			}
			devs = append(devs, found)
		}
	}
	pt := &Passthrough{Source: "cdi"}
	specSeen := map[*cdi.Spec]bool{}
	var edits []*specs.ContainerEdits
	for _, d := range devs {
		pt.CDINames = append(pt.CDINames, d.GetQualifiedName())
		sp := d.GetSpec()
		if !specSeen[sp] {
			specSeen[sp] = true
			pt.SpecFiles = append(pt.SpecFiles, sp.GetPath())
			edits = append(edits, &sp.ContainerEdits)
		}
		edits = append(edits, &d.ContainerEdits)
	}
	for _, e := range edits {
		if err := pt.apply(e); err != nil {
			return nil, err
		}
	}
	sortNodes(pt.Nodes)
	return pt, nil
}

// apply adds one set of container edits: device nodes, mounts and
// environment as they are; hooks by what they would have done.
func (pt *Passthrough) apply(e *specs.ContainerEdits) error {
	for _, n := range e.DeviceNodes {
		if n == nil {
			continue
		}
		if !filepath.IsAbs(n.Path) {
			return fmt.Errorf("CDI device node %q: path must be absolute", n.Path)
		}
		host := n.HostPath
		if host == "" {
			host = n.Path
		}
		dup := false
		for _, x := range pt.Nodes {
			dup = dup || x.Path == n.Path
		}
		if !dup {
			pt.Nodes = append(pt.Nodes, Node{Path: filepath.Clean(n.Path), HostPath: filepath.Clean(host)})
		}
	}
	for _, m := range e.Mounts {
		if m == nil {
			continue
		}
		if !filepath.IsAbs(m.HostPath) || !filepath.IsAbs(m.ContainerPath) {
			return fmt.Errorf("CDI mount %s -> %s: paths must be absolute", m.HostPath, m.ContainerPath)
		}
		for _, o := range m.Options {
			if o == "rw" {
				pt.Notes = append(pt.Notes, fmt.Sprintf("mount %s asks for rw: bound read-only", m.ContainerPath))
			}
		}
		pt.Mounts = append(pt.Mounts, Mount{Path: filepath.Clean(m.ContainerPath), HostPath: filepath.Clean(m.HostPath)})
	}
	pt.Env = append(pt.Env, e.Env...)
	for _, h := range e.Hooks {
		if h != nil {
			pt.hook(h)
		}
	}
	if len(e.AdditionalGIDs) > 0 {
		pt.Notes = append(pt.Notes, fmt.Sprintf("additional GIDs %v not given: the agent's groups are the policy's", e.AdditionalGIDs))
	}
	return nil
}

// hook turns an nvidia-cdi-hook (or older `nvidia-ctk hook`) call into its
// effect; nemoclaw runs no host program inside the sandbox's setup.
func (pt *Passthrough) hook(h *specs.Hook) {
	args := h.Args
	if len(args) > 0 {
		args = args[1:] // argv[0]
	}
	if len(args) > 0 && args[0] == "hook" {
		args = args[1:] // nvidia-ctk hook ...
	}
	if len(args) == 0 {
		pt.Notes = append(pt.Notes, fmt.Sprintf("hook %s without arguments: ignored", h.Path))
		return
	}
	sub, flags := args[0], args[1:]
	values := func(name string) []string {
		var out []string
		for i := 0; i < len(flags); i++ {
			f := flags[i]
			if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
				out = append(out, v)
			} else if f == "--"+name && i+1 < len(flags) {
				out = append(out, flags[i+1])
				i++
			}
		}
		return out
	}
	switch sub {
	case "create-symlinks":
		for _, l := range values("link") {
			target, link, ok := strings.Cut(l, "::")
			if !ok || !filepath.IsAbs(link) {
				pt.Notes = append(pt.Notes, fmt.Sprintf("create-symlinks --link %q: not target::/absolute/link, ignored", l))
				continue
			}
			pt.Symlinks = append(pt.Symlinks, Symlink{Path: filepath.Clean(link), Target: target})
		}
	case "update-ldcache":
		for _, f := range values("folder") {
			if filepath.IsAbs(f) && !contains(pt.LibraryPath, filepath.Clean(f)) {
				pt.LibraryPath = append(pt.LibraryPath, filepath.Clean(f))
			}
		}
	case "chmod":
		pt.Notes = append(pt.Notes, fmt.Sprintf("chmod %s: the sandbox makes its device directories 0755 and keeps the host nodes' modes", strings.Join(values("path"), " ")))
	case "disable-device-node-modification":
		// Done for every plan: PlanPassthrough binds the params file.
	case "enable-cuda-compat":
		pt.Notes = append(pt.Notes, "enable-cuda-compat: not applied; the sandbox runs the host's own driver libraries, which need no forward-compatibility libraries")
	default:
		pt.Notes = append(pt.Notes, fmt.Sprintf("hook %s %s: not run; nemoclaw runs no host program inside the sandbox's setup", filepath.Base(h.Path), sub))
	}
}

// CDIStatus is doctor's view of the CDI specs.
type CDIStatus struct {
	Files []string `json:"files,omitempty"`
	// Current is false when the spec lags the driver or the hardware.
	Current  bool     `json:"current"`
	Problems []string `json:"problems,omitempty"`
}

// CheckCDI says whether an NVIDIA CDI spec is present and current: every
// GPU and MIG device of inv is named in it, and every file it names exists
// and belongs to the running driver's version.
func CheckCDI(dirs []string, inv *Inventory) CDIStatus {
	s, err := LoadCDI(dirs)
	if err != nil {
		return CDIStatus{Problems: []string{err.Error()}}
	}
	st := CDIStatus{Files: s.Files, Current: len(s.Files) > 0}
	for f, e := range s.Errors {
		st.Problems = append(st.Problems, fmt.Sprintf("%s: %s", f, e))
		st.Current = false
	}
	if len(s.Files) == 0 {
		return st
	}
	if inv != nil {
		for _, d := range inv.Devices {
			for _, u := range units(d) {
				found := false
				for _, n := range cdiNames(u) {
					found = found || s.cache.GetDevice(n) != nil
				}
				if !found {
					st.Problems = append(st.Problems, fmt.Sprintf("device %s is not in the spec", u.UUID))
					st.Current = false
				}
			}
		}
	}
	seen := map[string]bool{}
	check := func(e *specs.ContainerEdits) {
		for _, m := range e.Mounts {
			if m == nil || seen[m.HostPath] {
				continue
			}
			seen[m.HostPath] = true
			if _, err := os.Stat(m.HostPath); err != nil {
				st.Problems = append(st.Problems, fmt.Sprintf("%s is missing", m.HostPath))
				st.Current = false
			} else if inv != nil && inv.DriverVersion != "" && strings.Contains(filepath.Base(m.HostPath), ".so.") &&
				versioned.MatchString(m.HostPath) && !strings.HasSuffix(m.HostPath, ".so."+inv.DriverVersion) {
				st.Problems = append(st.Problems, fmt.Sprintf("%s is not of the running driver %s", m.HostPath, inv.DriverVersion))
				st.Current = false
			}
		}
	}
	for _, sp := range s.cache.GetVendorSpecs("nvidia.com") {
		check(&sp.ContainerEdits)
		for _, d := range sp.Devices {
			check(&d.ContainerEdits)
		}
	}
	if !st.Current && len(st.Problems) > 0 {
		st.Problems = append(st.Problems, "regenerate it: sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml")
	}
	return st
}

// versioned matches the libraries whose name carries the driver's version
// (other libraries in a spec, such as EGL's, have versions of their own).
var versioned = regexp.MustCompile(`/(libcuda|libnvidia-ml|libnvidia-ptxjitcompiler)\.so\.[0-9]+\.[0-9]+(\.[0-9]+)?$`)
