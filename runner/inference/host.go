package inference

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// HostConfig configures a plugin host.
type HostConfig struct {
	// Home is $NEMOCLAW_HOME: plugins are searched in Home/plugins and
	// pinned in Home/plugins.lock.
	Home string
	// Dirs are extra plugin directories (--plugin-dir), searched first.
	Dirs []string
	// ExecutableDir is the nemoclaw binary's directory, searched last
	// (where make build and the release put the bundled plugins).
	ExecutableDir string
	// Pins are checksums by plugin name that blueprint profiles declare
	// (sha256); they take precedence over the lock file.
	Pins map[string]string
	// BundledPins are the checksums of the plugins built with this
	// nemoclaw (version.BundledPluginPins); they pin only a plugin found
	// in ExecutableDir, after Pins and the lock file.
	BundledPins map[string]string
	// Logger receives the host's and the plugins' log lines.
	Logger *slog.Logger
	// HealthInterval is how often a running plugin is pinged; a plugin
	// that does not answer is stopped and started again on the next
	// request. 0 is 30s; negative turns the checks off.
	HealthInterval time.Duration
	// HealthTimeout is how long a ping may take. 0 is 5s.
	HealthTimeout time.Duration
	// IdleStop stops a route's plugin after this long without a call (a
	// route switched away from, a sandbox gone); the next call starts it
	// again. Checked with the health pings. 0 is 10 minutes.
	IdleStop time.Duration
	// RestartBackoff is the wait before a plugin that crashed or failed to
	// start twice in a row is started again, doubled per further failure
	// up to MaxRestartBackoff. 0 is 500ms (max 30s).
	RestartBackoff, MaxRestartBackoff time.Duration
	// StartTimeout bounds a plugin's start and handshake. 0 is 10s.
	StartTimeout time.Duration
}

// Host discovers, verifies, launches and supervises inference plugins. It
// implements Provider: one plugin process per distinct route (plugin and
// configuration, credential included), started on first use.
type Host struct {
	cfg    HostConfig
	log    *slog.Logger
	launch chan func()

	mu    sync.Mutex
	insts map[string]*instance
	// handles are the backends Backend returned, one per route key: the
	// same value each time, so that the router's cache of descriptions
	// (keyed by backend) holds and a call costs no Describe round trip.
	handles map[string]*pluginBackend
	closed  bool

	stop chan struct{}
	done sync.WaitGroup
}

// NewHost returns a host for cfg; it starts no plugin until one is asked for.
func NewHost(cfg HostConfig) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 30 * time.Second
	}
	if cfg.IdleStop <= 0 {
		cfg.IdleStop = 10 * time.Minute
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = 5 * time.Second
	}
	if cfg.RestartBackoff <= 0 {
		cfg.RestartBackoff = 500 * time.Millisecond
	}
	if cfg.MaxRestartBackoff <= 0 {
		cfg.MaxRestartBackoff = 30 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	for name, pin := range cfg.Pins {
		if !isSHA256Hex(pin) {
			return nil, fmt.Errorf("new plugin host: the pin for plugin %s is %q, not 64 lowercase hex digits", name, pin)
		}
	}
	h := &Host{cfg: cfg, log: cfg.Logger, launch: make(chan func()), insts: map[string]*instance{}, handles: map[string]*pluginBackend{}, stop: make(chan struct{})}
	h.done.Add(1)
	go h.launcher()
	if cfg.HealthInterval > 0 {
		h.done.Add(1)
		go h.healthLoop()
	}
	return h, nil
}

// launcher starts every plugin process from one OS thread that never
// exits. The parent-death signal (Pdeathsig) fires when the thread that
// forked the child exits, not the process: a plugin forked from a thread
// the Go runtime later retires (a goroutine that locked it and returned)
// would be killed while the host lives on (golang/go#27505).
func (h *Host) launcher() {
	defer h.done.Done()
	runtime.LockOSThread() // never unlocked: this thread lives as long as the host
	for {
		select {
		case f := <-h.launch:
			f()
		case <-h.stop:
			return
		}
	}
}

// Plugins lists every plugin found, with its checksum and whether it may run.
func (h *Host) Plugins() ([]Plugin, error) { return h.discover() }

// find returns the plugin called name, refused or not.
func (h *Host) find(name string) (Plugin, error) {
	ps, err := h.discover()
	if err != nil {
		return Plugin{}, err
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return Plugin{}, fmt.Errorf("%w: no %s%s in %v; build or copy it there, or name its directory with --plugin-dir", ErrNotFound, BinaryPrefix, name, h.cfg.dirs())
}

// Describe starts plugin name once, asks it to describe itself and stops it.
func (h *Host) Describe(ctx context.Context, name string) (sdk.Description, error) {
	p, err := h.find(name)
	if err != nil {
		return sdk.Description{}, err
	}
	c, b, err := h.start(ctx, p)
	if err != nil {
		return sdk.Description{}, err
	}
	defer c.stop(stopGrace)
	return b.Describe(ctx)
}

// Backend implements Provider: the route's plugin, started and configured
// on first use. The backend it returns restarts the plugin when it died.
func (h *Host) Backend(ctx context.Context, r Route) (sdk.Backend, error) {
	key, err := routeKey(r)
	if err != nil {
		return nil, err
	}
	in, err := h.instance(key, r)
	if err != nil {
		return nil, err
	}
	if _, err := in.live(ctx); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pb, ok := h.handles[key]
	if !ok {
		pb = &pluginBackend{h: h, key: key, route: r}
		h.handles[key] = pb
	}
	return pb, nil
}

// instance returns the route's instance, made on first use (and again
// after it was stopped for idleness).
func (h *Host) instance(key string, r Route) (*instance, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errors.New("plugin host is closed")
	}
	in := h.insts[key]
	if in == nil {
		in = &instance{h: h, route: r}
		h.insts[key] = in
	}
	return in, nil
}

// Close stops every plugin.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	insts := h.insts
	h.insts = nil
	h.mu.Unlock()
	// Plugins first, while the launcher thread lives: its end fires every
	// plugin's parent-death SIGKILL, which would cut the graceful stop
	// short. (Anything started meanwhile still gets that SIGKILL.)
	for _, in := range insts {
		in.kill()
	}
	close(h.stop)
	h.done.Wait()
	return nil
}

// routeKey identifies a route's process: the plugin and all of its
// configuration, so that a plugin process holds one credential only.
func routeKey(r Route) (string, error) {
	if !validName(r.Plugin) {
		return "", fmt.Errorf("route %s: plugin name %q is not a plugin name (lowercase letters, digits, - and _)", r.Profile, r.Plugin)
	}
	cfg, err := json.Marshal(r.Config)
	if err != nil {
		return "", fmt.Errorf("route %s: encode config: %w", r.Profile, err)
	}
	sum := sha256.Sum256(cfg)
	return r.Plugin + "/" + hex.EncodeToString(sum[:]), nil
}

// start verifies plugin p on the bytes it executes and starts it: the
// binary is copied into a sealed memfd while it is hashed, the hash is
// compared with the pin, and the memfd is what runs (/proc/self/fd/N). A
// path checked and then executed could be swapped in between (TOCTOU), and
// even a file descriptor of the file itself could be written through by
// its owner after hashing; sealed memfd contents cannot change at all.
func (h *Host) start(ctx context.Context, p Plugin) (*proc, sdk.Backend, error) {
	if p.Refused != nil {
		return nil, nil, p.Refused
	}
	type result struct {
		c   *proc
		b   sdk.Backend
		err error
	}
	ch := make(chan result, 1)
	f := func() {
		c, b, err := h.startOnThread(p)
		ch <- result{c, b, err}
	}
	select {
	case h.launch <- f:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-h.stop:
		return nil, nil, errors.New("plugin host is closed")
	}
	r := <-ch
	return r.c, r.b, r.err
}

func (h *Host) startOnThread(p Plugin) (*proc, sdk.Backend, error) {
	real, err := checkFile(p.Dir, p.Path)
	if err != nil {
		return nil, nil, err
	}
	mf, sum, err := sealedCopy(real, p.Name)
	if err != nil {
		return nil, nil, err
	}
	defer mf.Close()
	p.SHA256 = sum
	if err := checkPin(p); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", mf.Fd()))
	cmd.Args[0] = BinaryPrefix + p.Name
	cmd.Dir = "/"
	// SIGKILL the plugin when the host dies, however it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cc := sdk.ClientConfig(cmd, newHclog(h.log, "plugin."+p.Name))
	cc.Stderr = &stderrLog{log: h.log.With("plugin", p.Name)}
	// What the plugin writes to os.Stdout and os.Stderr after Serve
	// (go-plugin streams them over gRPC) is relayed too.
	cc.SyncStdout = &stderrLog{log: h.log.With("plugin", p.Name, "stream", "stdout")}
	cc.SyncStderr = &stderrLog{log: h.log.With("plugin", p.Name, "stream", "stderr")}
	cc.StartTimeout = h.cfg.StartTimeout
	c := &proc{Client: plugin.NewClient(cc), cmd: cmd}
	rpc, err := c.Client.Client()
	if err != nil {
		c.stop(0)
		return nil, nil, fmt.Errorf("start plugin %s (%s): %w", p.Name, p.Path, err)
	}
	raw, err := rpc.Dispense(sdk.PluginKey)
	if err != nil {
		c.stop(0)
		return nil, nil, fmt.Errorf("start plugin %s: %w", p.Name, err)
	}
	h.log.Info("inference plugin started", "plugin", p.Name, "path", p.Path, "sha256", sum, "pid", c.ReattachConfig().Pid)
	return c, raw.(sdk.Backend), nil
}

// proc is a started plugin process.
type proc struct {
	*plugin.Client
	cmd *exec.Cmd
}

// stop ends the process: go-plugin's Kill asks the plugin to shut down and
// waits for it without limit, so after grace (0: at once, for a plugin
// that is hung or failed its health check) the process is killed and
// go-plugin's Kill then returns and cleans up.
func (p *proc) stop(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		p.Client.Kill()
		close(done)
	}()
	if grace > 0 {
		select {
		case <-done:
			return
		case <-time.After(grace):
		}
	}
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill() // after the process was reaped: "already finished", harmless
	}
	<-done
}

// stopGrace is how long a plugin stopped in the ordinary way may take.
const stopGrace = 2 * time.Second

// sealedCopy copies the file at path into a sealed memfd, hashing it on the way.
func sealedCopy(path, name string) (*os.File, string, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("open plugin %s: %w", path, err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate(BinaryPrefix+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // kernels before 6.3 know no MFD_EXEC; their memfds are executable
		fd, err = unix.MemfdCreate(BinaryPrefix+name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, "", fmt.Errorf("copy plugin %s to memory: memfd_create: %w", path, err)
	}
	mf := os.NewFile(uintptr(fd), filepath.Base(path))
	hs := sha256.New()
	if _, err := io.Copy(io.MultiWriter(mf, hs), src); err != nil {
		mf.Close()
		return nil, "", fmt.Errorf("copy plugin %s to memory: %w", path, err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		mf.Close()
		return nil, "", fmt.Errorf("seal plugin copy of %s: %w", path, err)
	}
	return mf, hex.EncodeToString(hs.Sum(nil)), nil
}

// healthLoop pings every running plugin; one that does not answer is
// stopped and started again by the next request.
func (h *Host) healthLoop() {
	defer h.done.Done()
	t := time.NewTicker(h.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.Lock()
		insts := make([]*instance, 0, len(h.insts))
		for key, in := range h.insts {
			if in.idle(h.cfg.IdleStop) {
				delete(h.insts, key)
				go in.kill()
				h.log.Info("inference plugin stopped: idle", "plugin", in.route.Plugin, "route", in.route.Profile, "idle_stop", h.cfg.IdleStop)
				continue
			}
			insts = append(insts, in)
		}
		h.mu.Unlock()
		for _, in := range insts {
			in.ping()
		}
	}
}
