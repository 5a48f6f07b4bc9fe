package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Workdir is where the workspace appears inside every sandbox.
const Workdir = "/sandbox"

// DefaultProxyPort is the in-sandbox port of the egress proxy listener.
const DefaultProxyPort = 3128

// mappedID is the uid and gid a policy user that does not exist on the host
// (NemoClaw's "sandbox") is mapped to.
const mappedID = 10001

// File is a file bind-mounted read-only at Path inside the sandbox (for
// example /etc/resolv.conf or a CA bundle). Path must exist in the sandbox's
// view of the host, or lie in one of its own directories (/tmp, /run, /dev).
type File struct {
	Path string
	// From, when set, is a host file whose contents come first, before
	// Data; the init reads it, so large host files (a system CA bundle)
	// are not copied through the launcher. A missing From leaves Data alone.
	From string
	Data []byte
	// Later, when set, supplies Data instead, for contents still being
	// made when Start is called (the egress CA): Start calls it last,
	// after planning the sandbox, so that the two overlap. Its error
	// stops the launch.
	Later func() ([]byte, error)
}

// NetworkConfig asks for listening sockets created inside the sandbox's
// network namespace, to be served from outside by the egress proxy.
type NetworkConfig struct {
	// Proxy creates a TCP listener on 127.0.0.1:ProxyPort.
	Proxy bool
	// ProxyPort defaults to DefaultProxyPort.
	ProxyPort int
	// DNS creates UDP and TCP listeners on 127.0.0.1:53.
	DNS bool
	// Inference creates TCP listeners on InferenceAddr ports 80 and 443,
	// where inference.local resolves, for clients that ignore the proxy
	// variables (see InferenceListeners).
	Inference bool
}

// InferenceAddr is where inference.local resolves inside a sandbox (see
// egress.InferenceAddr, which must agree).
var InferenceAddr = [4]byte{127, 0, 0, 2}

// WindowSize is a terminal size in character cells.
type WindowSize struct {
	Rows, Cols uint16
}

// Config describes one sandbox run.
type Config struct {
	// Name is the sandbox's name and hostname; generated ("sb-<hex>") if empty.
	Name string
	// Workdir is the host directory mounted at /sandbox. Without one, the
	// workspace is $Home/sandboxes/<Name>/workspace when KeepWorkspace is
	// set (created, and kept), and otherwise a directory of the sandbox's
	// private /tmp tmpfs, which ends with the sandbox.
	Workdir string
	// Policy is the sandbox policy (required).
	Policy *policy.Policy
	// Command is the agent's argv; a bare name is looked up in the agent's PATH.
	Command []string
	// Env is added to the agent's minimal environment (PATH, HOME, USER,
	// HOSTNAME, TERM, LANG); the host's environment is never inherited.
	Env []string
	// Stdin, Stdout and Stderr are the agent's streams (nil: /dev/null).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY runs the agent on a new pseudo-terminal whose other side is
	// copied to and from Stdin and Stdout; the caller puts its own
	// terminal in raw mode. When the caller's terminal hangs up (its
	// output fails, or its input ends) so does the agent's; a Stdin that
	// is not a terminal ends as a typed ^D.
	TTY bool
	// WindowSize is the pseudo-terminal's initial size.
	WindowSize *WindowSize
	// Files are bind-mounted read-only into the sandbox.
	Files []File
	// Devices are host devices passed through (GPUs; devices.go).
	Devices *Devices
	// Network asks for in-sandbox listeners.
	Network NetworkConfig
	// Logger receives the run's log (nil: discarded).
	Logger *slog.Logger
	// Home is $NEMOCLAW_HOME.
	Home string
	// KeepWorkspace puts a generated workspace on the host's disk, kept
	// after Close.
	KeepWorkspace bool
	// InitPath is the binary re-executed in init mode; it must call
	// MaybeInit first thing. Default: the running executable.
	InitPath string
	// StopTimeout is how long the agent has to exit after a SIGTERM
	// reaches it (Signal, or a SignalForwarder) before the init kills
	// everything in the sandbox, as `docker stop` does: an agent that
	// ignores SIGTERM (an interactive shell does) must not make its
	// sandbox unstoppable. 0 means DefaultStopTimeout; negative, no limit.
	StopTimeout time.Duration
	// Tools is a host directory (a read-only tools tree, runner/tools)
	// bound read-only at ToolsPath; "" for none.
	Tools string
	// MemoryEnforcement picks how resources.memory holds (empty: the
	// MemoryEnforcementEnv variable, else MemoryAuto).
	MemoryEnforcement MemoryEnforcement
}

// DefaultStopTimeout is Config.StopTimeout's default.
const DefaultStopTimeout = 10 * time.Second

// Sandbox is a running sandbox.
type Sandbox struct {
	name string
	log  *slog.Logger
	// stopTimeout is Config.StopTimeout as applied, for the log.
	stopTimeout time.Duration
	// proc is the init (the sandbox's pid 1); waitInit reaps it, once.
	proc     initHandle
	pid      int
	waitInit func() (syscall.WaitStatus, error)
	// reapLater lets Wait return before the init is reaped (the pre-spawned
	// path, whose streams are files: nothing is left to copy); reaped
	// closes once it is.
	reapLater bool
	reaped    chan struct{}
	status    *os.File
	rbuf      []byte // recv's buffer
	// pidfd is the sandbox's own pidfd of its init, open until Close
	// (the init may be reaped, and its pid reused, long before): what
	// SignalForwarder signals through.
	pidfd   int
	ptm     *os.File
	ptyDone chan struct{}
	hungUp  sync.Once // hangUpPTY's work, done once: either relay may find the terminal gone
	// relay copies the caller's terminals without a TTY (termRelay).
	relay *termRelay

	proxyLn net.Listener
	dnsPC   net.PacketConn
	dnsLn   net.Listener
	// infHTTP and infHTTPS are the inference.local listeners.
	infHTTP, infHTTPS net.Listener
	// taken marks the listeners a caller has taken (takenProxy...): the
	// caller closes those, Close the others.
	taken atomic.Uint32

	started   time.Time
	cgroupDir string
	// memLimit is resources.memory (bytes, 0: none); memWatch is set when
	// the supervisor enforces it (watchResident), which stores memErr when
	// it kills the sandbox.
	memLimit uint64
	memWatch bool
	memErr   atomic.Pointer[MemoryLimitError]
	// protect holds the placeholders made in the host workspace for the
	// run, removed by cleanup (protectWorkspace).
	protect *hostProtection
	// streams copies the caller's streams that the agent must not hold
	// (relayStreams).
	streams *streamRelay

	// agentEnv is the agent's whole environment; joins holds the
	// processes started by Exec (join.go).
	agentEnv []string
	joins    joinTable

	done     chan struct{}
	code     int
	waitErr  error
	stopCtx  func() bool
	closeOne sync.Once
}

// kernelLandlockABI is landlockABI; tests replace it to play older kernels.
var kernelLandlockABI = landlockABI

// checkWorkspace is hostWorkspace; tests replace it to play a workspace
// swapped between the check and the mount.
var checkWorkspace = hostWorkspace

// NewName returns a generated sandbox name: "sb-" and 8 random hex digits.
func NewName() string {
	// math/rand/v2's generator is seeded by the runtime from the kernel:
	// a name needs to be unique, not secret, and crypto/rand's first read
	// on a thread cost a sandbox's start 60 µs.
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], rand.Uint32())
	return "sb-" + hex.EncodeToString(b[:])
}

// ValidName reports whether name can name a sandbox (and be its hostname and
// a directory under $NEMOCLAW_HOME/sandboxes): 1-63 lowercase letters,
// digits, '.', '_' or '-', starting with a letter or digit. Hand-written:
// the equivalent regexp cost every process 0.2 ms to compile at start.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// hostTopNeeded lists the host's top-level directories the sandbox must
// see: those holding a path of filesystem_policy or a placed file. Nil
// means all of them (a policy grants "/"). Landlock would refuse the rest
// anyway; not mounting them at all also holds where Landlock is missing,
// and saves their mounts at every start.
func hostTopNeeded(p *policy.Policy, files []string) map[string]bool {
	need := map[string]bool{}
	add := func(path string) bool {
		path = filepath.Clean(path)
		if path == "/" {
			return false
		}
		top, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
		need[top] = true
		return true
	}
	if fs := p.Filesystem; fs != nil {
		for _, l := range [][]string{fs.ReadOnly, fs.ReadWrite} {
			for _, path := range l {
				if !add(path) {
					return nil
				}
			}
		}
	}
	for _, f := range files {
		add(f)
	}
	return need
}

// readOnlyOverlap returns the path of p's filesystem_policy.read_only that
// the host directory ws lies under, equals or contains ("" for none): the
// agent may only read those at their own place, but could write them
// through the workspace. Symlinks in the policy's paths are followed, as
// ws's were.
func readOnlyOverlap(ws string, p *policy.Policy) string {
	if p == nil || p.Filesystem == nil {
		return ""
	}
	under := func(a, b string) bool { return a == b || b == "/" || strings.HasPrefix(a, b+"/") }
	for _, ro := range p.Filesystem.ReadOnly {
		ro = filepath.Clean(ro)
		if underOwnDir(ro+"/") || ro == Workdir || strings.HasPrefix(ro, Workdir+"/") {
			continue // the sandbox's own, not the host's
		}
		paths := []string{ro}
		if real, err := filepath.EvalSymlinks(ro); err == nil && real != ro {
			paths = append(paths, real)
		}
		for _, r := range paths {
			if under(ws, r) || under(r, ws) {
				return ro
			}
		}
	}
	return ""
}

// hostDir is a host directory as the launcher checked it.
type hostDir struct {
	path     string
	fd       int // open on the directory until close
	uid, gid int
	dev, ino uint64
}

// idmapLines returns the uid_map and gid_map of the workspace's idmapped
// mount, which makes the agent (uid:gid) the directory's owner, or "" for
// none (the agent owns it already). Never host root (the caller refuses a
// root-owned directory: refuseRootOwned). The directory's group is the
// agent's only when it is its owner's private group: a shared group (0,
// staff, docker...) maps to nogroup, or the agent could make setgid files
// of that group on the host; what the agent makes gets the agent's gid then.
func idmapLines(d hostDir, uid, gid int, ids *hostDB) (string, string) {
	if d.uid == uid && d.gid == gid {
		return "", ""
	}
	uidMap := fmt.Sprintf("%d %d 1\n", d.uid, uid)
	switch {
	case d.gid == gid:
		return uidMap, fmt.Sprintf("%d %d 1\n", gid, gid)
	case d.gid != 0 && privateGroup(d.uid, d.gid, ids):
		return uidMap, fmt.Sprintf("%d %d 1\n", d.gid, gid)
	}
	nogroup := 65534
	if gid == nogroup {
		nogroup--
	}
	return uidMap, fmt.Sprintf("%d %d 1\n%d %d 1\n", d.gid, nogroup, gid, gid)
}

// privateGroup reports whether gid is uid's primary group and carries the
// user's name (a user private group, as Debian makes for each user).
func privateGroup(uid, gid int, ids *hostDB) bool {
	for _, u := range ids.db("/etc/passwd") {
		if u.id == uid && u.gid == gid {
			for _, g := range ids.db("/etc/group") {
				if g.id == gid && g.name == u.name {
					return true
				}
			}
		}
	}
	return false
}

// stateOverlap keeps nemoclaw's own state, $NEMOCLAW_HOME (trust
// configuration, approvals, audit logs, every sandbox's control socket),
// out of an agent's workspace ws, so that the agent can neither approve
// its own egress through its control socket nor trust its own signing key.
// A ws that holds home gets home masked: the path to hide, relative to ws,
// under which the init mounts an empty read-only tmpfs. A ws inside home is
// refused unless it is in a sandbox's own workspace directory
// (sandboxes/<name>/workspace, what --keep makes).
func stateOverlap(ws, home string) (string, error) {
	const stateHint = "choose a workspace outside $NEMOCLAW_HOME, or one of its sandboxes/<name>/workspace directories"
	home, err := realPath(home)
	if err != nil {
		return "", stepErr("workspace", err)
	}
	if rel, err := filepath.Rel(ws, home); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
		if rel == "." {
			return "", &StepError{Step: "workspace", Refused: true,
				Err:  fmt.Errorf("%s is $NEMOCLAW_HOME, nemoclaw's own state (trust configuration, approvals, control sockets)", ws),
				Hint: stateHint}
		}
		return rel, nil
	}
	rel, err := filepath.Rel(home, ws)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", nil // apart
	}
	if parts := strings.Split(rel, "/"); len(parts) >= 3 && parts[0] == "sandboxes" && parts[2] == "workspace" {
		return "", nil
	}
	return "", &StepError{Step: "workspace", Refused: true,
		Err:  fmt.Errorf("%s is inside $NEMOCLAW_HOME (%s), nemoclaw's own state (trust configuration, approvals, control sockets), outside any sandbox's workspace", ws, home),
		Hint: stateHint}
}

// realPath returns p absolute, its symlinks resolved where it exists.
func realPath(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p, nil
}

// hiddenState lists where nemoclaw's own state, $NEMOCLAW_HOME (trust
// configuration, approvals, audit logs, every sandbox's state directory
// and control socket), would show inside the sandbox, each to be hidden
// under an empty read-only tmpfs: in the workspace (wsMask, stateOverlap's
// path relative to it), and at its own path when a host directory the
// sandbox mounts (hostTop; nil: all) holds it. A policy path under /home
// mounts all of /home, and with it a rootless user's ~/.nemoclaw, whose
// control socket Landlock does not guard (ABI 7 does not check connect()
// on pathname sockets) and whose files are the agent's uid's.
//
// Inside an agent-writable tree, the mask's parents below the tree's root
// are pinned first (as accessBinds pins a read_only path's): else the
// agent renames one away, and with it nemoclaw's state out from under the
// path the next run looks for it at, where it may have planted its own.
func hiddenState(home, wsMask string, hostTop map[string]bool, fs *policy.FilesystemPolicy) ([]accessBind, error) {
	roots := writableRoots(fs)
	var hide []accessBind
	add := func(p string) {
		anchor := anchorOf(roots, p)
		if anchor != "" {
			for _, a := range parentsBelow(p, anchor) {
				hide = append(hide, accessBind{Path: a, Pin: true, Anchor: anchor})
			}
		}
		hide = append(hide, accessBind{Path: p, Hide: true, Anchor: anchor})
	}
	if wsMask != "" {
		add(Workdir + "/" + wsMask)
	}
	real, err := realPath(home)
	if err != nil {
		return nil, stepErr("config", fmt.Errorf("$NEMOCLAW_HOME %s: %w", home, err))
	}
	top, _, _ := strings.Cut(strings.TrimPrefix(real, "/"), "/")
	if top != "" && !ownTop[top] && (hostTop == nil || hostTop[top]) {
		add(real)
	}
	return hide, nil
}

// hostWorkspace checks the host directory ws; it returns the path to bind,
// the directory's owner and identity. As root the init mounts it idmapped
// from its owner to the agent (a root-owned one is refused:
// refuseRootOwned).
func hostWorkspace(ws string) (hostDir, error) {
	ws, err := filepath.Abs(ws)
	if err != nil {
		return hostDir{}, stepErr("workspace", err)
	}
	// The init binds it from the host's root after pivot_root, where
	// host symlinks on the way may resolve differently: bind the real path.
	if real, err := filepath.EvalSymlinks(ws); err == nil {
		ws = real
	}
	// Identified through a descriptor, which the caller closes: the init
	// binds this inode or nothing, and the placeholders of protected
	// names are made through it (protectPlan).
	fd, err := unix.Open(ws, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			err = errors.New("not a directory")
		}
		return hostDir{fd: -1}, stepErr("workspace", fmt.Errorf("%s: %w", ws, err))
	}
	d := hostDir{path: ws, fd: fd}
	if err := d.stat(); err != nil {
		d.close()
		return hostDir{fd: -1}, stepErr("workspace", fmt.Errorf("%s: %w", ws, err))
	}
	return d, nil
}

// stat reads the directory's owner and identity from its descriptor.
func (d *hostDir) stat() error {
	var st unix.Stat_t
	if err := unix.Fstat(d.fd, &st); err != nil {
		return err
	}
	d.uid, d.gid, d.dev, d.ino = int(st.Uid), int(st.Gid), uint64(st.Dev), st.Ino
	return nil
}

// refuseRootOwned refuses a root-owned workspace for a root launcher. It
// cannot be mounted idmapped from its owner (host root would be the agent:
// it could make setuid-root files on the host), and giving it to the agent
// (what nemoclaw once did: its top chowned to the agent's uid) changes
// hands on the host and lets the agent rename, replace and delete root's
// files in it. So nothing is changed, and the user is told what to do.
func refuseRootOwned(ws string, p *policy.Policy) error {
	if ro := readOnlyOverlap(ws, p); ro != "" {
		return &StepError{Step: "workspace", Refused: true,
			Err:  fmt.Errorf("%s is owned by root and overlaps %s, which filesystem_policy.read_only keeps read-only: as the workspace it would be the agent's", ws, ro),
			Hint: "choose a workspace outside the policy's read_only paths, or one owned by an unprivileged user"}
	}
	return &StepError{Step: "workspace", Refused: true,
		Err: fmt.Errorf("%s is owned by root: the agent would act as root in it (idmapped), or own root's directory and rename, replace or delete root's files in it", ws),
		Hint: "give the directory to the user whose work it is (chown -R USER " + ws + "), and nemoclaw mounts it with the agent acting as that user; " +
			"or run without --workdir (an in-memory workspace; --keep puts it under $NEMOCLAW_HOME)"}
}

func (d *hostDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}

// cgroupInfo is CgroupDelegation, probed once per process.
var cgroupInfo = sync.OnceValue(CgroupDelegation)

// Warm starts, in the background, the part of Start's work that depends
// only on this host: probing cgroup delegation. A caller with its own
// preparation to do (a policy to load, a proxy to set up) calls Warm first
// so that both use the machine's cores; Start waits for whatever is still
// running.
func Warm() {
	warmOnce.Do(func() {
		go func() { _ = cgroupInfo() }()
	})
}

var warmOnce sync.Once

// Start builds the sandbox and starts cfg.Command in it. It returns once the
// agent runs (or with the *StepError of the failed setup step). Cancelling
// ctx kills the sandbox.
func Start(ctx context.Context, cfg Config) (*Sandbox, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy == nil {
		return nil, stepErr("config", errors.New("a policy is required"))
	}
	if len(cfg.Command) == 0 {
		return nil, stepErr("config", errors.New("no command to run"))
	}
	name := cfg.Name
	if name == "" {
		name = NewName()
	}
	if !ValidName(name) {
		return nil, stepErr("config", fmt.Errorf("name %q: want 1-63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", name))
	}
	home := cfg.Home
	if home == "" {
		return nil, stepErr("config", errors.New("Home ($NEMOCLAW_HOME) is required"))
	}
	sb := &Sandbox{name: name, log: log.With("sandbox", name), done: make(chan struct{}), pidfd: -1}
	ok := false
	defer func() {
		if !ok {
			sb.cleanup()
		}
	}()

	rootless := os.Geteuid() != 0
	ids := newHostDB()
	uid, gid, mapNote, err := resolveIDs(cfg.Policy.Process, rootless, ids)
	if err != nil {
		return nil, stepErr("process", err)
	}
	if mapNote != "" {
		sb.log.Info(mapNote)
	}

	// Workspace: a host directory when one is given or kept, else memory
	// that vanishes with the sandbox (a generated workspace was always
	// deleted at the end; in memory nothing reaches the disk).
	ws := cfg.Workdir
	if ws == "" && cfg.KeepWorkspace {
		ws = filepath.Join(home, "sandboxes", name, "workspace")
		if err := os.MkdirAll(ws, 0o700); err != nil {
			return nil, stepErr("workspace", err)
		}
		// nemoclaw's own directory, made for the agent: as root it is
		// the agent's, and is bound as it is (no idmapped mount, which
		// NEMOCLAW_HOME's filesystem might not support).
		if !rootless {
			if err := os.Chown(ws, uid, gid); err != nil {
				return nil, stepErr("workspace", fmt.Errorf("chown %s to %d:%d: %w", ws, uid, gid, err))
			}
		}
	}
	var wsDir hostDir
	var stateMask string
	if ws != "" {
		if wsDir, err = checkWorkspace(ws); err != nil {
			return nil, err
		}
		defer wsDir.close()
		ws = wsDir.path
		if stateMask, err = stateOverlap(ws, home); err != nil {
			return nil, err
		}
		if !rootless && wsDir.uid == 0 {
			if err := refuseRootOwned(ws, cfg.Policy); err != nil {
				return nil, err
			}
		}
	}
	if sb.protect, err = protectWorkspace(wsDir, cfg.Policy, rootless, home); err != nil {
		return nil, err
	}

	// Files, and a passwd/group entry for a mapped user.
	files := cfg.Files
	if mapNote != "" {
		files = append(files, identityFiles(cfg.Policy.Process, uid, gid, files, ids)...)
	}
	// The files travel inside the init's program: the init writes each one
	// into its own tmpfs and binds it read-only over its path, so nothing
	// is written to (or left on) the host's disk.
	var binds []bindSpec
	var filePaths []string
	for _, f := range files {
		if !filepath.IsAbs(f.Path) {
			return nil, stepErr("files", fmt.Errorf("%q: path must be absolute", f.Path))
		}
		dst := sandboxPath(filepath.Clean(f.Path))
		from := f.From
		if from != "" {
			if !filepath.IsAbs(from) {
				return nil, stepErr("files", fmt.Errorf("%q: From %q must be absolute", f.Path, from))
			}
			if real, err := filepath.EvalSymlinks(from); err == nil {
				from = real // the init reads it under the old root, where absolute links would miss
			}
		}
		binds = append(binds, bindSpec{From: from, Data: f.Data, Dst: dst, later: f.Later})
		filePaths = append(filePaths, dst)
	}

	devs, devNotes, err := cfg.Devices.plan()
	if err != nil {
		return nil, stepErr("devices", err)
	}
	for _, n := range devNotes {
		sb.log.Info(n)
	}

	// The init can make the sandbox's mounts while the rest is planned:
	// they need only the name, the host's top-level directories, the
	// workspace and the memory limit (the private /tmp's size).
	hostRoot, err := os.ReadDir("/")
	if err != nil {
		return nil, stepErr("mount: read host root", err)
	}
	mem, _ := policyMemory(cfg.Policy) // planResources reports a bad value
	hostTop := hostTopNeeded(cfg.Policy, append(devs.hostPaths(), filePaths...))
	// $NEMOCLAW_HOME exists before it is hidden: made later, it would
	// show through a host directory bound now.
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, stepErr("config", err)
	}
	hide, err := hiddenState(home, stateMask, hostTop, cfg.Policy.Filesystem)
	if err != nil {
		return nil, err
	}
	tools, err := toolsBind(cfg.Tools)
	if err != nil {
		return nil, err
	}
	sp := spec{
		Tools:         tools,
		HostTop:       hostTop,
		Name:          name,
		Workspace:     ws,
		WorkspaceUID:  wsDir.uid,
		WorkspaceGID:  wsDir.gid,
		WorkspaceDev:  wsDir.dev,
		WorkspaceIno:  wsDir.ino,
		Binds:         binds,
		Argv:          cfg.Command,
		Dir:           Workdir,
		SetIDs:        !rootless,
		UID:           uid,
		GID:           gid,
		TTY:           cfg.TTY,
		Tmpfs:         planTmpfs(mem),
		MemfdNoexec:   !rootless,
		StopTimeoutMs: stopTimeoutMs(cfg.StopTimeout),
		Hide:          hide,
		Protect:       sb.protect.paths,
		Devices:       devs,
	}
	sb.stopTimeout = time.Duration(sp.StopTimeoutMs) * time.Millisecond
	if ws != "" && !rootless {
		sp.WorkspaceUIDMap, sp.WorkspaceGIDMap = idmapLines(wsDir, uid, gid, ids)
	}
	mounts, err := compileMounts(&sp, hostRoot)
	if err != nil {
		return nil, stepErr("mount: read host root", err)
	}
	if !cfg.TTY {
		// The agent never gets the caller's terminal itself, nor a file
		// it could truncate: both reach it as pipes this process copies.
		if cfg, err = sb.relayTerminals(cfg); err != nil {
			return nil, stepErr("tty", err)
		}
		if sb.streams, err = relayStreams(&cfg); err != nil {
			return nil, stepErr("launch: streams", err)
		}
	}
	st, err := sb.newStarter(cfg, rootless, uid, gid)
	if err != nil {
		return nil, err
	}
	defer st.close()
	st.startEarly(mounts)

	// Landlock.
	abi := kernelLandlockABI()
	nc := cfg.Network
	if nc.ProxyPort == 0 {
		nc.ProxyPort = DefaultProxyPort
	}
	plan, notes, err := planLandlock(cfg.Policy, abi, nc, filePaths)
	if err != nil {
		st.abort()
		return nil, err
	}
	for _, n := range notes {
		sb.log.Warn(n)
	}
	devs.addRules(&plan, cfg.Devices)
	sb.log.Debug("landlock", "abi", abi, "rules", len(plan.Rules), "scoped", plan.Scoped != 0, "tcp_rules", len(plan.Ports))

	bpf, err := seccompProgram()
	if err != nil {
		st.abort()
		return nil, stepErr("seccomp: build", err)
	}

	how, err := memoryEnforcement(cfg.MemoryEnforcement)
	if err != nil {
		st.abort()
		return nil, stepErr("resources", err)
	}
	res, err := planResources(cfg.Policy.Resources, cgroupInfo(), name, how)
	if err != nil {
		st.abort()
		return nil, stepErr("resources", err)
	}
	if res.memory != mem {
		st.abort() // the mounts were made with another /tmp size
		return nil, stepErr("resources", fmt.Errorf("memory limit planned as %d bytes, %d for the mounts", res.memory, mem))
	}
	sb.cgroupDir, sb.memLimit, sb.memWatch = res.cgroupDir, res.memory, res.watchMemory > 0
	for _, s := range res.summary {
		if strings.Contains(s, "NOT applied") || strings.Contains(s, "failed") {
			sb.log.Warn("resources: " + s) // the user asked for a limit that does not hold
			continue
		}
		sb.log.Info("resources: " + s)
	}

	sp.Env = devs.env(agentEnv(cfg, name, uid, rootless, ids), cfg.Devices)
	sb.agentEnv = sp.Env // joined processes start from it (Exec)
	sp.Landlock = plan
	sp.AccessBinds = accessBinds(cfg.Policy.Filesystem)
	sp.Seccomp = bpf
	sp.Rlimits = res.rlimits
	if cfg.Network.Proxy {
		sp.Network.ProxyPort = nc.ProxyPort
	}
	sp.Network.DNS = cfg.Network.DNS
	sp.Network.Inference = cfg.Network.Inference
	if err := fillLater(sp.Binds); err != nil {
		st.abort()
		return nil, err
	}
	err = st.finish(ctx, mounts, compileRest(&sp))
	sb.streams.started() // the init holds the agent's ends, or is gone
	if err != nil {
		return nil, err
	}
	ok = true
	return sb, nil
}

// starter starts the init and hands it the program, in two parts when it
// can: the mounts as soon as they are planned (to the pre-spawned init,
// which makes them while the rest is planned), the rest when it is.
type starter struct {
	sb                *Sandbox
	cfg               Config
	rootless          bool
	uid, gid          int
	specR, specW, pts *os.File
	how               string
	t0                time.Time
	early             bool // the pre-spawned init runs and has the mounts
}

// newStarter makes the program pipe and, for a TTY, the pseudo-terminal.
func (sb *Sandbox) newStarter(cfg Config, rootless bool, uid, gid int) (*starter, error) {
	st := &starter{sb: sb, cfg: cfg, rootless: rootless, uid: uid, gid: gid}
	var err error
	if st.specR, st.specW, err = os.Pipe(); err != nil {
		return nil, stepErr("launch", err)
	}
	if cfg.TTY {
		ptm, pts, err := openPTY(cfg.WindowSize)
		if err != nil {
			st.close()
			return nil, stepErr("tty", err)
		}
		sb.ptm, st.pts = ptm, pts
	}
	return st, nil
}

// close releases the starter's own ends of the pipe and terminal.
func (st *starter) close() {
	for _, f := range []*os.File{st.specR, st.specW, st.pts} {
		if f != nil {
			f.Close()
		}
	}
}

// startEarly hands the pre-spawned init its streams and the mounts, if
// there is one that fits; otherwise finish starts an init later.
func (st *starter) startEarly(mounts []byte) {
	st.t0 = time.Now()
	if !st.sb.startPrespawned(st.cfg, st.rootless, st.uid, st.gid, st.specR, st.pts) {
		return
	}
	st.how, st.early = "pre-spawned", true
	st.specR.Close()
	st.specR = nil
	// Small (well under the pipe's 64 KiB); the init reads it at once.
	_, _ = st.specW.Write(mounts)
}

// abort ends an init started early, for a plan that failed after it
// (once: the init is reaped here).
func (st *starter) abort() {
	if !st.early {
		return
	}
	st.early = false
	st.specW.Close()
	st.specW = nil
	_ = st.sb.proc.Kill()
	_, _ = st.sb.waitInit()
}

// finish starts the init if startEarly did not, gives it the rest of the
// program (the mounts too when it starts now) and waits for it to report
// ready.
func (st *starter) finish(ctx context.Context, mounts, rest []byte) error {
	sb, cfg := st.sb, st.cfg
	prog := rest
	if st.early {
		if sb.cgroupDir != "" {
			if err := joinCgroup(sb.cgroupDir, sb.pid); err != nil {
				st.abort()
				return stepErr("cgroup", err)
			}
		}
	} else {
		st.t0, st.how = time.Now(), "exec"
		if err := sb.startExec(cfg, st.rootless, st.uid, st.gid, st.specR, st.pts); err != nil {
			return err
		}
		st.specR.Close()
		st.specR = nil
		prog = append(append([]byte(nil), mounts...), rest...)
	}
	sb.started = st.t0
	if cctx := ctx; cctx != nil && cctx.Done() != nil {
		sb.stopCtx = context.AfterFunc(cctx, func() { _ = sb.proc.Kill() })
	}
	specW := st.specW
	st.specW = nil
	go func() {
		_, _ = specW.Write(prog)
		specW.Close()
	}()

	msg, fds, err := sb.recv()
	if err != nil {
		return sb.initDied(err)
	}
	if msg.Error != nil {
		_, _ = sb.waitInit()
		return msg.Error.err()
	}
	if !msg.Ready {
		return sb.initDied(errors.New("unexpected status message"))
	}
	for _, n := range msg.Notes {
		sb.log.Warn(n)
	}
	if err := sb.adoptListeners(msg.Listeners, fds); err != nil {
		// The agent already runs: take the whole sandbox down with it.
		_ = sb.proc.Kill()
		_, _ = sb.waitInit()
		return stepErr("network: listeners", err)
	}
	if sb.ptm != nil {
		sb.ptyDone = make(chan struct{})
		if cfg.Stdin != nil {
			go sb.ptyInput(cfg.Stdin)
		}
		go func() {
			defer close(sb.ptyDone)
			out := cfg.Stdout
			if out == nil {
				out = io.Discard
			}
			w := &ptyOutput{w: out, hangup: sb.hangUpPTY}
			_, _ = io.Copy(w, sb.ptm) // ends with EIO when the last slave closes
		}()
	}
	if sb.relay != nil {
		sb.ptyDone = sb.relay.start()
	}
	sb.log.Debug("sandbox running", "init_pid", sb.pid, "init", st.how, "setup", time.Since(st.t0))
	if sb.memWatch {
		go sb.watchResident(sb.memLimit)
	}
	go sb.waitLoop()
	return nil
}

// startExec starts the init by re-executing InitPath (default: this binary)
// in init mode, in new namespaces.
func (sb *Sandbox) startExec(cfg Config, rootless bool, uid, gid int, specR, pts *os.File) error {
	self := cfg.InitPath
	if self == "" {
		self = "/proc/self/exe"
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return stepErr("launch", err)
	}
	sb.status = statusFile(pair[0])
	child := os.NewFile(uintptr(pair[1]), "sandbox-status-child")
	defer child.Close()

	cmd := exec.Command(self, initArg)
	cmd.Env = []string{} // the host environment never enters the sandbox
	cmd.ExtraFiles = []*os.File{specR, child}
	if pts != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	}
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	attr := &syscall.SysProcAttr{
		Setsid:    true,
		Pdeathsig: syscall.SIGKILL,
	}
	if rootless {
		flags |= unix.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: os.Getgid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
		// The init is the mapped (non-zero) uid; ambient capabilities
		// keep its namespace-scoped rights across the exec.
		attr.AmbientCaps = []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_NET_BIND_SERVICE, unix.CAP_SETPCAP, unix.CAP_KILL, unix.CAP_SYS_RESOURCE, unix.CAP_DAC_OVERRIDE}
	}
	attr.Cloneflags = flags
	if sb.cgroupDir != "" {
		cg, err := os.Open(sb.cgroupDir)
		if err != nil {
			return stepErr("cgroup", err)
		}
		defer cg.Close()
		attr.UseCgroupFD = true
		attr.CgroupFD = int(cg.Fd())
	}
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		return stepErr("namespace: start init", err)
	}
	sb.proc, sb.pid = cmd.Process, cmd.Process.Pid
	// Now, before waitLoop can reap it: a pid is only safe until then.
	if sb.pidfd, err = unix.PidfdOpen(sb.pid, 0); err != nil {
		sb.pidfd = -1
		sb.log.Debug("no pidfd for the init: signals are not forwarded", "err", err)
	}
	sb.waitInit = func() (syscall.WaitStatus, error) {
		err := cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return ws, err
	}
	return nil
}

// initHandle signals the init: an *os.Process on the exec path, a pidfd
// on the pre-spawned one.
type initHandle interface {
	Signal(os.Signal) error
	Kill() error
}

// initDied turns a lost status socket into an error that says how the init ended.
func (sb *Sandbox) initDied(cause error) error {
	_ = sb.proc.Kill()
	_, werr := sb.waitInit()
	return stepErr("init", fmt.Errorf("exited before the sandbox was ready (%v; status socket: %v)", werr, cause))
}

// fillLater gets the contents of files given with File.Later.
func fillLater(binds []bindSpec) error {
	for i := range binds {
		if b := &binds[i]; b.later != nil {
			data, err := b.later()
			if err != nil {
				return stepErr("files", fmt.Errorf("%s: %w", b.Dst, err))
			}
			b.Data, b.later = data, nil
		}
	}
	return nil
}

// statusFile wraps the launcher's end of the status socket, non-blocking
// so that recv waits in the netpoller.
func statusFile(fd int) *os.File {
	_ = unix.SetNonblock(fd, true) // on failure recv still works, blocking a thread
	return os.NewFile(uintptr(fd), "sandbox-status")
}

// recv reads one status message and any file descriptors riding with it.
func (sb *Sandbox) recv() (*statusMsg, []int, error) {
	// The init's messages are at most 16 KiB (nsinit.c): one buffer per
	// sandbox, not a fresh 64 KiB (16 page faults) per message.
	if sb.rbuf == nil {
		sb.rbuf = make([]byte, 16<<10)
	}
	buf := sb.rbuf
	oob := make([]byte, unix.CmsgSpace(8*4))
	// Through the netpoller (the socket is non-blocking): a blocking
	// recvmsg would hold an OS thread for the whole run, and the runtime
	// would start another.
	rc, err := sb.status.SyscallConn()
	if err != nil {
		return nil, nil, err
	}
	var n, oobn, flags int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, io.EOF
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, err
		}
		for _, c := range cmsgs {
			rights, err := unix.ParseUnixRights(&c)
			if err == nil {
				fds = append(fds, rights...)
			}
		}
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, fds, fmt.Errorf("status message longer than %d bytes", len(buf))
	}
	var msg statusMsg
	if err := json.Unmarshal(buf[:n], &msg); err != nil {
		return nil, nil, fmt.Errorf("decode status: %w", err)
	}
	return &msg, fds, nil
}

func (sb *Sandbox) adoptListeners(names []string, fds []int) error {
	if len(names) != len(fds) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return fmt.Errorf("init sent %d sockets for %d listeners", len(fds), len(names))
	}
	for i, n := range names {
		f := os.NewFile(uintptr(fds[i]), n)
		var err error
		switch n {
		case lnProxy:
			sb.proxyLn, err = net.FileListener(f)
		case lnDNSTCP:
			sb.dnsLn, err = net.FileListener(f)
		case lnDNSUDP:
			sb.dnsPC, err = net.FilePacketConn(f)
		case lnInfHTTP:
			sb.infHTTP, err = net.FileListener(f)
		case lnInfHTTPS:
			sb.infHTTPS, err = net.FileListener(f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

// waitLoop collects the agent's exit status from the init, then the init.
func (sb *Sandbox) waitLoop() {
	var st *exitStatus
	for {
		msg, fds, err := sb.recv()
		for _, fd := range fds {
			unix.Close(fd)
		}
		if err != nil {
			break
		}
		if msg.Exit != nil {
			st = msg.Exit
			break
		}
		sb.joins.dispatch(sb, msg)
	}
	sb.joins.end(sb)
	sb.log.Debug("agent exited", "since_start", time.Since(sb.started))
	if sb.relay != nil {
		// What the caller types from now on is its shell's.
		sb.relay.stopInput()
	}
	sb.reaped = make(chan struct{})
	reap := func() (syscall.WaitStatus, error) {
		defer close(sb.reaped)
		ws, err := sb.waitInit()
		sb.log.Debug("init exited", "since_start", time.Since(sb.started))
		return ws, err
	}
	var ws syscall.WaitStatus
	var werr error
	if st != nil && sb.reapLater {
		// Everything of the sandbox but its init is gone and the init
		// has closed its streams; its own exit (unmounting the sandbox's
		// mounts, dropping its namespaces) need not delay the caller.
		go func() { _, _ = reap() }()
	} else {
		ws, werr = reap()
	}
	if sb.ptyDone != nil {
		<-sb.ptyDone
	}
	sb.streams.wait() // all the agent wrote is in the caller's files
	// Over the memory limit: the agent's end is that, whatever else the
	// init reported (an agent whose child the OOM killer took and that
	// exited on its own keeps its code, with the log's line).
	if err := sb.memoryEnded(); err != nil && (st == nil || st.Signal == int(syscall.SIGKILL)) {
		sb.code, sb.waitErr = 128+int(syscall.SIGKILL), err
		close(sb.done)
		return
	}
	switch {
	case st != nil:
		sb.code = st.Code
		if st.Stopped {
			sb.log.Warn("the agent was still running after SIGTERM and its stop timeout: everything in the sandbox was killed", "stop_timeout", sb.stopTimeout)
		} else if st.Signal != 0 {
			sb.log.Info("agent killed by signal", "signal", unix.SignalName(syscall.Signal(st.Signal)))
		}
	default:
		sb.code = 128 + int(syscall.SIGKILL)
		if ws.Exited() {
			sb.code = ws.ExitStatus()
		}
		sb.waitErr = fmt.Errorf("sandbox: init: ended without reporting the agent's status (%v)", werr)
	}
	close(sb.done)
}

// Cgroup is the host path of the sandbox's own cgroup v2, "" when it has
// none (its memory limit is then the supervisor's watch).
func (sb *Sandbox) Cgroup() string { return sb.cgroupDir }

// Name returns the sandbox's name.
func (sb *Sandbox) Name() string { return sb.name }

// Pid returns the host pid of the sandbox's init (its pid 1). Every process
// of the sandbox is a descendant of it.
func (sb *Sandbox) Pid() int { return sb.pid }

// Bits of Sandbox.taken.
const (
	takenProxy = 1 << iota
	takenDNSUDP
	takenDNSTCP
	takenInference
)

// InferenceListeners returns the listeners on InferenceAddr:80 and :443,
// or nils when Network.Inference was not requested. The caller takes
// them, as with ProxyListener.
func (sb *Sandbox) InferenceListeners() (http, https net.Listener) {
	sb.taken.Or(takenInference)
	return sb.infHTTP, sb.infHTTPS
}

// ProxyListener returns the listener on the sandbox's 127.0.0.1:ProxyPort, or
// nil when Network.Proxy was not requested. The caller takes it: it serves
// and closes it, and Close leaves it alone. (Closing a listener that a
// goroutine serves wakes that goroutine and waits for it; a process that
// exits when its sandbox does can leave that to the exit.)
func (sb *Sandbox) ProxyListener() net.Listener {
	sb.taken.Or(takenProxy)
	return sb.proxyLn
}

// DNSPacketConn returns the UDP socket on the sandbox's 127.0.0.1:53, or
// nil. The caller takes it, as with ProxyListener.
func (sb *Sandbox) DNSPacketConn() net.PacketConn {
	sb.taken.Or(takenDNSUDP)
	return sb.dnsPC
}

// DNSListener returns the TCP listener on the sandbox's 127.0.0.1:53, or
// nil. The caller takes it, as with ProxyListener.
func (sb *Sandbox) DNSListener() net.Listener {
	sb.taken.Or(takenDNSTCP)
	return sb.dnsLn
}

// Wait waits for the agent to exit and returns its exit code (128+signal
// when a signal killed it). The error is non-nil only when the sandbox
// itself failed.
func (sb *Sandbox) Wait() (int, error) {
	<-sb.done
	return sb.code, sb.waitErr
}

// Done is closed when the sandbox has exited.
func (sb *Sandbox) Done() <-chan struct{} { return sb.done }

// Signal sends sig to the agent's process group (through the init).
func (sb *Sandbox) Signal(sig os.Signal) error {
	select {
	case <-sb.done:
		return os.ErrProcessDone
	default:
	}
	return sb.proc.Signal(sig)
}

// ResizeTTY sets the pseudo-terminal's size; the kernel sends SIGWINCH to
// the agent's foreground job. It does nothing without a TTY.
func (sb *Sandbox) ResizeTTY(ws WindowSize) error {
	if sb.ptm == nil {
		return nil
	}
	return unix.IoctlSetWinsize(rawFd(sb.ptm), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}

// Close kills whatever still runs, closes the listeners no caller took and
// removes the cgroup. Once the init has reported the agent's exit nothing
// else of the sandbox runs, so Close does not wait for the init's own
// teardown unless it must (to remove a cgroup).
func (sb *Sandbox) Close() error {
	var err error
	sb.closeOne.Do(func() {
		select {
		case <-sb.done:
		default:
			_ = sb.proc.Kill()
			<-sb.done
		}
		if sb.cgroupDir != "" {
			<-sb.reaped // the cgroup can only go once its last member has
		}
		err = sb.cleanup()
	})
	return err
}

func (sb *Sandbox) cleanup() error {
	var errs []error
	if sb.stopCtx != nil {
		sb.stopCtx()
	}
	taken := sb.taken.Load()
	for _, l := range []struct {
		c   io.Closer
		bit uint32
	}{{sb.proxyLn, takenProxy}, {sb.dnsPC, takenDNSUDP}, {sb.dnsLn, takenDNSTCP}, {sb.infHTTP, takenInference}, {sb.infHTTPS, takenInference}} {
		if l.c != nil && !isNilCloser(l.c) && taken&l.bit == 0 {
			_ = l.c.Close()
		}
	}
	if sb.status != nil {
		sb.status.Close()
	}
	if sb.pidfd >= 0 {
		unix.Close(sb.pidfd)
		sb.pidfd = -1
	}
	if sb.ptm != nil {
		sb.ptm.Close()
	}
	if sb.relay != nil {
		sb.relay.close()
	}
	sb.streams.close()
	if kept := sb.protect.removePlaceholders(); len(kept) > 0 {
		sb.log.Warn("placeholders left in the workspace: someone on the host put something in them during the run", "names", kept)
	}
	if sb.cgroupDir != "" {
		if err := os.Remove(sb.cgroupDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", sb.cgroupDir, err))
		}
	}
	return errors.Join(errs...)
}

// ownDirs are the sandbox's own tmpfs directories: nothing of the host's
// shows there, so files may be created in them.
var ownDirs = []string{"/tmp/", "/run/", "/dev/shm/"}

func underOwnDir(p string) bool {
	for _, d := range ownDirs {
		if strings.HasPrefix(p, d) {
			return true
		}
	}
	return false
}

// sandboxPath resolves symlinks of p as the sandbox will see them, so that
// a file placed over, say, /etc/resolv.conf -> ../run/systemd/resolve/...
// (systemd-resolved) lands on the link's target inside the sandbox's own
// /run. Outside the own directories the sandbox sees the host's files, so
// the host's links are followed (at most 8).
func sandboxPath(p string) string {
	for i := 0; i < 8 && !underOwnDir(p); i++ {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return p
		}
		t, err := os.Readlink(p)
		if err != nil {
			return p
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(p), t)
		}
		p = filepath.Clean(t)
	}
	return p
}

func isNilCloser(c io.Closer) bool {
	switch v := c.(type) {
	case net.Listener:
		return v == nil
	case net.PacketConn:
		return v == nil
	}
	return false
}

// agentEnv is the agent's whole environment: a minimal base plus cfg.Env.
func agentEnv(cfg Config, name string, uid int, rootless bool, ids *hostDB) []string {
	user := "sandbox"
	if cfg.Policy.Process != nil && cfg.Policy.Process.RunAsUser != "" {
		user = cfg.Policy.Process.RunAsUser
	}
	if _, err := strconv.Atoi(user); err == nil {
		user = ids.name("/etc/passwd", uid, user)
	}
	term := "dumb"
	if cfg.TTY {
		term = "xterm-256color"
		if t := os.Getenv("TERM"); t != "" {
			term = t
		}
	}
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + Workdir,
		"USER=" + user,
		"LOGNAME=" + user,
		"HOSTNAME=" + name,
		"TERM=" + term,
		"LANG=C.UTF-8",
		"NEMOCLAW_SANDBOX=" + name,
	}
	if cfg.Tools != "" {
		env[0] = "PATH=" + ToolsPath + "/bin:" + strings.TrimPrefix(env[0], "PATH=")
	}
	return mergeEnv(env, cfg.Env) // cfg.Env overrides the base
}

// mergeEnv returns base with each of extra's variables set (replacing
// base's of the same name) or added.
func mergeEnv(base, extra []string) []string {
	env := append([]string(nil), base...)
	idx := map[string]int{}
	for i, kv := range env {
		idx[strings.SplitN(kv, "=", 2)[0]] = i
	}
	for _, kv := range extra {
		k := strings.SplitN(kv, "=", 2)[0]
		if i, ok := idx[k]; ok {
			env[i] = kv
			continue
		}
		idx[k] = len(env)
		env = append(env, kv)
	}
	return env
}
