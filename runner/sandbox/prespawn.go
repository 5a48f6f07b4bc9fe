package sandbox

// int nc_prespawn_take(int *pid, int *pidfd, int *flags);
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// takePrespawned hands over the init that nsinit.c's constructor cloned
// into new namespaces before the Go runtime started, if this process has
// one (only once). It returns the init's status socket, pid and pidfd.
func takePrespawned(rootless bool) (int, *pidfdProc, bool) {
	var pid, pidfd, flags C.int
	fd := C.nc_prespawn_take(&pid, &pidfd, &flags)
	if fd < 0 {
		return -1, nil, false
	}
	proc := &pidfdProc{pid: int(pid), fd: int(pidfd)}
	if (flags&unix.CLONE_NEWUSER != 0) != rootless {
		proc.abandon(int(fd))
		return -1, nil, false
	}
	return int(fd), proc, true
}

// pidfdProc is the pre-spawned init, signalled through its pidfd (which
// never reaches a recycled pid) and reaped with wait4. It avoids
// os.FindProcess, whose first use probes pidfd support by forking.
type pidfdProc struct {
	pid, fd int
}

// Signal sends sig to the init.
func (p *pidfdProc) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return errors.New("unsupported signal type")
	}
	err := unix.PidfdSendSignal(p.fd, s, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Kill sends SIGKILL to the init.
func (p *pidfdProc) Kill() error { return p.Signal(syscall.SIGKILL) }

// wait reaps the init, then closes the pidfd.
func (p *pidfdProc) wait() (syscall.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(p.pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		unix.Close(p.fd)
		if err != nil {
			return 0, fmt.Errorf("wait for init %d: %w", p.pid, err)
		}
		return syscall.WaitStatus(ws), nil
	}
}

// abandon ends an init that will not be used: it closes its socket, kills
// it and reaps it in the background.
func (p *pidfdProc) abandon(sock int) {
	unix.Close(sock)
	_ = p.Kill()
	go func() { _, _ = p.wait() }()
}

// startPrespawned starts the sandbox in the pre-spawned init when there is
// one and the run fits it: this binary as the init, and streams that are
// files (or a TTY). It reports false when the exec path must be used.
func (sb *Sandbox) startPrespawned(cfg Config, rootless bool, uid, gid int, specR, pts *os.File) bool {
	if cfg.InitPath != "" {
		return false
	}
	var streams [3]*os.File
	if pts != nil {
		streams = [3]*os.File{pts, pts, pts}
	} else {
		var null *os.File
		for i, s := range []any{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
			switch f := s.(type) {
			case *os.File:
				streams[i] = f
			case nil:
				if null == nil {
					var err error
					if null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
						return false
					}
					defer null.Close()
				}
				streams[i] = null
			default:
				return false // needs copying goroutines: the exec path has them
			}
		}
	}
	sock, proc, ok := takePrespawned(rootless)
	if !ok {
		return false
	}
	if err := sb.handOver(proc, sock, rootless, uid, gid, streams, specR); err != nil {
		// The exec path will meet the same condition and explain it.
		sb.log.Debug("pre-spawned init not used", "err", err)
		proc.abandon(sock)
		return false
	}
	sb.proc, sb.pid, sb.status = proc, proc.pid, statusFile(sock)
	// The sandbox's own copy: proc's is closed when the init is reaped.
	if fd, err := unix.FcntlInt(uintptr(proc.fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
		sb.pidfd = fd
	}
	sb.waitInit = proc.wait
	sb.reapLater = true
	return true
}

// handOver gives the waiting init its identity and streams: what the exec
// path sets with SysProcAttr and ExtraFiles (its cgroup comes later,
// joinCgroup, once the plan has one).
func (sb *Sandbox) handOver(proc *pidfdProc, sock int, rootless bool, uid, gid int, streams [3]*os.File, specR *os.File) error {
	dir := "/proc/" + strconv.Itoa(proc.pid)
	if rootless {
		for _, w := range [][2]string{
			{"uid_map", fmt.Sprintf("%d %d 1\n", uid, os.Getuid())},
			{"setgroups", "deny"},
			{"gid_map", fmt.Sprintf("%d %d 1\n", gid, os.Getgid())},
		} {
			if err := os.WriteFile(filepath.Join(dir, w[0]), []byte(w[1]), 0); err != nil {
				return fmt.Errorf("id map: %w", err)
			}
		}
	}
	rights := unix.UnixRights(int(streams[0].Fd()), int(streams[1].Fd()), int(streams[2].Fd()), int(specR.Fd()))
	if err := unix.Sendmsg(sock, []byte("go"), rights, nil, 0); err != nil {
		return fmt.Errorf("hand over: %w", err)
	}
	return nil
}

// joinCgroup moves the pre-spawned init (still alone: its agent does not
// exist yet) into the sandbox's cgroup.
func joinCgroup(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}
