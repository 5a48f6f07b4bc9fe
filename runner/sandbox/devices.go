package sandbox

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Devices is what a sandbox is given of the host's devices: GPU
// passthrough (runner/gpu plans it). Only the nodes listed exist in the
// sandbox's /dev, and Landlock allows reading, writing and ioctl on exactly
// those; files are bound read-only.
type Devices struct {
	// Nodes are device nodes: HostPath bound at Path, under /dev.
	Nodes []DeviceNode
	// Files are driver files or directories bound read-only at Path. One
	// whose HostPath is Path is already visible through the host's
	// read-only directories and only gets a Landlock rule.
	Files []DeviceNode
	// Links are symlinks (Path -> Target) the driver's files need. One
	// that the host has already is left as it is; one in a read-only host
	// directory is made in LinkDir instead, which goes on LD_LIBRARY_PATH.
	Links []DeviceLink
	// Env is added to the agent's environment (replacing a same key).
	Env []string
	// LibraryPath is prepended to the agent's LD_LIBRARY_PATH.
	LibraryPath []string
	// ProcWrite grants Landlock's write_file (and truncate) beneath
	// /proc: the CUDA
	// driver names its threads through /proc/self/task/TID/comm and fails
	// cuInit (error 304) when it cannot. Landlock cannot narrow this to
	// the agent's own pid directories, which do not exist yet when the
	// rules are made; what else is writable there is what the kernel
	// allows a process without capabilities (its own comm,
	// oom_score_adj upward, ...).
	ProcWrite bool
	// ProcRead are /proc paths made readable (the driver's
	// /proc/driver/nvidia, read by cuInit), for policies without /proc.
	ProcRead []string
}

// DeviceNode is HostPath bound at Path inside the sandbox.
type DeviceNode struct {
	Path, HostPath string
}

// DeviceLink is a symlink Path -> Target inside the sandbox.
type DeviceLink struct {
	Path, Target string
}

// LinkDir is where libraries and links that cannot be placed at their own
// path go (a driver outside the host's /usr, as the GPU Operator installs
// it): it goes first on LD_LIBRARY_PATH. BinDir is the same for programs
// (nvidia-smi), first on PATH.
const (
	LinkDir = "/run/nemoclaw/gpu/lib"
	BinDir  = "/run/nemoclaw/gpu/bin"
)

// devicesSpec is Devices as planned for the init.
type devicesSpec struct {
	Nodes []deviceBind `json:"nodes,omitempty"`
	Files []deviceBind `json:"files,omitempty"`
	Links []DeviceLink `json:"links,omitempty"`
}

// deviceBind binds From (a host path, resolved) at Dst; Dir for a
// directory; Create when Dst must be made in a sandbox-own tmpfs.
type deviceBind struct {
	From   string `json:"from"`
	Dst    string `json:"dst"`
	Dir    bool   `json:"dir,omitempty"`
	Create bool   `json:"create,omitempty"`
}

// ownTmpfs reports whether p lies in one of the sandbox's own tmpfs mounts,
// where the init may create it.
func ownTmpfs(p string) bool {
	for _, d := range []string{"/dev/", "/run/", "/tmp/"} {
		if strings.HasPrefix(p, d) && !strings.HasPrefix(p, "/dev/shm/") && !strings.HasPrefix(p, "/dev/pts/") {
			return true
		}
	}
	return false
}

// cleanAbs refuses a path that is not absolute and clean, or that lies
// where the agent writes before the init binds (the workspace) or in the
// kernel's /proc and /sys.
func cleanAbs(what, p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%s %q: want a clean absolute path", what, p)
	}
	for _, bad := range []string{Workdir, "/proc", "/sys", oldRoot} {
		if p == bad || strings.HasPrefix(p, bad+"/") {
			return fmt.Errorf("%s %q: nothing may be placed under %s", what, p, bad)
		}
	}
	return nil
}

// plan checks d and decides, from the host's files, what the init does.
func (d *Devices) plan() (*devicesSpec, []string, error) {
	if d == nil {
		return nil, nil, nil
	}
	sp := &devicesSpec{}
	var notes []string
	relocated := map[string]bool{} // base names moved into LinkDir or BinDir
	resolve := func(what, host string) (string, os.FileInfo, error) {
		if !filepath.IsAbs(host) {
			return "", nil, fmt.Errorf("%s: host path %q must be absolute", what, host)
		}
		// The init opens it under the old root, where an absolute
		// symlink would point at the sandbox's own root.
		real, err := filepath.EvalSymlinks(host)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", what, err)
		}
		fi, err := os.Stat(real)
		return real, fi, err
	}
	for _, n := range d.Nodes {
		if err := cleanAbs("device node", n.Path); err != nil {
			return nil, nil, err
		}
		if !strings.HasPrefix(n.Path, "/dev/") || strings.HasPrefix(n.Path, "/dev/shm/") || strings.HasPrefix(n.Path, "/dev/pts/") {
			return nil, nil, fmt.Errorf("device node %q: must lie in /dev (not /dev/shm or /dev/pts)", n.Path)
		}
		from, fi, err := resolve("device node "+n.Path, n.HostPath)
		if err != nil {
			return nil, nil, err
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return nil, nil, fmt.Errorf("device node %s: host %s is not a device", n.Path, from)
		}
		sp.Nodes = append(sp.Nodes, deviceBind{From: from, Dst: n.Path, Create: true})
	}
	for _, f := range d.Files {
		if err := cleanAbs("driver file", f.Path); err != nil {
			return nil, nil, err
		}
		from, fi, err := resolve("driver file "+f.Path, f.HostPath)
		if err != nil {
			return nil, nil, err
		}
		b := deviceBind{From: from, Dst: f.Path, Dir: fi.IsDir()}
		switch {
		case ownTmpfs(f.Path):
			b.Create = true
		case f.Path == f.HostPath:
			// Already there through the host's read-only directories.
			sp.Files = append(sp.Files, deviceBind{Dst: f.Path, Dir: b.Dir})
			continue
		default:
			// Over the file the host has at that path, or else (the host's
			// directories are read-only) relocated.
			dfi, err := os.Stat(f.Path)
			if err == nil && dfi.IsDir() == b.Dir {
				break
			}
			base := filepath.Base(f.Path)
			switch {
			case !b.Dir && strings.Contains(base, ".so"):
				b.Dst, b.Create = path.Join(LinkDir, base), true
			case !b.Dir && fi.Mode().Perm()&0o111 != 0:
				b.Dst, b.Create = path.Join(BinDir, base), true
			default:
				return nil, nil, fmt.Errorf("driver file %s: not on the host to bind %s over; files can be placed at their host path, over one of the same kind, or under /run or /tmp", f.Path, from)
			}
			relocated[base] = true
			notes = append(notes, fmt.Sprintf("devices: %s cannot be made in the read-only host directories: bound at %s", f.Path, b.Dst))
		}
		sp.Files = append(sp.Files, b)
	}
	for _, l := range d.Links {
		if err := cleanAbs("symlink", l.Path); err != nil {
			return nil, nil, err
		}
		if ownTmpfs(l.Path) {
			sp.Links = append(sp.Links, l)
			continue
		}
		if t, err := os.Readlink(l.Path); err == nil && t == l.Target {
			continue // the host has it already
		}
		if _, err := os.Stat(l.Path); err == nil {
			notes = append(notes, fmt.Sprintf("devices: %s exists on the host and is kept; the driver's link to %s is not made", l.Path, l.Target))
			continue
		}
		target := l.Target
		if !filepath.IsAbs(target) && !relocated[target] {
			target = filepath.Join(filepath.Dir(l.Path), target)
		}
		sp.Links = append(sp.Links, DeviceLink{Path: path.Join(LinkDir, filepath.Base(l.Path)), Target: target})
		notes = append(notes, fmt.Sprintf("devices: %s cannot be made in the read-only host directory: made as %s/%s, on LD_LIBRARY_PATH", l.Path, LinkDir, filepath.Base(l.Path)))
	}
	return sp, notes, nil
}

// uses reports whether a link or file was moved into dir.
func (s *devicesSpec) uses(dir string) bool {
	if s == nil {
		return false
	}
	for _, l := range s.Links {
		if strings.HasPrefix(l.Path, dir+"/") {
			return true
		}
	}
	for _, f := range s.Files {
		if strings.HasPrefix(f.Dst, dir+"/") {
			return true
		}
	}
	return false
}

// hostPaths are the sandbox paths that come from the host's directories
// (hostTopNeeded binds their top-level directories).
func (s *devicesSpec) hostPaths() []string {
	if s == nil {
		return nil
	}
	var out []string
	for _, f := range s.Files {
		if !f.Create {
			out = append(out, f.Dst)
		}
	}
	return out
}

// addRules grants the agent the devices' nodes (read, write, ioctl) and
// files (read, execute), and what of /proc the driver needs.
func (s *devicesSpec) addRules(plan *landlockPlan, d *Devices) {
	if s == nil || plan.ABI <= 0 {
		return
	}
	rights := map[string]uint64{}
	for _, r := range plan.Rules {
		rights[r.Path] = r.Access
	}
	add := func(p string, access uint64) {
		rights[p] |= access & plan.HandledFS
	}
	const node = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	for _, n := range s.Nodes {
		add(n.Dst, node)
	}
	for _, f := range s.Files {
		if f.Dir {
			add(f.Dst, fsReadOnly)
		} else {
			add(f.Dst, unix.LANDLOCK_ACCESS_FS_EXECUTE|unix.LANDLOCK_ACCESS_FS_READ_FILE)
		}
	}
	for _, dir := range []string{LinkDir, BinDir} {
		if s.uses(dir) {
			add(dir, fsReadOnly)
		}
	}
	for _, p := range d.ProcRead {
		add(p, fsReadOnly)
	}
	if d.ProcWrite {
		// With truncate: `>` opens with O_TRUNC (a no-op on procfs).
		add("/proc", unix.LANDLOCK_ACCESS_FS_WRITE_FILE|unix.LANDLOCK_ACCESS_FS_TRUNCATE)
	}
	old := map[string]string{}
	for _, r := range plan.Rules {
		old[r.Path] = r.Anchor
	}
	plan.Rules = plan.Rules[:0]
	paths := make([]string, 0, len(rights))
	for p := range rights {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		plan.Rules = append(plan.Rules, pathRule{Path: p, Access: rights[p], Anchor: old[p]})
	}
}

// env adds d's environment and library path to the agent's.
func (s *devicesSpec) env(env []string, d *Devices) []string {
	if s == nil {
		return env
	}
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		for i, e := range env {
			if strings.HasPrefix(e, k+"=") {
				env[i] = kv
				return
			}
		}
		env = append(env, kv)
	}
	for _, e := range d.Env {
		if strings.Contains(e, "=") {
			set(e)
		}
	}
	if s.uses(BinDir) {
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				set("PATH=" + BinDir + ":" + v)
			}
		}
	}
	dirs := append([]string(nil), d.LibraryPath...)
	if s.uses(LinkDir) {
		dirs = append([]string{LinkDir}, dirs...)
	}
	if len(dirs) > 0 {
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, "LD_LIBRARY_PATH="); ok && v != "" {
				dirs = append(dirs, v)
			}
		}
		set("LD_LIBRARY_PATH=" + strings.Join(dirs, ":"))
	}
	return env
}

// compileDevices appends the init's operations for s: while the host's
// root is still at oldRoot, /dev is made writable for a moment, the nodes
// bound into it (and their directories made 0755), then it is read-only
// again; files are bound and made read-only; links are made last.
func compileDevices(p *program, s *devicesSpec) {
	if s == nil {
		return
	}
	made := map[string]bool{"/dev": true, "/run": true, "/tmp": true}
	mkdirs := func(dir string) {
		var todo []string
		for d := dir; !made[d] && d != "/"; d = path.Dir(d) {
			todo = append(todo, d)
		}
		for i := len(todo) - 1; i >= 0; i-- {
			p.op(opMkdir, "devices: "+todo[i], todo[i], 0o755)
			made[todo[i]] = true
		}
	}
	devWrite := false
	for _, l := range s.Links {
		devWrite = devWrite || strings.HasPrefix(l.Path, "/dev/")
	}
	for _, f := range s.Files {
		devWrite = devWrite || (f.Create && strings.HasPrefix(f.Dst, "/dev/"))
	}
	if len(s.Nodes) > 0 || devWrite {
		p.op(opMount, "devices: /dev writable", "none", "/dev", "", uint64(unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NOEXEC), "")
	}
	for _, n := range s.Nodes {
		mkdirs(path.Dir(n.Dst))
		p.op(opMkfile, "devices: "+n.Dst, n.Dst, 0o666)
		p.op(opMount, "devices: "+n.Dst, oldRoot+n.From, n.Dst, "", uint64(unix.MS_BIND), "")
	}
	for _, f := range s.Files {
		if f.From == "" {
			continue // visible already
		}
		if f.Create {
			if f.Dir {
				mkdirs(f.Dst)
			} else {
				mkdirs(path.Dir(f.Dst))
				p.op(opMkfile, "devices: "+f.Dst, f.Dst, 0o444)
			}
		}
		flags := unix.MS_BIND
		if f.Dir {
			flags |= unix.MS_REC
		}
		p.op(opMount, "devices: "+f.Dst, oldRoot+f.From, f.Dst, "", uint64(flags), "")
		p.op(opMountAttr, "devices: "+f.Dst+" read-only", f.Dst, uint64(unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV))
	}
	for _, l := range s.Links {
		mkdirs(path.Dir(l.Path))
		p.op(opSymlink, "devices: link "+l.Path, l.Target, l.Path)
	}
	if len(s.Nodes) > 0 || devWrite {
		p.op(opMount, "devices: /dev read-only", "none", "/dev", "", uint64(unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC), "")
	}
}
