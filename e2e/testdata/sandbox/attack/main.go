// Command attack runs escape attempts from inside a nemoclaw sandbox and
// prints one line per attempt: its name, a tab, and what happened — the
// errno name (EACCES, EPERM, ...), OK when the call succeeded, or a word
// that names a leak. The e2e test decides what each result must be.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inheritedFds lists, before anything in this program opens one, the
// descriptors it was started with beyond 0, 1 and 2: NONE, or LEAK: and
// each as fd=target.
var inheritedFds = func() string {
	// Raw calls: os.Open would start the netpoller, whose own
	// descriptors would show up here.
	dfd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "ERR:" + err.Error()
	}
	defer unix.Close(dfd)
	buf := make([]byte, 8192)
	n, err := unix.ReadDirent(dfd, buf)
	if err != nil {
		return "ERR:" + err.Error()
	}
	_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
	var extra []string
	for _, name := range names {
		fd, _ := strconv.Atoi(name)
		if fd <= 2 || fd == dfd {
			continue
		}
		target := make([]byte, 256)
		l, _ := unix.Readlink("/proc/self/fd/"+name, target)
		extra = append(extra, name+"="+string(target[:max(l, 0)]))
	}
	if len(extra) == 0 {
		return "NONE"
	}
	return "LEAK:" + strings.Join(extra, ",")
}()

// result names the outcome of err.
func result(err error) string {
	if err == nil {
		return "OK"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		if n := unix.ErrnoName(en); n != "" {
			return n
		}
		return fmt.Sprintf("errno%d", int(en))
	}
	return "ERR:" + strings.ReplaceAll(err.Error(), "\t", " ")
}

func errno(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func openRO(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func create(p string) error {
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o644)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func sibling() (int, func()) {
	cmd := exec.Command("/bin/sleep", "30")
	if err := cmd.Start(); err != nil {
		return -1, func() {}
	}
	return cmd.Process.Pid, func() { cmd.Process.Kill(); cmd.Wait() }
}

func connectTCP(addr string) error {
	ap, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return err
	}
	fam := unix.AF_INET
	var sa unix.Sockaddr
	if ip4 := ap.IP.To4(); ip4 != nil {
		s := &unix.SockaddrInet4{Port: ap.Port}
		copy(s.Addr[:], ip4)
		sa = s
	} else {
		fam = unix.AF_INET6
		s := &unix.SockaddrInet6{Port: ap.Port}
		copy(s.Addr[:], ap.IP.To16())
		sa = s
	}
	fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Connect(fd, sa)
}

func socket(dom, typ, proto int) error {
	fd, err := unix.Socket(dom, typ|unix.SOCK_CLOEXEC, proto)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func statusField(name string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, name+":") {
			return strings.TrimSpace(strings.TrimPrefix(l, name+":"))
		}
	}
	return ""
}

type attack struct {
	name string
	run  func() string
}

func r(f func() error) func() string { return func() string { return result(f()) } }

func attacks(hostPort, hostPID int, abstract, secretName string) []attack {
	return []attack{
		// Filesystem: secrets and writes outside read_write.
		{"read_etc_shadow", r(func() error { return openRO("/etc/shadow") })},
		{"read_root_dir", r(func() error { _, err := os.ReadDir("/root"); return unwrap(err) })},
		{"read_root_ssh", r(func() error { return openRO("/root/.ssh") })},
		{"read_var_lib", r(func() error { return openRO("/var/lib") })},
		{"write_usr_bin", r(func() error { return create("/usr/bin/nemoclaw-evil") })},
		{"write_etc", r(func() error { return create("/etc/nemoclaw-evil") })},
		{"write_root_home", r(func() error { return create("/root/nemoclaw-evil") })},
		{"write_var_tmp", r(func() error { return create("/var/tmp/nemoclaw-evil") })},
		{"mkdir_opt", r(func() error { return unix.Mkdir("/opt/nemoclaw-evil", 0o755) })},
		{"write_rootfs", r(func() error { return create("/nemoclaw-evil") })},
		{"truncate_etc_file", r(func() error { return unix.Truncate("/etc/hostname", 0) })},
		{"write_proc_sys", r(func() error {
			return os.WriteFile("/proc/sys/kernel/hostname", []byte("evil"), 0)
		})},
		{"open_dev_mem", r(func() error { return openRO("/dev/mem") })},
		{"hardlink_etc_into_sandbox", r(func() error { return unix.Link("/etc/passwd", "/sandbox/passwd-link") })},
		{"rename_out_of_sandbox", r(func() error {
			if err := create("/sandbox/moveme"); err != nil {
				return err
			}
			return unix.Rename("/sandbox/moveme", "/etc/moveme")
		})},
		{"symlink_to_shadow", r(func() error {
			_ = os.Remove("/sandbox/shadow-link")
			if err := unix.Symlink("/etc/shadow", "/sandbox/shadow-link"); err != nil {
				return fmt.Errorf("symlink itself failed: %w", err)
			}
			return openRO("/sandbox/shadow-link")
		})},
		{"symlink_to_usr_write", r(func() error {
			_ = os.Remove("/sandbox/usr-link")
			if err := unix.Symlink("/usr/bin", "/sandbox/usr-link"); err != nil {
				return fmt.Errorf("symlink itself failed: %w", err)
			}
			return create("/sandbox/usr-link/nemoclaw-evil")
		})},
		{"dotdot_out_of_sandbox", r(func() error { return create("/sandbox/../usr/bin/nemoclaw-evil") })},
		{"dotdot_openat", r(func() error {
			dfd, err := unix.Open("/sandbox", unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(dfd)
			fd, err := unix.Openat(dfd, "../../../usr/bin/nemoclaw-evil", unix.O_WRONLY|unix.O_CREAT, 0o755)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"read_run_dir", r(func() error { _, err := os.ReadDir("/run"); return unwrap(err) })},
		{"proc_init_root", r(func() error { return openRO("/proc/1/root/etc/hostname") })},
		// Processes.
		{"ptrace_sibling", r(func() error {
			pid, stop := sibling()
			defer stop()
			return unix.PtraceAttach(pid)
		})},
		{"process_vm_readv_sibling", r(func() error {
			pid, stop := sibling()
			defer stop()
			buf := make([]byte, 8)
			local := []unix.Iovec{{Base: &buf[0], Len: 8}}
			remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
			_, err := unix.ProcessVMReadv(pid, local, remote, 0)
			return err
		})},
		{"kill_host_process", r(func() error { return unix.Kill(hostPID, unix.SIGKILL) })},
		{"pidfd_open_host_process", r(func() error {
			fd, err := unix.PidfdOpen(hostPID, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"kill_sandbox_init", r(func() error { return unix.Kill(1, unix.SIGKILL) })},
		{"read_init_environ", r(func() error { return openRO("/proc/1/environ") })},
		{"inherited_fds", func() string { return inheritedFds }},
		{"supervisor_env_visible", func() string {
			if os.Getenv(secretName) != "" {
				return "LEAK:own-environ"
			}
			ms, _ := filepath.Glob("/proc/[0-9]*/environ")
			for _, m := range ms {
				b, err := os.ReadFile(m)
				if err == nil && bytes.Contains(b, []byte(secretName+"=")) {
					return "LEAK:" + m
				}
			}
			return "ABSENT"
		}},
		{"setuid_0", r(func() error { return errno(rawErr(unix.SYS_SETUID, 0, 0, 0)) })},
		{"setgid_0", r(func() error { return errno(rawErr(unix.SYS_SETGID, 0, 0, 0)) })},
		{"capabilities_empty", func() string {
			for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
				if v := statusField(f); v != "0000000000000000" {
					return "LEAK:" + f + "=" + v
				}
			}
			if statusField("NoNewPrivs") != "1" || statusField("Seccomp") != "2" {
				return "LEAK:no_new_privs/seccomp off"
			}
			return "OK"
		}},
		{"setuid_binary_regain", func() string {
			out, err := exec.Command("/sandbox/suid-attack", "whoami").Output()
			if err != nil {
				return result(err)
			}
			return strings.TrimSpace(string(out))
		}},
		{"sethostname", r(func() error { return unix.Sethostname([]byte("evil")) })},
		{"mknod_char_dev", r(func() error { return unix.Mknod("/tmp/evil-null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) })},
		// Namespaces and mounts.
		{"mount_tmpfs", r(func() error { return unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "") })},
		{"umount_proc", r(func() error { return unix.Unmount("/proc", unix.MNT_DETACH) })},
		{"unshare_user", r(func() error { return unix.Unshare(unix.CLONE_NEWUSER) })},
		{"unshare_net", r(func() error { return unix.Unshare(unix.CLONE_NEWNET) })},
		{"unshare_mount", r(func() error { return unix.Unshare(unix.CLONE_NEWNS) })},
		{"clone_newuser", r(func() error {
			// A raw clone with CLONE_NEWUSER; a child (should one exist) exits at once.
			pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, uintptr(unix.CLONE_NEWUSER|unix.SIGCHLD), 0, 0, 0, 0, 0)
			if e == 0 && pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
			}
			if e == 0 {
				var ws unix.WaitStatus
				unix.Wait4(int(pid), &ws, 0, nil)
			}
			return errno(e)
		})},
		{"clone3", r(func() error { return errno(rawErr(unix.SYS_CLONE3, 0, 0, 0)) })},
		{"setns_net", r(func() error {
			fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0)
			if err != nil {
				return fmt.Errorf("open ns: %w", err)
			}
			defer unix.Close(fd)
			return unix.Setns(fd, unix.CLONE_NEWNET)
		})},
		{"pivot_root", r(func() error { return unix.PivotRoot("/tmp", "/tmp") })},
		{"chroot", r(func() error { return unix.Chroot("/tmp") })},
		// Kernel attack surface.
		{"bpf", r(func() error { return errno(rawErr(unix.SYS_BPF, unix.BPF_MAP_CREATE, 0, 0)) })},
		{"perf_event_open", r(func() error {
			attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
			attr.Size = uint32(unsafe.Sizeof(attr))
			fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"keyctl", r(func() error { _, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, true); return err })},
		{"add_key", r(func() error {
			_, err := unix.AddKey("user", "evil", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
			return err
		})},
		{"userfaultfd", r(func() error { return errno(rawErr(unix.SYS_USERFAULTFD, 0, 0, 0)) })},
		{"io_uring_setup", r(func() error {
			var params [120]byte
			return errno(rawErr(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params[0])), 0))
		})},
		{"init_module", r(func() error { return unix.InitModule([]byte{0}, "") })},
		{"finit_module", r(func() error { return unix.FinitModule(0, "", 0) })},
		{"delete_module", r(func() error { return unix.DeleteModule("loop", 0) })},
		{"kexec_load", r(func() error { return errno(rawErr(unix.SYS_KEXEC_LOAD, 0, 0, 0)) })},
		{"reboot", r(func() error { return unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF) })},
		{"open_by_handle_at", r(func() error { return errno(rawErr(unix.SYS_OPEN_BY_HANDLE_AT, 0, 0, 0)) })},
		// Sockets.
		{"socket_af_packet", r(func() error { return socket(unix.AF_PACKET, unix.SOCK_RAW, 0x0300) })},
		{"socket_raw_icmp", r(func() error { return socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP) })},
		{"socket_mptcp", r(func() error { return socket(unix.AF_INET, unix.SOCK_STREAM, 262) })},
		{"socket_netlink_audit", r(func() error { return socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT) })},
		{"socket_netlink_sock_diag", r(func() error { return socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG) })},
		{"socket_netlink_route", r(func() error { return socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE) })},
		{"socket_vsock", r(func() error { return socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0) })},
		// Network egress.
		{"tcp_external_ipv4", r(func() error { return connectTCP("1.1.1.1:443") })},
		{"tcp_external_ipv6", r(func() error { return connectTCP("[2606:4700:4700::1111]:443") })},
		{"tcp_metadata_ip", r(func() error { return connectTCP("169.254.169.254:80") })},
		{"udp_external_dns", r(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Sendto(fd, []byte("x"), 0, &unix.SockaddrInet4{Port: 53, Addr: [4]byte{8, 8, 8, 8}})
		})},
		{"tcp_host_loopback_service", r(func() error { return connectTCP(fmt.Sprintf("127.0.0.1:%d", hostPort)) })},
		{"unix_host_abstract_socket", r(func() error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + abstract})
		})},
		{"unix_host_dbus_socket", r(func() error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Connect(fd, &unix.SockaddrUnix{Name: "/run/dbus/system_bus_socket"})
		})},
		// Fileless exec.
		{"memfd_create_allowed", r(func() error {
			fd, err := unix.MemfdCreate("ok", 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"memfd_execveat", r(func() error { return memfdExec(true) })},
		{"memfd_execve_proc_fd", r(func() error { return memfdExec(false) })},
		// Issue 13 item 3: files host tools run code from, in a workspace
		// whose owner has an .envrc, a .vscode and an .idea, and no .git
		// (it gets a placeholder).
		{"hostexec_git_config_create", r(func() error { return create("/sandbox/.git/config") })},
		{"hostexec_git_hooks_create", r(func() error { return unix.Mkdir("/sandbox/.git/hooks", 0o755) })},
		{"hostexec_git_rename_away", r(func() error { return unix.Rename("/sandbox/.git", "/sandbox/.git.orig") })},
		{"hostexec_git_rmdir", r(func() error { return unix.Rmdir("/sandbox/.git") })},
		{"hostexec_git_replace_by_dir", r(func() error {
			if err := unix.Mkdir("/sandbox/evil-git", 0o755); err != nil {
				return err
			}
			defer unix.Rmdir("/sandbox/evil-git")
			return unix.Rename("/sandbox/evil-git", "/sandbox/.git")
		})},
		{"hostexec_envrc_create", r(func() error { return create("/sandbox/.envrc") })},
		{"hostexec_vscode_tasks", r(func() error { return create("/sandbox/.vscode/tasks.json") })},
		{"hostexec_idea_chmod", r(func() error { return unix.Chmod("/sandbox/.idea", 0o777) })},
	}
}

// hiBit is set in the upper half of an int argument: the kernel reads the
// low 32 bits of an int, a seccomp filter sees all 64.
const hiBit = uint64(1) << 32

// rawSocket calls socket(2) with 64-bit arguments as given.
func rawSocket(dom, typ, proto uint64) error {
	fd, _, e := unix.RawSyscall6(unix.SYS_SOCKET, uintptr(dom), uintptr(typ|unix.SOCK_CLOEXEC), uintptr(proto), 0, 0, 0)
	if e == 0 {
		unix.Close(int(fd))
	}
	return errno(e)
}

func rawErr6(nr uintptr, a ...uintptr) syscall.Errno {
	var v [6]uintptr
	copy(v[:], a)
	_, _, e := unix.RawSyscall6(nr, v[0], v[1], v[2], v[3], v[4], v[5])
	return e
}

// seccompAttacks: every socket rule again with upper bits set in its int
// arguments, the syscalls newer than the filter's review, the refused
// personalities, ioctls and calls, and prlimit on the sandbox's init.
func seccompAttacks() []attack {
	return []attack{
		{"socket_vsock_high_bits", r(func() error { return rawSocket(unix.AF_VSOCK|hiBit, unix.SOCK_STREAM, 0) })},
		{"socket_af_packet_high_bits", r(func() error { return rawSocket(unix.AF_PACKET|hiBit, unix.SOCK_RAW, 0x0300) })},
		{"socket_bluetooth_high_bits", r(func() error { return rawSocket(unix.AF_BLUETOOTH|hiBit, unix.SOCK_STREAM, 0) })},
		{"socket_af_key_high_bits", r(func() error { return rawSocket(unix.AF_KEY|hiBit, unix.SOCK_RAW, 2) })},
		{"socket_netlink_audit_high_bits", r(func() error { return rawSocket(unix.AF_NETLINK|hiBit, unix.SOCK_RAW, unix.NETLINK_AUDIT) })},
		{"socket_netlink_sock_diag_high_bits", r(func() error {
			return rawSocket(unix.AF_NETLINK|0xffffffff00000000, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
		})},
		{"socket_netlink_route_protocol_high_bits", r(func() error { return rawSocket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE|hiBit) })},
		{"socket_mptcp_high_bits", r(func() error { return rawSocket(unix.AF_INET, unix.SOCK_STREAM, 262|hiBit) })},
		{"socket_mptcp6_high_bits", r(func() error { return rawSocket(unix.AF_INET6|hiBit, unix.SOCK_STREAM|hiBit, 262|hiBit) })},
		{"socket_raw_icmp_high_bits", r(func() error { return rawSocket(unix.AF_INET|hiBit, unix.SOCK_RAW|hiBit, unix.IPPROTO_ICMP) })},
		{"socket_raw_icmp6_high_bits", r(func() error { return rawSocket(unix.AF_INET6|hiBit, unix.SOCK_RAW, unix.IPPROTO_ICMPV6) })},
		{"socket_inet_sock_packet_high_bits", r(func() error { return rawSocket(unix.AF_INET|hiBit, unix.SOCK_PACKET, 0) })},
		{"socket_tcp_high_bits", r(func() error { return rawSocket(unix.AF_INET|hiBit, unix.SOCK_STREAM, 0) })},
		{"socket_udp6", r(func() error { return rawSocket(unix.AF_INET6, unix.SOCK_DGRAM, 0) })},
		{"ioctl_tiocsti_high_bits", r(func() error {
			c := byte('!')
			return errno(rawErr6(unix.SYS_IOCTL, 0, uintptr(unix.TIOCSTI|hiBit), uintptr(unsafe.Pointer(&c))))
		})},
		{"ioctl_tiocsetd", r(func() error {
			ld := 27 // N_NULL
			return errno(rawErr6(unix.SYS_IOCTL, 0, unix.TIOCSETD, uintptr(unsafe.Pointer(&ld))))
		})},
		{"personality_query", r(func() error { return errno(rawErr6(unix.SYS_PERSONALITY, 0xffffffff)) })},
		{"personality_addr_no_randomize", r(func() error { return errno(rawErr6(unix.SYS_PERSONALITY, 0x0040000)) })},
		{"personality_read_implies_exec_high_bits", r(func() error { return errno(rawErr6(unix.SYS_PERSONALITY, uintptr(0x0400000|hiBit))) })},
		{"modify_ldt", r(func() error {
			if sysModifyLDT == 0 {
				return unix.ENOSYS // x86 only
			}
			var buf [16]byte
			return errno(rawErr6(sysModifyLDT, 0, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf))))
		})},
		{"fanotify_init", r(func() error {
			// FAN_REPORT_FID: the mode unprivileged users may open.
			fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_FID|unix.FAN_CLOEXEC, unix.O_RDONLY)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"pidfd_getfd_sibling", r(func() error {
			pid, stop := sibling()
			defer stop()
			pfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				return fmt.Errorf("pidfd_open: %w", err)
			}
			defer unix.Close(pfd)
			fd, err := unix.PidfdGetfd(pfd, 0, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})},
		{"prlimit_sandbox_init", r(func() error {
			// Lower the init's core limit (to 0: harmless if it succeeds).
			return unix.Prlimit(1, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
		})},
		{"prlimit_self", r(func() error {
			var old unix.Rlimit
			if err := unix.Prlimit(0, unix.RLIMIT_NOFILE, nil, &old); err != nil {
				return err
			}
			return unix.Prlimit(0, unix.RLIMIT_NOFILE, &old, nil)
		})},
		// Newer than the filter's review: statmount, listmount, the lsm_*
		// calls, mseal, the *xattrat calls, open_tree_attr,
		// file_getattr/setattr, and whatever comes next (zero arguments:
		// harmless whatever they do).
		{"syscall_statmount", r(func() error { return errno(rawErr6(457)) })},
		{"syscall_listmount", r(func() error { return errno(rawErr6(458)) })},
		{"syscall_lsm_list_modules", r(func() error { return errno(rawErr6(461)) })},
		{"syscall_open_tree_attr", r(func() error { return errno(rawErr6(467)) })},
		{"syscalls_457_to_599", func() string {
			var bad []string
			for nr := uintptr(457); nr < 600; nr++ {
				if e := rawErr6(nr); e != unix.ENOSYS {
					bad = append(bad, fmt.Sprintf("%d:%s", nr, result(errno(e))))
				}
			}
			if len(bad) > 0 {
				return "ALLOWED:" + strings.Join(bad, ",")
			}
			return "ENOSYS"
		}},
	}
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

func rawErr(nr, a1, a2, a3 uintptr) syscall.Errno {
	_, _, e := unix.RawSyscall(nr, a1, a2, a3)
	return e
}

// memfdExec copies /bin/true into a memfd and executes it, by execveat
// (AT_EMPTY_PATH) or by execve of /proc/self/fd/N, in a child.
func memfdExec(viaExecveat bool) error {
	fd, err := unix.MemfdCreate("payload", 0)
	if err != nil {
		return fmt.Errorf("memfd_create: %w", err)
	}
	defer unix.Close(fd)
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		return err
	}
	if _, err := unix.Write(fd, b); err != nil {
		return err
	}
	_ = unix.Fchmod(fd, 0o755)
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	if viaExecveat {
		// Run it in a child so a success does not replace this process.
		cmd := exec.Command("/proc/self/exe", "execveat", strconv.Itoa(fd))
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "memfd")}
		out, _ := cmd.CombinedOutput()
		s := strings.TrimSpace(string(out))
		if s == "OK" {
			return nil
		}
		for n := syscall.Errno(1); n < 200; n++ {
			if unix.ErrnoName(n) == s {
				return n
			}
		}
		return errors.New(s)
	}
	cmd := exec.Command(path)
	cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(fd), "memfd")}
	return unwrap(cmd.Run())
}

func main() {
	// The attacks are real: run unconfined, as root, they unmount /proc,
	// mount over /tmp, truncate /etc/hostname and rename the host. Only a
	// process under a seccomp filter with no_new_privs, as every sandboxed
	// agent is, may run them.
	if statusField("Seccomp") != "2" || statusField("NoNewPrivs") != "1" {
		fmt.Fprintln(os.Stderr, "attack: refusing to run outside a sandbox (no seccomp filter, or no no_new_privs): its attacks are real")
		os.Exit(2)
	}
	if len(os.Args) > 2 && os.Args[1] == "tty" {
		ttyAttack(os.Args[2])
		return
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "whoami": // run as the setuid copy: report the effective identity
			fmt.Printf("euid=%d capeff=%s\n", os.Geteuid(), statusField("CapEff"))
			return
		case "execveat": // child of memfdExec: the memfd is fd 3
			empty := []byte{0}
			argv := []*byte{&[]byte("true\x00")[0], nil}
			envv := []*byte{nil}
			_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, 3, uintptr(unsafe.Pointer(&empty[0])), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), unix.AT_EMPTY_PATH, 0)
			fmt.Println(result(errno(e)))
			return
		case "tiocsti": // push a keystroke into the terminal on stdin (CVE-2017-5226 class)
			c := byte('!')
			_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
			fmt.Printf("tiocsti\t%s\n", result(errno(e)))
			return
		case "forkbomb": // start processes until the kernel refuses
			var kids []*exec.Cmd
			defer func() {
				for _, k := range kids {
					k.Process.Kill()
				}
			}()
			for i := 0; i < 100000; i++ {
				c := exec.Command("/bin/sleep", "60")
				if err := c.Start(); err != nil {
					fmt.Printf("forkbomb\t%s\t%d\n", result(unwrap(err)), len(kids))
					return
				}
				kids = append(kids, c)
			}
			fmt.Println("forkbomb\tUNLIMITED")
			return
		case "memhog": // map and touch 16 MiB chunks until the kernel refuses
			total := 0
			for i := 0; i < 100000; i++ {
				b, err := unix.Mmap(-1, 0, 16<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					fmt.Printf("memhog\t%s\t%dMiB\n", result(err), total)
					return
				}
				for j := 0; j < len(b); j += 4096 {
					b[j] = 1
				}
				total += 16
			}
			fmt.Println("memhog\tUNLIMITED")
			return
		case "listen-connect": // Landlock TCP rules: serve on :8080 and connect to it, then to the proxy port
			ln, err := net.Listen("tcp4", "127.0.0.1:8080")
			if err != nil {
				fmt.Printf("listen\t%s\n", result(unwrap(err)))
				return
			}
			defer ln.Close()
			fmt.Printf("connect_own_loopback_server\t%s\n", result(connectTCP("127.0.0.1:8080")))
			fmt.Printf("connect_proxy_port\t%s\n", result(connectTCP("127.0.0.1:3128")))
			return
		// hard-fsb (issue 13 items 3, 8, 9, 10): workspace, tmpfs and stream attacks.
		case "tmpfs": // fill the tmpfs at os.Args[2] with data, then with empty files
			tmpfsFill(os.Args[2])
			return
		case "ftruncate-stdout": // cut the caller's log that stdout may be
			fmt.Printf("stdout_ftruncate\t%s\n", result(unix.Ftruncate(1, 0)))
			return
		}
	}
	if len(os.Args) > 4 && os.Args[1] == "fs-paths" {
		for _, a := range fsPathAttacks(os.Args[2], os.Args[3], os.Args[4]) {
			fmt.Printf("%s\t%s\n", a.name, a.run())
		}
		return
	}
	hostPort, _ := strconv.Atoi(os.Getenv("ATTACK_HOST_PORT"))
	hostPID, _ := strconv.Atoi(os.Getenv("ATTACK_HOST_PID"))
	if len(os.Args) > 4 {
		hostPort, _ = strconv.Atoi(os.Args[1])
		hostPID, _ = strconv.Atoi(os.Args[2])
	}
	abstract, secret := "", ""
	if len(os.Args) > 4 {
		abstract, secret = os.Args[3], os.Args[4]
	}
	start := time.Now()
	for _, a := range append(attacks(hostPort, hostPID, abstract, secret), seccompAttacks()...) {
		fmt.Printf("%s\t%s\n", a.name, a.run())
	}
	fmt.Fprintf(os.Stderr, "attacks done in %v\n", time.Since(start))
}

// ---- filesystem paths: issue 13 items 2, 5 and 6 -------------------------

// fsPathAttacks reach for what a policy's host paths expose beyond what
// Landlock checks: user is a host directory the agent's uid owns, holding a
// read_only path (cfg), a read_write one (proj, with the read_only
// proj/p/ro), ~/.ssh and $NEMOCLAW_HOME (home) of a sandbox
// named name; /sandbox holds read_only paths 1, 2 and 3 levels below its
// read-write root (/sandbox/a, /sandbox/b/c, /sandbox/d/e/f).
func fsPathAttacks(user, home, name string) []attack {
	sock := filepath.Join(home, "sandboxes", name, "control.sock")
	stamp := unix.Timespec{Sec: 1}
	return []attack{
		// $NEMOCLAW_HOME: connect() on a pathname socket and stat() are
		// not Landlock's; its contents must not be there at all.
		{"fs_state_dir_stat", r(func() error { _, err := os.Stat(filepath.Join(home, "sandboxes", name)); return unwrap(err) })},
		{"fs_control_socket_connect", r(func() error {
			// The supervisor makes its socket off the start's critical
			// path: wait for it while its directory is there to wait in.
			var err error
			for i := 0; i < 100; i++ {
				if _, serr := os.Stat(filepath.Dir(sock)); serr != nil {
					return unwrap(serr)
				}
				fd, e := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if e != nil {
					return e
				}
				err = unix.Connect(fd, &unix.SockaddrUnix{Name: sock})
				unix.Close(fd)
				if err != unix.ENOENT {
					return err
				}
				time.Sleep(50 * time.Millisecond)
			}
			return err
		})},
		{"fs_read_state_file", r(func() error { return openRO(filepath.Join(home, "state-secret")) })},
		// Metadata of host paths the agent's uid owns: Landlock ABI 7
		// checks none of chmod, chown, utimes, setxattr.
		{"fs_chmod_user_home", r(func() error { return unix.Chmod(user, 0o777) })},
		{"fs_chmod_ssh", r(func() error { return unix.Chmod(filepath.Join(user, ".ssh"), 0o777) })},
		{"fs_chmod_read_only", r(func() error { return unix.Chmod(filepath.Join(user, "cfg", "settings"), 0o666) })},
		{"fs_chown_read_only", r(func() error {
			return unix.Lchown(filepath.Join(user, "cfg", "settings"), os.Getuid(), os.Getgid())
		})},
		{"fs_utimensat_read_only", r(func() error {
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(user, "cfg", "settings"), []unix.Timespec{stamp, stamp}, 0)
		})},
		{"fs_setxattr_read_only", r(func() error {
			return unix.Setxattr(filepath.Join(user, "cfg", "settings"), "user.nemoclaw-evil", []byte("1"), 0)
		})},
		{"fs_read_ssh_key", r(func() error { return openRO(filepath.Join(user, ".ssh", "id_rsa")) })},
		// A read_write host path (user/proj) stays writable, a read_only
		// one inside it (proj/p/ro) does not, nor can its parent move.
		{"fs_write_read_write_host", r(func() error { return create(filepath.Join(user, "proj", "new")) })},
		{"fs_write_ro_in_read_write_host", r(func() error { return create(filepath.Join(user, "proj", "p", "ro", "x")) })},
		{"fs_replace_ro_in_read_write_host", r(func() error {
			return replaceAt(filepath.Join(user, "proj", "p"), filepath.Join(user, "proj", "p", "ro"))
		})},
		{"fs_chmod_ro_in_workspace", r(func() error { return unix.Chmod("/sandbox/a", 0o777) })},
		// A read_only path's parents: renaming any of them would let the
		// agent put its own tree where the policy's path was.
		{"fs_replace_ro_1_level", r(func() error { return replaceAt("/sandbox/a", "/sandbox/a") })},
		{"fs_replace_ro_2_levels", r(func() error { return replaceAt("/sandbox/b", "/sandbox/b/c") })},
		{"fs_replace_ro_3_levels_top", r(func() error { return replaceAt("/sandbox/d", "/sandbox/d/e/f") })},
		{"fs_replace_ro_3_levels_mid", r(func() error { return replaceAt("/sandbox/d/e", "/sandbox/d/e/f") })},
	}
}

// replaceAt moves dir (a read_only path or one of its parents) aside and
// builds a tree of the agent's own at ro: OK means the agent's file now
// sits where the policy's read_only path was.
func replaceAt(dir, ro string) error {
	if err := unix.Rename(dir, dir+".orig"); err != nil {
		return err
	}
	if err := os.MkdirAll(ro, 0o755); err != nil {
		return unwrap(err)
	}
	return unwrap(os.WriteFile(filepath.Join(ro, "x"), []byte("EVIL"), 0o644))
}

// ttyAttack tries, on each of its standard streams, what an agent could do
// to the caller's terminal were it handed one: take it exclusively, switch
// its line discipline to N_NULL, change its modes and size, make it its
// controlling terminal and push input into it. The results go to the file
// at path, "tty_fdN_what<TAB>result" lines, not to the streams under test.
func ttyAttack(path string) {
	var out strings.Builder
	for fd := 0; fd < 3; fd++ {
		p := fmt.Sprintf("tty_fd%d_", fd)
		ioctl := func(req uint64, arg uintptr) string {
			return result(errno(rawErr6(unix.SYS_IOCTL, uintptr(fd), uintptr(req), arg)))
		}
		var tio unix.Termios
		fmt.Fprintf(&out, "%stcgets\t%s\n", p, ioctl(unix.TCGETS, uintptr(unsafe.Pointer(&tio))))
		fmt.Fprintf(&out, "%stiocexcl\t%s\n", p, ioctl(unix.TIOCEXCL, 0))
		ld := 27 // N_NULL: the terminal reads and writes nothing after
		fmt.Fprintf(&out, "%stiocsetd\t%s\n", p, ioctl(unix.TIOCSETD, uintptr(unsafe.Pointer(&ld))))
		tio.Lflag &^= unix.ECHO | unix.ICANON
		fmt.Fprintf(&out, "%stcsets\t%s\n", p, ioctl(unix.TCSETS, uintptr(unsafe.Pointer(&tio))))
		ws := unix.Winsize{Row: 1, Col: 1}
		fmt.Fprintf(&out, "%stiocswinsz\t%s\n", p, ioctl(unix.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))))
		fmt.Fprintf(&out, "%stiocsctty\t%s\n", p, ioctl(unix.TIOCSCTTY, 0))
		c := byte('!')
		fmt.Fprintf(&out, "%stiocsti\t%s\n", p, ioctl(unix.TIOCSTI, uintptr(unsafe.Pointer(&c))))
	}
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "attack: tty:", err)
		os.Exit(1)
	}
}

// ---- hard-fsb (issue 13 items 3, 8, 9, 10) ----

// tmpfsFill writes up to 512 MiB into dir, then creates up to 300,000
// empty files there, and prints how each ended: tmpfs pages and inodes are
// kernel memory the memory limit must bound.
func tmpfsFill(dir string) {
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		fmt.Printf("tmpfs_write\t%s\t0MiB\n", result(unwrap(err)))
		return
	}
	buf := bytes.Repeat([]byte{1}, 1<<20)
	mib := 0
	for err == nil && mib < 512 {
		if _, err = f.Write(buf); err == nil {
			mib++
		}
	}
	f.Close()
	os.Remove(f.Name())
	fmt.Printf("tmpfs_write\t%s\t%dMiB\n", result(unwrap(err)), mib)
	files := filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		fmt.Printf("tmpfs_files\t%s\t0\n", result(unwrap(err)))
		return
	}
	n := 0
	for ; n < 300000; n++ {
		fd, err := unix.Open(files+"/"+strconv.Itoa(n), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
		if err != nil {
			fmt.Printf("tmpfs_files\t%s\t%d\n", result(err), n)
			return
		}
		unix.Close(fd)
	}
	fmt.Printf("tmpfs_files\tOK\t%d\n", n)
}
