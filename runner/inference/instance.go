package inference

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// ErrPluginExited marks a request that failed because its plugin process
// died or stopped answering; the error also holds an *sdk.Error (502) for
// the router to answer with. The next request starts the plugin again.
var ErrPluginExited = errors.New("inference plugin exited")

// crashWindow is how long a plugin must have run for its crash not to
// count toward the restart backoff.
const crashWindow = 30 * time.Second

// instance is one route's plugin process, started on demand and again
// after it died.
type instance struct {
	h     *Host
	route Route

	mu       sync.Mutex
	client   *proc
	backend  sdk.Backend
	started  time.Time
	failures int       // starts that failed or crashes soon after start, in a row
	notUntil time.Time // no start before this (backoff)
	lastErr  error
	lastUsed time.Time // the last call's start or end
	inflight int       // calls in progress
}

// live returns the running backend, starting the plugin if it is not
// running (unless a backoff holds it back).
func (in *instance) live(ctx context.Context) (sdk.Backend, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.lastUsed = time.Now()
	if in.client != nil && !in.client.Exited() {
		return in.backend, nil
	}
	if in.client != nil {
		in.reapLocked("exited")
	}
	if wait := time.Until(in.notUntil); wait > 0 {
		return nil, &sdk.Error{Status: 503, Type: "backend_unavailable", Message: fmt.Sprintf("inference plugin %s failed %d times in a row (last: %v); next start in %s", in.route.Plugin, in.failures, in.lastErr, wait.Round(time.Millisecond))}
	}
	b, err := in.startLocked(ctx)
	if err != nil {
		in.failures++
		in.lastErr = err
		in.notUntil = time.Now().Add(in.backoff())
		return nil, err
	}
	return b, nil
}

func (in *instance) backoff() time.Duration {
	if in.failures < 2 {
		return 0
	}
	d := in.h.cfg.RestartBackoff << (in.failures - 2)
	if d > in.h.cfg.MaxRestartBackoff || d <= 0 {
		d = in.h.cfg.MaxRestartBackoff
	}
	return d
}

func (in *instance) startLocked(ctx context.Context) (sdk.Backend, error) {
	p, err := in.h.find(in.route.Plugin)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", in.route.Profile, err)
	}
	c, b, err := in.h.start(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", in.route.Profile, err)
	}
	if err := b.Configure(ctx, in.route.Config); err != nil {
		c.stop(stopGrace)
		return nil, fmt.Errorf("route %s: configure plugin %s: %w", in.route.Profile, in.route.Plugin, err)
	}
	in.client, in.backend, in.started = c, b, time.Now()
	return b, nil
}

// reapLocked forgets a dead or unhealthy process (killing it if it still
// runs) and counts it toward the backoff when it died soon after starting.
func (in *instance) reapLocked(why string) {
	if in.client == nil {
		return
	}
	in.client.stop(0)
	if time.Since(in.started) < crashWindow {
		in.failures++
	} else {
		in.failures = 1
	}
	in.lastErr = fmt.Errorf("plugin %s", why)
	in.notUntil = time.Now().Add(in.backoff())
	in.h.log.Warn("inference plugin stopped", "plugin", in.route.Plugin, "route", in.route.Profile, "why", why, "failures", in.failures)
	in.client, in.backend = nil, nil
}

// lost is called when a call on b failed in transport: the process is
// reaped if it is the one that failed.
func (in *instance) lost(b sdk.Backend, why string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.backend == b {
		in.reapLocked(why)
	}
}

// ping checks that the plugin process answers go-plugin's gRPC health
// service within HealthTimeout; one that does not (hung, stopped) is killed,
// which also ends the calls stuck in it with ErrPluginExited. The lock is
// not held while waiting, so requests are not held up by a slow ping.
// (go-plugin's own Ping waits forever.)
func (in *instance) ping() {
	in.mu.Lock()
	c := in.client
	in.mu.Unlock()
	if c == nil {
		return
	}
	err := errors.New("exited")
	if !c.Exited() {
		err = pingGRPC(c, in.h.cfg.HealthTimeout)
	}
	if err == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.client == c {
		in.reapLocked(fmt.Sprintf("failed its health check: %v", err))
	}
}

func pingGRPC(c *proc, timeout time.Duration) error {
	rpc, err := c.Client.Client()
	if err != nil {
		return err
	}
	gc, ok := rpc.(*plugin.GRPCClient)
	if !ok {
		return fmt.Errorf("plugin speaks %T, not gRPC", rpc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(gc.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
	return err
}

// used counts a call in (+1) or out (-1).
func (in *instance) used(d int) {
	in.mu.Lock()
	in.inflight += d
	in.lastUsed = time.Now()
	in.mu.Unlock()
}

// idle reports whether the instance served no call for longer than d.
func (in *instance) idle(d time.Duration) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.inflight == 0 && time.Since(in.lastUsed) > d
}

func (in *instance) kill() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.client != nil {
		in.client.stop(stopGrace)
		in.client, in.backend = nil, nil
	}
}

// pluginBackend is what Host.Backend returns: each call goes to the
// route's live process (looked up per call, so a handle kept across an idle
// stop still reaches a supervised one), and a transport failure reaps that process and
// comes back as ErrPluginExited with a 502 for the agent.
type pluginBackend struct {
	h     *Host
	key   string
	route Route
}

func (p *pluginBackend) do(ctx context.Context, what string, f func(sdk.Backend) error) error {
	in, err := p.h.instance(p.key, p.route)
	if err != nil {
		return err
	}
	b, err := in.live(ctx)
	if err != nil {
		return err
	}
	in.used(+1)
	err = f(b)
	in.used(-1)
	if err == nil || !errors.Is(err, sdk.ErrTransport) {
		return err
	}
	in.lost(b, fmt.Sprintf("failed during %s: %v", what, err))
	return fmt.Errorf("%w: %w", ErrPluginExited, &sdk.Error{Status: 502, Type: "backend_unavailable",
		Message: fmt.Sprintf("inference plugin %s stopped during %s; the next request starts it again", p.route.Plugin, what)})
}

func (p *pluginBackend) Describe(ctx context.Context) (d sdk.Description, err error) {
	err = p.do(ctx, "describe", func(b sdk.Backend) (e error) { d, e = b.Describe(ctx); return })
	return d, err
}

// Configure is refused: the host configures each process from its Route
// (at every start, restarts included); a route changes by asking
// Host.Backend for the new Route, which gets a process of its own.
func (p *pluginBackend) Configure(context.Context, sdk.Config) error {
	return fmt.Errorf("configure plugin %s: the plugin host configures plugins from their route; call Host.Backend with the new route instead", p.route.Plugin)
}

func (p *pluginBackend) Health(ctx context.Context) error {
	return p.do(ctx, "health", func(b sdk.Backend) error { return b.Health(ctx) })
}

func (p *pluginBackend) ListModels(ctx context.Context) (ms []sdk.Model, err error) {
	err = p.do(ctx, "list models", func(b sdk.Backend) (e error) { ms, e = b.ListModels(ctx); return })
	return ms, err
}

func (p *pluginBackend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return p.do(ctx, "chat completions", func(b sdk.Backend) error { return b.ChatCompletions(ctx, req, w) })
}

func (p *pluginBackend) Completions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return p.do(ctx, "completions", func(b sdk.Backend) error { return b.Completions(ctx, req, w) })
}

func (p *pluginBackend) Responses(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return p.do(ctx, "responses", func(b sdk.Backend) error { return b.Responses(ctx, req, w) })
}

func (p *pluginBackend) Embeddings(ctx context.Context, req *sdk.Request) (c *sdk.Chunk, err error) {
	err = p.do(ctx, "embeddings", func(b sdk.Backend) (e error) { c, e = b.Embeddings(ctx, req); return })
	return c, err
}
