package sandbox

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Opcodes of the init program; keep in step with nsinit.c.
const (
	opHostname         = 1
	opMount            = 2
	opMkdir            = 3
	opSymlink          = 4
	opMkfile           = 5
	opUmount           = 8
	opRmdir            = 9
	opWriteOptional    = 10
	opListen           = 12
	opRlimit           = 13
	opBindFile         = 14
	opDumpable0        = 15
	opStopTimeout      = 18
	opBindAccess       = 19
	opProtect          = 28
	opChown            = 16
	opBindWorkspace    = 17
	opLandlockRuleset  = 20
	opLandlockPath     = 21
	opLandlockPort     = 22
	opMountAttr        = 23
	opNoNewPrivs       = 30
	opCapBset          = 31
	opSecurebits       = 32
	opSetIDs           = 33
	opCapClear         = 34
	opLandlockRestrict = 35
	opSeccomp          = 36
	opExec             = 37
	// Join requests (join.go), sent once the agent runs.
	opJoin       = 40
	opJoinSignal = 41
)

// secbits locks root-is-special semantics off: NOROOT(+LOCKED) and
// NO_CAP_AMBIENT_RAISE(+LOCKED).
const secbits = 1<<0 | 1<<1 | 1<<6 | 1<<7

// program is the init's instruction list: records of u32 opcode, u32
// nargs, then each argument as u32 length + bytes. Numbers are u64.
type program struct{ b []byte }

func (p *program) op(code uint32, step string, args ...any) {
	p.b = binary.LittleEndian.AppendUint32(p.b, code)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(args)+1))
	p.str(step)
	for _, a := range args {
		switch v := a.(type) {
		case string:
			p.str(v)
		case []byte:
			p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(v)))
			p.b = append(p.b, v...)
		case int:
			p.num(uint64(v))
		case uint64:
			p.num(v)
		case uintptr:
			p.num(uint64(v))
		default:
			panic(fmt.Sprintf("program: argument of type %T", a))
		}
	}
}

func (p *program) str(s string) {
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
}

func (p *program) num(v uint64) {
	p.b = binary.LittleEndian.AppendUint32(p.b, 8)
	p.b = binary.LittleEndian.AppendUint64(p.b, v)
}

// oldRoot is where the host's root sits between pivot_root and its detach.
const oldRoot = "/.oldroot"

// ownTop are the sandbox root's entries that are never the host's.
var ownTop = map[string]bool{"proc": true, "dev": true, "tmp": true, "run": true, "sandbox": true, oldRoot[1:]: true, "nemoclaw": true}

// The init's program, in DESIGN §6's order, runs after nsinit.c's fixed
// skeleton. It is compiled in two parts that the init receives one after
// the other: compileMounts, which needs little of the plan and is sent as
// soon as it is made, and compileRest. The init runs the setup operations
// as they arrive, so the mounts overlap the launcher's remaining planning.

// compileMounts is the program's first part: hostname, the host's
// top-level directories the policy reaches, /tmp, /run and the workspace.
// hostRoot lists the host's top-level entries (read by the launcher: the
// init sees the same root before it pivots).
func compileMounts(sp *spec, hostRoot []os.DirEntry) ([]byte, error) {
	var p program
	p.op(opHostname, "uts: sethostname", sp.Name)
	mount := func(step, src, dst, fstype string, flags uintptr, data string) {
		p.op(opMount, "mount: "+step, src, dst, fstype, flags, data)
	}
	// nsinit.c's skeleton has already made propagation private, pivoted
	// into a tmpfs root (the host's at oldRoot), mounted /proc and /dev
	// and brought lo up: the program adds what the policy decides.
	for _, e := range hostRoot {
		name := e.Name()
		if ownTop[name] {
			continue
		}
		src, dst := oldRoot+"/"+name, "/"+name
		if sp.HostTop != nil && !sp.HostTop[name] && e.Type()&os.ModeSymlink == 0 {
			continue // nothing of the policy lies under it
		}
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink("/" + name)
			if err != nil {
				return nil, fmt.Errorf("read host root: %w", err)
			}
			p.op(opSymlink, "mount: "+dst, target, dst)
			continue
		case e.IsDir():
			p.op(opMkdir, "mount: "+dst, dst, 0o755)
			mount(dst, src, dst, "", unix.MS_BIND|unix.MS_REC, "")
		case e.Type().IsRegular():
			p.op(opMkfile, "mount: "+dst, dst, 0o644)
			mount(dst, src, dst, "", unix.MS_BIND, "")
		default:
			continue
		}
		// Read-only, all of it: Landlock does not check chmod, chown,
		// utimes or setxattr, and a rootless agent owns its user's files
		// (~/.ssh). accessBinds binds read_write paths again, writable.
		p.op(opMountAttr, "mount: "+dst+" read-only", dst, uint64(unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV))
	}
	withOpts := func(mode, limits string) string {
		if limits == "" {
			return mode
		}
		return mode + "," + limits
	}
	for _, d := range [][2]string{{"/tmp", withOpts("mode=1777", sp.Tmpfs.Tmp)}, {"/run", withOpts("mode=0755", sp.Tmpfs.Run)}} {
		p.op(opMkdir, "mount: "+d[0], d[0], 0o755)
		mount(d[0], "tmpfs", d[0], "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, d[1])
	}
	if sp.Tmpfs.Shm != "" {
		// The skeleton mounted /dev/shm before the limit was known.
		mount("/dev/shm size", "tmpfs", "/dev/shm", "tmpfs", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV, withOpts("mode=1777", sp.Tmpfs.Shm))
	}
	p.op(opMkdir, "mount: "+Workdir, Workdir, 0o755)
	switch {
	case sp.Workspace != "":
		// As root idmapped, so that the agent owns what the directory's
		// owner owns and nothing on the host changes hands. Rootless as
		// it is: the user namespace maps the agent onto the caller, who
		// owns (or may use) the directory already.
		step := "workspace: mount"
		if sp.WorkspaceUIDMap != "" {
			step = "workspace: idmapped mount"
		}
		p.op(opBindWorkspace, step, oldRoot+sp.Workspace, Workdir, sp.WorkspaceUID, sp.WorkspaceGID, sp.UID, sp.GID,
			sp.WorkspaceDev, sp.WorkspaceIno, sp.WorkspaceUIDMap, sp.WorkspaceGIDMap)
	default:
		// In memory: a directory of the private /tmp's tmpfs, so the two
		// share one size limit (the memory limit) instead of each having it.
		const dir = "/tmp/.nemoclaw-workspace"
		p.op(opMkdir, "mount: "+Workdir+" (in /tmp's tmpfs)", dir, 0o700)
		p.op(opChown, "mount: "+Workdir+" (in /tmp's tmpfs)", dir, sp.UID, sp.GID)
		mount(Workdir+" (in /tmp's tmpfs)", dir, Workdir, "", unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV, "")
	}
	compileTools(&p, sp.Tools)
	return p.b, nil
}

// compileRest is the rest of the program: files, detaching the host's
// root, listeners, limits, Landlock and the agent's section.
func compileRest(sp *spec) []byte {
	var p program
	mount := func(step, src, dst, fstype string, flags uintptr, data string) {
		p.op(opMount, "mount: "+step, src, dst, fstype, flags, data)
	}
	compileDevices(&p, sp.Devices)
	for _, b := range sp.Binds {
		from := ""
		if b.From != "" {
			from = oldRoot + b.From
		}
		p.op(opBindFile, "mount: file "+b.Dst, b.Data, filepath.Clean(b.Dst), from)
	}
	for _, b := range sp.AccessBinds {
		ro := 0
		if b.ReadOnly {
			ro = 1
		}
		p.op(opBindAccess, "mount: filesystem_policy "+b.Path, b.Path, ro, b.Anchor, b.kind())
	}
	// Last, over whatever the binds above put there.
	for _, h := range sp.Hide {
		step := "mount: $NEMOCLAW_HOME hidden at " + h.Path
		if h.Pin {
			step = "mount: $NEMOCLAW_HOME's parent " + h.Path + " pinned"
		}
		p.op(opBindAccess, step, h.Path, 1, h.Anchor, h.kind())
	}
	// After the access binds, which may make a tree read-write again.
	for _, path := range sp.Protect {
		p.op(opProtect, "workspace: keep "+path+" read-only (filesystem_policy.allow_host_executable_writes)", path)
	}
	p.op(opUmount, "mount: detach host root", oldRoot, unix.MNT_DETACH)
	p.op(opRmdir, "mount: detach host root", oldRoot)
	// The root tmpfs holds only mount points: freeze it.
	mount("read-only root", "none", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
	if sp.MemfdNoexec {
		// memfd_noexec=2 in this pid namespace: memfds are never
		// executable (fexecve through /proc); memfd_create stays.
		p.op(opWriteOptional, "memfd_noexec", "/proc/sys/vm/memfd_noexec", "2", "executable memfds stay possible through /proc/self/fd")
	}
	if sp.Network.ProxyPort > 0 {
		p.op(opListen, fmt.Sprintf("network: listen 127.0.0.1:%d", sp.Network.ProxyPort), lnProxy, unix.SOCK_STREAM, unix.IPPROTO_TCP, sp.Network.ProxyPort)
	}
	if sp.Network.DNS {
		p.op(opListen, "network: listen 127.0.0.1:53/udp", lnDNSUDP, unix.SOCK_DGRAM, unix.IPPROTO_UDP, 53)
		p.op(opListen, "network: listen 127.0.0.1:53/tcp", lnDNSTCP, unix.SOCK_STREAM, unix.IPPROTO_TCP, 53)
	}
	if sp.Network.Inference {
		a := uint64(InferenceAddr[0])<<24 | uint64(InferenceAddr[1])<<16 | uint64(InferenceAddr[2])<<8 | uint64(InferenceAddr[3])
		p.op(opListen, "network: listen 127.0.0.2:80 (inference.local)", lnInfHTTP, unix.SOCK_STREAM, unix.IPPROTO_TCP, 80, a)
		p.op(opListen, "network: listen 127.0.0.2:443 (inference.local)", lnInfHTTPS, unix.SOCK_STREAM, unix.IPPROTO_TCP, 443, a)
	}
	for _, r := range sp.Rlimits {
		p.op(opRlimit, "rlimit: "+r.Name, r.Resource, r.Value)
	}
	p.op(opStopTimeout, "stop timeout", uint64(sp.StopTimeoutMs)) // -1: none
	p.op(opDumpable0, "dumpable")
	ll := sp.Landlock
	if ll.ABI > 0 {
		p.op(opLandlockRuleset, "landlock: create ruleset", ll.HandledFS, ll.HandledNet, ll.Scoped)
		for _, r := range ll.Rules {
			p.op(opLandlockPath, "landlock: add rule "+r.Path, r.Path, r.Access, uint64(fsFileOnly), r.Anchor)
		}
		for _, r := range ll.Ports {
			p.op(opLandlockPort, fmt.Sprintf("landlock: add port rule %d", r.Port), r.Port, r.Access)
		}
	}
	// The agent's side of the fork.
	p.op(opNoNewPrivs, "no_new_privs")
	p.op(opCapBset, "capabilities: bounding set")
	p.op(opSecurebits, "capabilities: securebits", secbits)
	if sp.SetIDs {
		p.op(opSetIDs, "credentials", sp.GID, sp.UID)
	}
	p.op(opCapClear, "capabilities: clear")
	if ll.ABI > 0 {
		p.op(opLandlockRestrict, "landlock: restrict")
	}
	p.op(opSeccomp, "seccomp: load", sp.Seccomp)
	p.exec(sp.Argv, sp.Dir, sp.TTY, sp.Env)
	return p.b
}

// exec appends the operation that execs argv in dir with env, on the
// terminal on fd 0 as the controlling one when tty: the agent's, and a
// joined process's (join.go).
func (p *program) exec(argv []string, dir string, tty bool, env []string) {
	t := 0
	if tty {
		t = 1
	}
	args := []any{argv[0], dir, t, len(argv)}
	for _, a := range argv {
		args = append(args, a)
	}
	for _, e := range env {
		args = append(args, e)
	}
	p.op(opExec, "exec "+argv[0], args...)
}
