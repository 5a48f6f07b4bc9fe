package inference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Defaults of RouterConfig.
const (
	// DefaultMaxBodyBytes bounds a request body: long contexts and
	// embedding batches fit, a runaway upload does not.
	DefaultMaxBodyBytes = 32 << 20
	// DefaultMaxConcurrent bounds a sandbox's inference calls in flight:
	// each may hold a request body of up to MaxBodyBytes in memory.
	DefaultMaxConcurrent = 64
	// DefaultIdleTimeout is the idle-gap timeout of a route whose profile
	// sets no timeout_secs: the longest wait for the backend's next chunk
	// (for a non-streamed request, for its whole answer).
	DefaultIdleTimeout = 120 * time.Second
)

// AuditEvent is what the router reports of one call: never a prompt, a
// body or a key.
type AuditEvent struct {
	// Route is the profile that served the call ("" when none was set).
	Route string
	// Plugin is the route's plugin.
	Plugin string
	// Method and Path are the request's.
	Method, Path string
	// Model is the backend model the call was sent to ("" when refused before).
	Model string
	// Stream is the request's stream flag.
	Stream bool
	// Status is the HTTP status answered; for a stream that began and then
	// failed, 200 with Error set.
	Status int
	// Usage holds the tokens the backend reported (zero when none).
	Usage sdk.Usage
	// Latency is the call's whole duration, TTFB the time to its first byte.
	Latency, TTFB time.Duration
	// Error says why the call failed, if it did.
	Error string
}

// RouterConfig configures a Router.
type RouterConfig struct {
	// Sandbox names the sandbox in logs.
	Sandbox string
	// Routes are the sandbox's routes, by profile name.
	Routes []Route
	// Active is the profile in force at start ("": none, every call is
	// answered 503 until SetRoute).
	Active string
	// Provider gives backends for routes; nil: every call is answered 503
	// with NoProviderReason.
	Provider Provider
	// NoProviderReason says why there is no provider (shown to the agent).
	NoProviderReason string
	// Audit receives one event per call; nil: none.
	Audit func(AuditEvent)
	// Logger receives operator logs.
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// MaxConcurrent bounds the calls in flight (default
	// DefaultMaxConcurrent); more are answered 429.
	MaxConcurrent int

	// idle overrides every route's idle timeout (tests).
	idle time.Duration
}

// Router serves inference.local for one sandbox: an http.Handler that
// checks and rewrites each call and hands it to the active route's backend.
// It is safe for concurrent use; SetRoute switches the route live.
type Router struct {
	cfg    RouterConfig
	log    *slog.Logger
	routes map[string]*Route
	active atomic.Pointer[Route]
	// descs caches each backend's Describe (a plugin call) by backend.
	descMu sync.Mutex
	descs  map[sdk.Backend]sdk.Description
	// slots holds one token per call in flight.
	slots chan struct{}
}

// NewRouter checks cfg and builds a router.
func NewRouter(cfg RouterConfig) (*Router, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = DefaultMaxConcurrent
	}
	rt := &Router{cfg: cfg, log: cfg.Logger, routes: map[string]*Route{}, descs: map[sdk.Backend]sdk.Description{},
		slots: make(chan struct{}, cfg.MaxConcurrent)}
	for i := range cfg.Routes {
		r := cfg.Routes[i]
		if r.Profile == "" {
			return nil, errors.New("inference router: a route has no profile name")
		}
		if _, dup := rt.routes[r.Profile]; dup {
			return nil, fmt.Errorf("inference router: profile %q is given twice", r.Profile)
		}
		rt.routes[r.Profile] = &r
	}
	if cfg.Active != "" {
		if err := rt.SetRoute(cfg.Active); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// SetRoute makes profile the active route. Calls already running finish on
// the route they started with.
func (rt *Router) SetRoute(profile string) error {
	r, ok := rt.routes[profile]
	if !ok {
		return fmt.Errorf("inference route %q: this sandbox has no such profile; its profiles: %s", profile, strings.Join(rt.Profiles(), ", "))
	}
	rt.active.Store(r)
	rt.log.Info("inference route set", "sandbox", rt.cfg.Sandbox, "profile", profile, "model", r.Config.Model)
	return nil
}

// Active returns the active route, if any.
func (rt *Router) Active() (Route, bool) {
	r := rt.active.Load()
	if r == nil {
		return Route{}, false
	}
	return *r, true
}

// Profiles lists the sandbox's profile names, sorted.
func (rt *Router) Profiles() []string {
	out := make([]string, 0, len(rt.routes))
	for k := range rt.routes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Backend returns the active route's backend and its description (for
// `inference test` and `inference models`).
func (rt *Router) Backend(ctx context.Context) (Route, sdk.Backend, sdk.Description, error) {
	r := rt.active.Load()
	if r == nil {
		return Route{}, nil, sdk.Description{}, errors.New("this sandbox has no inference route: give its blueprint an inference profile, or set one with `nemoclaw inference set`")
	}
	if rt.cfg.Provider == nil {
		return *r, nil, sdk.Description{}, errors.New(rt.noProvider())
	}
	b, err := rt.cfg.Provider.Backend(ctx, *r)
	if err != nil {
		return *r, nil, sdk.Description{}, fmt.Errorf("backend for profile %s (plugin %s): %w", r.Profile, r.Plugin, err)
	}
	d, err := rt.describe(ctx, b)
	if err != nil {
		return *r, nil, sdk.Description{}, fmt.Errorf("describe plugin %s: %w", r.Plugin, err)
	}
	return *r, b, d, nil
}

func (rt *Router) noProvider() string {
	if rt.cfg.NoProviderReason != "" {
		return rt.cfg.NoProviderReason
	}
	return "no inference backend host is running for this sandbox"
}

// describe returns b's description, asking once per backend (per call
// for a backend whose type cannot be a map key).
func (rt *Router) describe(ctx context.Context, b sdk.Backend) (sdk.Description, error) {
	if !reflect.TypeOf(b).Comparable() {
		return b.Describe(ctx)
	}
	rt.descMu.Lock()
	d, ok := rt.descs[b]
	rt.descMu.Unlock()
	if ok {
		return d, nil
	}
	d, err := b.Describe(ctx)
	if err != nil {
		return d, err
	}
	rt.descMu.Lock()
	if len(rt.descs) > 64 { // restarted plugins leave stale entries
		clear(rt.descs)
	}
	rt.descs[b] = d
	rt.descMu.Unlock()
	return d, nil
}

// credentialHeaders are request headers that may carry a caller's
// credential. The router never forwards any header to a backend; these are
// named so that tests and docs state it.
var credentialHeaders = []string{"Authorization", "X-Api-Key", "Api-Key", "Proxy-Authorization", "Cookie", "Openai-Organization", "Openai-Project"}

// ServeHTTP serves one inference.local request.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, h := range credentialHeaders {
		r.Header.Del(h)
	}
	c := &call{rt: rt, w: w, r: r, start: time.Now(), ev: AuditEvent{Method: r.Method, Path: r.URL.Path}}
	defer c.finish()
	if rt := rt.active.Load(); rt != nil {
		c.route = rt
		c.ev.Route, c.ev.Plugin = rt.Profile, rt.Plugin
	}
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/models" || strings.HasPrefix(path, "/chat/") || path == "/completions" || path == "/embeddings" || path == "/responses" || path == "/messages" {
		path = "/v1" + path // base URLs without /v1 (some clients)
	}
	var kind endpointKind
	switch path {
	case "/v1/models":
		if r.Method != http.MethodGet {
			c.fail(http.StatusMethodNotAllowed, "invalid_request_error", fmt.Sprintf("%s %s: use GET", r.Method, r.URL.Path))
			return
		}
		c.models()
		return
	case "/v1/chat/completions":
		kind = kindChat
	case "/v1/completions":
		kind = kindCompletions
	case "/v1/embeddings":
		kind = kindEmbeddings
	case "/v1/responses":
		kind = kindResponses
	case "/v1/messages":
		kind = kindMessages
		c.anthropic = true
	default:
		c.fail(http.StatusNotFound, "invalid_request_error", fmt.Sprintf("inference.local serves POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages and GET /v1/models; not %s %s", r.Method, clip(r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		c.fail(http.StatusMethodNotAllowed, "invalid_request_error", fmt.Sprintf("%s %s: use POST", r.Method, r.URL.Path))
		return
	}
	c.serve(kind)
}

// clip bounds agent-supplied text echoed in errors and audit lines.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
