package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ToolsPath is where Config.Tools appears inside the sandbox: a top-level
// directory of the sandbox's own root (a host's /nemoclaw is never shown),
// so that a tools tree under $NEMOCLAW_HOME, which the sandbox hides, can be
// shown without showing anything else of it. A policy names it in
// filesystem_policy.read_only for Landlock to let the agent read and run it.
const ToolsPath = "/nemoclaw/tools"

// toolsBind checks Config.Tools (a host directory, "" for none) and returns
// the real path the init binds.
func toolsBind(dir string) (string, error) {
	if dir == "" {
		return "", nil
	}
	if !filepath.IsAbs(dir) {
		return "", stepErr("tools", fmt.Errorf("%q must be absolute", dir))
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", stepErr("tools", err)
	}
	st, err := os.Stat(real)
	if err != nil || !st.IsDir() {
		return "", stepErr("tools", fmt.Errorf("%s is not a directory (%v)", real, err))
	}
	return real, nil
}

// compileTools binds the host's tools tree read-only (recursively, nosuid,
// nodev: a setuid file in it gives nothing) at ToolsPath, while the host's
// root is still reachable at oldRoot.
func compileTools(p *program, hostDir string) {
	if hostDir == "" {
		return
	}
	p.op(opMkdir, "tools: "+filepath.Dir(ToolsPath), filepath.Dir(ToolsPath), 0o755)
	p.op(opMkdir, "tools: "+ToolsPath, ToolsPath, 0o755)
	p.op(opMount, "tools: bind "+hostDir, oldRoot+hostDir, ToolsPath, "", uintptr(unix.MS_BIND|unix.MS_REC), "")
	p.op(opMountAttr, "tools: "+ToolsPath+" read-only", ToolsPath, uint64(unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV))
}
