package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaybeInit runs the sandbox init and exits when the process was started in
// the hidden init mode (argv[1] == "__sandbox-init"); otherwise it returns at
// once. Call it first thing in main.
func MaybeInit() {
	if len(os.Args) < 2 || os.Args[1] != initArg {
		return
	}
	os.Exit(runInit())
}

// runInit is the sandbox's pid 1.
func runInit() int {
	status := statusFD
	send := func(m *statusMsg, fds []int) error {
		b, _ := json.Marshal(m)
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		return unix.Sendmsg(status, b, oob, nil, 0)
	}
	fail := func(e *StepError) int {
		_ = send(&statusMsg{Error: e.wire()}, nil)
		return 1
	}
	var sp spec
	specFile := os.NewFile(specFD, "spec")
	if err := json.NewDecoder(specFile).Decode(&sp); err != nil {
		return fail(stepErr("spec: decode", err))
	}
	specFile.Close()
	unix.CloseOnExec(status)

	var notes []string
	if err := unix.Sethostname([]byte(sp.Name)); err != nil {
		return fail(stepErr("uts: sethostname", err))
	}
	if e := setupMounts(&sp); e != nil {
		return fail(e)
	}
	if sp.MemfdNoexec {
		// memfd_noexec=2 in this pid namespace: memfds are never executable,
		// which closes fexecve-through-/proc of a memfd (execveat is
		// seccomp's job). memfd_create itself stays available.
		if err := os.WriteFile("/proc/sys/vm/memfd_noexec", []byte("2"), 0); err != nil {
			notes = append(notes, "memfd_noexec: "+err.Error()+": executable memfds stay possible through /proc/self/fd")
		}
	}
	if e := setupLoopback(); e != nil {
		return fail(e)
	}
	names, fds, e := makeListeners(sp.Network)
	if e != nil {
		return fail(e)
	}
	argv0, e := lookPath(sp.Argv[0], sp.Env)
	if e != nil {
		return fail(e)
	}
	for _, r := range sp.Rlimits {
		lim := unix.Rlimit{Cur: r.Value, Max: r.Value}
		if err := unix.Setrlimit(r.Resource, &lim); err != nil {
			return fail(stepErr("rlimit: "+r.Name, err))
		}
	}

	// Signals are caught before the agent exists so no SIGCHLD is lost.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)

	type started struct {
		pid   int
		notes []string
		err   *StepError
	}
	ch := make(chan started, 1)
	go func() {
		// This thread takes the agent's credentials and restrictions
		// and forks the agent; it is never unlocked, so the Go runtime
		// retires it when the goroutine ends.
		runtime.LockOSThread()
		pid, n, e := restrictAndExec(&sp, argv0)
		ch <- started{pid, n, e}
	}()
	st := <-ch
	if st.err != nil {
		return fail(st.err)
	}
	notes = append(notes, st.notes...)
	if err := send(&statusMsg{Ready: true, Listeners: names, Notes: notes}, fds); err != nil {
		unix.Kill(st.pid, unix.SIGKILL)
		return 1
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	es := reap(st.pid, sigs)
	_ = send(&statusMsg{Exit: &es}, nil)
	return es.Code
}

// reap is pid 1's loop: it reaps every child, forwards signals to the
// agent's process group and, once the agent is gone, kills what is left.
func reap(agent int, sigs chan os.Signal) exitStatus {
	var es exitStatus
	for sig := range sigs {
		s, _ := sig.(syscall.Signal)
		switch s {
		case unix.SIGCHLD:
			done := false
			for {
				var ws unix.WaitStatus
				pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
				if pid == agent {
					done = true
					switch {
					case ws.Signaled():
						es = exitStatus{Code: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
					default:
						es = exitStatus{Code: ws.ExitStatus()}
					}
				}
			}
			if done {
				signal.Stop(sigs)
				// Nothing outlives the agent: kill(-1) from pid 1
				// reaches every other process of the namespace.
				_ = unix.Kill(-1, unix.SIGKILL)
				for {
					if _, err := unix.Wait4(-1, nil, 0, nil); err == unix.ECHILD {
						break
					}
				}
				return es
			}
		case unix.SIGURG, unix.SIGPIPE, unix.SIGWINCH:
			// runtime preemption, broken status pipe, terminal size: not for the agent
		default:
			if err := unix.Kill(-agent, s); err == unix.ESRCH {
				_ = unix.Kill(agent, s)
			}
		}
	}
	return es
}

// setupMounts builds the sandbox's root: a read-only tmpfs holding bind
// mounts of the host's top-level directories, a fresh /proc, a minimal
// /dev, private /tmp and /run, the workspace at /sandbox and the files.
func setupMounts(sp *spec) *StepError {
	mnt := func(step, src, dst, fstype string, flags uintptr, data string) *StepError {
		if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
			return stepErr("mount: "+step, fmt.Errorf("%s on %s: %w", src, dst, err))
		}
		return nil
	}
	if e := mnt("make / private", "none", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); e != nil {
		return e
	}
	// /tmp exists everywhere; pivot_root moves the new tmpfs away from it,
	// so the host's /tmp stays reachable under /.oldroot for the binds.
	if e := mnt("new root", "tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); e != nil {
		return e
	}
	if err := os.Mkdir("/tmp/.oldroot", 0o700); err != nil {
		return stepErr("mount: new root", err)
	}
	if err := unix.PivotRoot("/tmp", "/tmp/.oldroot"); err != nil {
		return stepErr("mount: pivot_root", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return stepErr("mount: chdir /", err)
	}
	const old = "/.oldroot"
	ents, err := os.ReadDir(old)
	if err != nil {
		return stepErr("mount: read host root", err)
	}
	skip := map[string]bool{".oldroot": true, "proc": true, "dev": true, "tmp": true, "run": true, "sandbox": true}
	for _, e := range ents {
		name := e.Name()
		if skip[name] {
			continue
		}
		src, dst := old+"/"+name, "/"+name
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return stepErr("mount: "+dst, err)
			}
			if err := os.Symlink(target, dst); err != nil {
				return stepErr("mount: "+dst, err)
			}
		case e.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return stepErr("mount: "+dst, err)
			}
			if e := mnt(dst, src, dst, "", unix.MS_BIND|unix.MS_REC, ""); e != nil {
				return e
			}
		case e.Type().IsRegular():
			if err := os.WriteFile(dst, nil, 0o644); err != nil {
				return stepErr("mount: "+dst, err)
			}
			if e := mnt(dst, src, dst, "", unix.MS_BIND, ""); e != nil {
				return e
			}
		}
	}
	// /proc of the new pid namespace (needs the host's /proc still visible).
	if err := os.Mkdir("/proc", 0o555); err != nil {
		return stepErr("mount: /proc", err)
	}
	if e := mnt("/proc", "proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); e != nil {
		return e
	}
	if e := setupDev(mnt, old); e != nil {
		return e
	}
	tmpOpts := "mode=1777"
	if sp.TmpSize != "" {
		tmpOpts += ",size=" + sp.TmpSize
	}
	for _, d := range []struct{ path, opts string }{{"/tmp", tmpOpts}, {"/run", "mode=0755,size=16m"}} {
		if err := os.Mkdir(d.path, 0o755); err != nil {
			return stepErr("mount: "+d.path, err)
		}
		if e := mnt(d.path, "tmpfs", d.path, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, d.opts); e != nil {
			return e
		}
	}
	if err := os.Mkdir(Workdir, 0o755); err != nil {
		return stepErr("mount: "+Workdir, err)
	}
	if e := mnt(Workdir, old+sp.Workspace, Workdir, "", unix.MS_BIND|unix.MS_REC|unix.MS_NOSUID|unix.MS_NODEV, ""); e != nil {
		return e
	}
	for _, b := range sp.Binds {
		if e := bindFile(mnt, old+b.Src, b.Dst); e != nil {
			return e
		}
	}
	if err := unix.Unmount(old, unix.MNT_DETACH); err != nil {
		return stepErr("mount: detach host root", err)
	}
	if err := os.Remove(old); err != nil {
		return stepErr("mount: detach host root", err)
	}
	// The root tmpfs holds only mount points: freeze it.
	if e := mnt("read-only root", "none", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); e != nil {
		return e
	}
	if err := unix.Chdir(Workdir); err != nil {
		return stepErr("mount: chdir "+Workdir, err)
	}
	return nil
}

type mountFunc func(step, src, dst, fstype string, flags uintptr, data string) *StepError

// setupDev makes a minimal /dev: a tmpfs with a few host nodes bound in, a
// private devpts instance, /dev/shm and the usual symlinks.
func setupDev(mnt mountFunc, old string) *StepError {
	if err := os.Mkdir("/dev", 0o755); err != nil {
		return stepErr("mount: /dev", err)
	}
	if e := mnt("/dev", "tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); e != nil {
		return e
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		dst := "/dev/" + n
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return stepErr("mount: "+dst, err)
		}
		if e := mnt(dst, old+dst, dst, "", unix.MS_BIND, ""); e != nil {
			return e
		}
	}
	if err := os.Mkdir("/dev/pts", 0o755); err != nil {
		return stepErr("mount: /dev/pts", err)
	}
	if e := mnt("/dev/pts", "devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); e != nil {
		return e
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err != nil {
		return stepErr("mount: /dev/shm", err)
	}
	if e := mnt("/dev/shm", "tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); e != nil {
		return e
	}
	for link, target := range map[string]string{
		"/dev/ptmx": "pts/ptmx", "/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, link); err != nil {
			return stepErr("mount: "+link, err)
		}
	}
	if e := mnt("/dev read-only", "none", "/dev", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); e != nil {
		return e
	}
	return nil
}

// bindFile bind-mounts src read-only at dst. A missing dst is created only
// inside the sandbox's own tmpfs directories, never on a host bind.
func bindFile(mnt mountFunc, src, dst string) *StepError {
	if _, err := os.Stat(dst); errors.Is(err, os.ErrNotExist) {
		own := false
		for _, d := range []string{"/tmp/", "/run/", "/dev/shm/"} {
			if strings.HasPrefix(dst, d) {
				own = true
			}
		}
		if strings.Count(dst, "/") == 1 {
			own = true
		}
		if !own {
			return stepErr("mount: file "+dst, errors.New("does not exist in the sandbox; files can only be placed over existing paths or under /tmp, /run or /dev/shm"))
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return stepErr("mount: file "+dst, err)
		}
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return stepErr("mount: file "+dst, err)
		}
	}
	if e := mnt("file "+dst, src, dst, "", unix.MS_BIND, ""); e != nil {
		return e
	}
	return mnt("file "+dst+" read-only", "none", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// setupLoopback brings lo up with an ioctl: the netns has nothing else.
func setupLoopback() *StepError {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return stepErr("network: lo", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return stepErr("network: lo", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return stepErr("network: lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return stepErr("network: lo up", err)
	}
	return nil
}

// makeListeners creates the proxy and DNS sockets on 127.0.0.1 inside the
// sandbox's netns. TCP sockets are plain IPPROTO_TCP (never MPTCP).
func makeListeners(n netSpec) ([]string, []int, *StepError) {
	var names []string
	var fds []int
	listen := func(name string, typ, proto, port int) *StepError {
		step := fmt.Sprintf("network: listen 127.0.0.1:%d", port)
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return stepErr(step, err)
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			unix.Close(fd)
			return stepErr(step, err)
		}
		if typ == unix.SOCK_STREAM {
			if err := unix.Listen(fd, 1024); err != nil {
				unix.Close(fd)
				return stepErr(step, err)
			}
		}
		names, fds = append(names, name), append(fds, fd)
		return nil
	}
	if n.ProxyPort > 0 {
		if e := listen(lnProxy, unix.SOCK_STREAM, unix.IPPROTO_TCP, n.ProxyPort); e != nil {
			return nil, nil, e
		}
	}
	if n.DNS {
		if e := listen(lnDNSUDP, unix.SOCK_DGRAM, unix.IPPROTO_UDP, 53); e != nil {
			return nil, nil, e
		}
		if e := listen(lnDNSTCP, unix.SOCK_STREAM, unix.IPPROTO_TCP, 53); e != nil {
			return nil, nil, e
		}
	}
	return names, fds, nil
}

// lookPath finds argv0 in the agent's PATH, inside the sandbox.
func lookPath(argv0 string, env []string) (string, *StepError) {
	isExec := func(p string) bool {
		fi, err := os.Stat(p)
		return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
	}
	if strings.Contains(argv0, "/") {
		if !isExec(argv0) {
			return "", stepErr("exec "+argv0, errors.New("not an executable file in the sandbox"))
		}
		return argv0, nil
	}
	path := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if p := filepath.Join(dir, argv0); isExec(p) {
			return p, nil
		}
	}
	return "", stepErr("exec "+argv0, fmt.Errorf("executable file not found in the sandbox's PATH (%s)", path))
}

// restrictAndExec runs on a locked OS thread: it drops this thread to the
// agent's identity and restrictions, in DESIGN §6's order, and forks the
// agent from it. Every step is per thread, so the init's other threads keep
// their rights.
func restrictAndExec(sp *spec, argv0 string) (int, []string, *StepError) {
	var notes []string
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, nil, stepErr("no_new_privs", err)
	}
	if e := dropBoundingSet(); e != nil {
		return 0, nil, e
	}
	// Lock root-is-special semantics off for good (needs CAP_SETPCAP, so
	// before the caps go).
	const secbits = 1<<0 | 1<<1 | 1<<6 | 1<<7 // NOROOT(+LOCKED), NO_CAP_AMBIENT_RAISE(+LOCKED)
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, secbits, 0, 0, 0); err != nil {
		return 0, nil, stepErr("capabilities: securebits", err)
	}
	if sp.SetIDs {
		if _, _, errno := unix.RawSyscall(unix.SYS_SETGROUPS, 1, uintptr(unsafe.Pointer(&[]uint32{uint32(sp.GID)}[0])), 0); errno != 0 {
			return 0, nil, stepErr("credentials: setgroups", errno)
		}
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(sp.GID), uintptr(sp.GID), uintptr(sp.GID)); errno != 0 {
			return 0, nil, stepErr("credentials: setresgid", errno)
		}
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(sp.UID), uintptr(sp.UID), uintptr(sp.UID)); errno != 0 {
			return 0, nil, stepErr("credentials: setresuid", errno)
		}
	}
	if e := clearCaps(); e != nil {
		return 0, nil, e
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, nil, stepErr("dumpable", err)
	}
	n, e := applyLandlock(&sp.Landlock)
	if e != nil {
		return 0, nil, e
	}
	notes = append(notes, n...)
	if e := loadSeccomp(sp.Seccomp); e != nil {
		return 0, nil, e
	}
	attr := &syscall.ProcAttr{
		Dir:   sp.Dir,
		Env:   sp.Env,
		Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{
			// No Pdeathsig: it fires when the forking thread ends, and
			// this one does at once; the pid namespace dies with the init.
			Setsid:  true,
			Setctty: sp.TTY,
			Ctty:    0,
		},
	}
	pid, err := syscall.ForkExec(argv0, sp.Argv, attr)
	if err != nil {
		return 0, nil, stepErr("exec "+sp.Argv[0], err)
	}
	return pid, notes, nil
}

// dropBoundingSet empties this thread's capability bounding set and checks it.
func dropBoundingSet() *StepError {
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if err == unix.EINVAL {
				break // past the kernel's last capability
			}
			return stepErr(fmt.Sprintf("capabilities: drop bounding %d", c), err)
		}
	}
	for c := 0; c <= 63; c++ {
		r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL {
			break
		}
		if err != nil || r != 0 {
			return stepErr("capabilities: verify bounding set", fmt.Errorf("capability %d still in the bounding set", c))
		}
	}
	return nil
}

// clearCaps empties the ambient, effective, permitted and inheritable sets
// of this thread and checks them.
func clearCaps() *StepError {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return stepErr("capabilities: clear ambient", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return stepErr("capabilities: capset", err)
	}
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return stepErr("capabilities: capget", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return stepErr("capabilities: verify", errors.New("capabilities remain after capset"))
		}
	}
	return nil
}

// applyLandlock enforces the plan on this thread.
func applyLandlock(pl *landlockPlan) ([]string, *StepError) {
	if pl.ABI <= 0 {
		return nil, nil
	}
	attr := unix.LandlockRulesetAttr{Handled_access_fs: pl.HandledFS, Handled_access_net: pl.HandledNet, Scoped: pl.Scoped}
	rfd, err := landlockCreateRuleset(&attr)
	if err != nil {
		return nil, stepErr("landlock: create ruleset", err)
	}
	defer unix.Close(rfd)
	var notes []string
	for _, r := range pl.Rules {
		fd, err := unix.Open(r.Path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				notes = append(notes, fmt.Sprintf("landlock: %s does not exist in the sandbox; its rule grants nothing", r.Path))
				continue
			}
			return nil, stepErr("landlock: open "+r.Path, err)
		}
		access := r.Access
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			access &= fsFileOnly
		}
		if access != 0 {
			err = landlockAddPathRule(rfd, access, fd)
		}
		unix.Close(fd)
		if err != nil {
			return nil, stepErr("landlock: add rule "+r.Path, err)
		}
	}
	for _, p := range pl.Ports {
		if err := landlockAddPortRule(rfd, p.Access, p.Port); err != nil {
			return nil, stepErr(fmt.Sprintf("landlock: add port rule %d", p.Port), err)
		}
	}
	if err := landlockRestrictThread(rfd); err != nil {
		return nil, stepErr("landlock: restrict", err)
	}
	return notes, nil
}

// loadSeccomp installs the compiled filter on this thread (no TSYNC).
func loadSeccomp(prog []byte) *StepError {
	if len(prog) == 0 || len(prog)%8 != 0 {
		return stepErr("seccomp: load", fmt.Errorf("bad program length %d", len(prog)))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog) / 8), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if _, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return stepErr("seccomp: load", errno)
	}
	runtime.KeepAlive(prog)
	return nil
}
