// Package ollama is nemoclaw's Ollama inference backend: it implements
// sdk.Backend by translating the OpenAI-shaped requests the router hands it
// into calls to Ollama's native API (/api/chat, /api/generate, /api/embed,
// /api/tags, /api/show) and Ollama's answers back into OpenAI's shapes,
// streaming (NDJSON in, chat.completion.chunk payloads out) and tool calls
// included. It runs on the host, so an Ollama on the host's loopback is
// reached without any hole in a sandbox's egress policy.
//
// The plugin binary (plugins/inference-ollama) only calls sdk.Serve(New(...)).
package ollama

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// Name and Version are what Describe reports.
const (
	Name    = "ollama"
	Version = "0.1.0"
)

// DefaultEndpoint is where Ollama listens unless the profile says otherwise.
const DefaultEndpoint = "http://127.0.0.1:11434"

// DefaultIdleTimeout is the idle gap allowed when the profile sets no
// timeout_secs: long enough for Ollama to load a large model on CPU before
// its first byte, and never a limit on a stream's total length.
const DefaultIdleTimeout = 300 * time.Second

// Bounds on what is read from Ollama, so a broken or hostile server cannot
// make the plugin hold unbounded memory.
const (
	// MaxLineBytes bounds one NDJSON line of a stream.
	MaxLineBytes = 4 << 20
	// MaxBodyBytes bounds a whole non-streamed response (embeddings of a
	// large batch are the biggest).
	MaxBodyBytes = 64 << 20
	// maxErrorBytes bounds an error body; maxErrorMessage what of it reaches the agent.
	maxErrorBytes   = 64 << 10
	maxErrorMessage = 1024
)

// Backend is the Ollama backend. Its zero value is not usable: call New.
type Backend struct {
	log    *slog.Logger
	client *http.Client

	mu  sync.RWMutex
	cfg route
}

// route is a validated Config.
type route struct {
	base       *url.URL // Ollama's base URL, without /api
	model      string
	credential string
	idle       time.Duration
	keepAlive  string
	numCtx     int
}

var _ sdk.Backend = (*Backend)(nil)

// New returns a Backend aimed at DefaultEndpoint until Configure says
// otherwise. log receives one line per failed call (never prompts or keys).
func New(log *slog.Logger) *Backend {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base, _ := url.Parse(DefaultEndpoint)
	return &Backend{
		log: log,
		client: &http.Client{
			Transport: &http.Transport{
				// The plugin gets no environment, and a proxy variable must
				// never divert calls meant for the host's loopback anyway.
				Proxy:                 nil,
				DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
				MaxIdleConnsPerHost:   16,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   10 * time.Second,
				ExpectContinueTimeout: time.Second,
			},
			// Ollama never redirects; following one could carry the
			// credential to another host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		cfg: route{base: base, idle: DefaultIdleTimeout},
	}
}

// Describe implements sdk.Backend.
func (b *Backend) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{
		Name:    Name,
		Version: Version,
		Capabilities: []sdk.Capability{
			sdk.CapChat, sdk.CapCompletions, sdk.CapEmbeddings, sdk.CapTools, sdk.CapStreaming,
		},
	}, nil
}

// Options a profile may set for this backend (sdk.Config.Options).
const (
	// OptKeepAlive is Ollama's keep_alive for every call, e.g. "10m" or "-1".
	OptKeepAlive = "keep_alive"
	// OptNumCtx is Ollama's num_ctx (context window) for chat and generate.
	OptNumCtx = "num_ctx"
)

// Configure implements sdk.Backend. It refuses an endpoint that is not a
// plain http(s) base URL and options it does not know, naming them.
func (b *Backend) Configure(_ context.Context, cfg sdk.Config) error {
	r := route{model: cfg.Model, credential: cfg.Credential, idle: DefaultIdleTimeout}
	base, err := parseEndpoint(cfg.Endpoint)
	if err != nil {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: err.Error()}
	}
	r.base = base
	if cfg.TimeoutSecs < 0 {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: fmt.Sprintf("ollama: timeout_secs %d is negative", cfg.TimeoutSecs)}
	}
	if cfg.TimeoutSecs > 0 {
		r.idle = time.Duration(cfg.TimeoutSecs) * time.Second
	}
	for k, v := range cfg.Options {
		switch k {
		case OptKeepAlive:
			r.keepAlive = v
		case OptNumCtx:
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: fmt.Sprintf("ollama: option num_ctx %q is not a positive integer", v)}
			}
			r.numCtx = n
		default:
			return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: fmt.Sprintf("ollama: unknown option %q (known: %s, %s)", k, OptKeepAlive, OptNumCtx)}
		}
	}
	b.mu.Lock()
	b.cfg = r
	b.mu.Unlock()
	return nil
}

// parseEndpoint accepts Ollama's base URL ("http://host:11434"), also
// written with a trailing "/" or "/api"; empty means DefaultEndpoint.
func parseEndpoint(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultEndpoint
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("ollama: parse endpoint %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ollama: endpoint %q: scheme must be http or https", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("ollama: endpoint %q: want a base URL like %s (a host, no credentials, query or fragment)", s, DefaultEndpoint)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/api")
	u.RawPath = ""
	return u, nil
}

func (b *Backend) route() route {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.cfg
}

// Health implements sdk.Backend: Ollama answers /api/version, and the
// route's model, if one is set, is known to it (/api/show).
func (b *Backend) Health(ctx context.Context) error {
	r := b.route()
	if err := b.getJSON(ctx, r, "/api/version", new(struct {
		Version string `json:"version"`
	})); err != nil {
		return err
	}
	if r.model == "" {
		return nil
	}
	body, _ := json.Marshal(map[string]string{"model": r.model})
	resp, cancel, err := b.do(ctx, r, http.MethodPost, "/api/show", body)
	if err != nil {
		return err
	}
	defer cancel()
	resp.Body.Close()
	return nil
}

// ListModels implements sdk.Backend from /api/tags.
func (b *Backend) ListModels(ctx context.Context) ([]sdk.Model, error) {
	var tags olTags
	if err := b.getJSON(ctx, b.route(), "/api/tags", &tags); err != nil {
		return nil, err
	}
	models := make([]sdk.Model, 0, len(tags.Models))
	for _, m := range tags.Models {
		id := m.Model
		if id == "" {
			id = m.Name
		}
		var created int64
		if t, err := time.Parse(time.RFC3339Nano, m.ModifiedAt); err == nil {
			created = t.Unix()
		}
		models = append(models, sdk.Model{ID: id, OwnedBy: "ollama", Created: created})
	}
	return models, nil
}

// Responses implements sdk.Backend: Ollama has no native responses API, so
// the router translates /v1/responses to chat.
func (b *Backend) Responses(context.Context, *sdk.Request, sdk.StreamWriter) error {
	return sdk.Unimplemented("responses")
}

// getJSON GETs path and decodes its (bounded) JSON body into v.
func (b *Backend) getJSON(ctx context.Context, r route, path string, v any) error {
	resp, cancel, err := b.do(ctx, r, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	return decodeBody(resp.Body, path, v)
}

// decodeBody decodes one bounded JSON document from Ollama.
func decodeBody(body io.Reader, path string, v any) error {
	data, err := io.ReadAll(io.LimitReader(body, MaxBodyBytes+1))
	if err != nil {
		return upstreamErr(err, "read Ollama's %s response", path)
	}
	if len(data) > MaxBodyBytes {
		return badGateway("Ollama's %s response is larger than %d bytes", path, MaxBodyBytes)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return badGateway("Ollama's %s response is not the JSON its API documents: %v", path, err)
	}
	return nil
}

// do sends one request to Ollama under the route's idle-gap timeout and
// returns the response once its status is 2xx; any other status becomes an
// *sdk.Error. The caller must call cancel when done with the body, whose
// every read re-arms the idle timer.
func (b *Backend) do(ctx context.Context, r route, method, path string, body []byte) (*http.Response, context.CancelFunc, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	idle := &idleTimer{d: r.idle}
	idle.t = time.AfterFunc(r.idle, func() { cancel(errIdle) })
	stop := func() { idle.t.Stop(); cancel(context.Canceled) }

	u := *r.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("ollama: build request %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/x-ndjson")
	if r.credential != "" {
		// Ollama itself takes no key; one set in the profile is for a
		// reverse proxy in front of it.
		req.Header.Set("Authorization", "Bearer "+r.credential)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		err = idleErr(ctx, r, err)
		stop()
		b.log.Warn("ollama call failed", "path", path, "err", err)
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer stop()
		defer resp.Body.Close()
		err := statusErr(resp, path, r)
		b.log.Warn("ollama call refused", "path", path, "status", resp.StatusCode, "err", err)
		return nil, nil, err
	}
	idle.t.Reset(r.idle)
	resp.Body = &idleBody{ReadCloser: resp.Body, idle: idle, ctx: ctx, r: r}
	return resp, stop, nil
}

// errIdle is the cancel cause when Ollama stays silent past the idle gap.
var errIdle = errors.New("idle timeout")

// idleTimer fires after d without a byte from Ollama.
type idleTimer struct {
	d time.Duration
	t *time.Timer
}

// idleBody re-arms the idle timer on every read that brings bytes and turns
// a read cut by the timer into the timeout error.
type idleBody struct {
	io.ReadCloser
	idle *idleTimer
	ctx  context.Context
	r    route
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.idle.t.Reset(b.idle.d)
	}
	if err != nil && err != io.EOF && errors.Is(context.Cause(b.ctx), errIdle) {
		err = idleErr(b.ctx, b.r, err)
	}
	return n, err
}

// idleErr names the idle timeout when that is what cut err short, and
// otherwise says Ollama could not be reached.
func idleErr(ctx context.Context, r route, err error) error {
	if errors.Is(context.Cause(ctx), errIdle) {
		return &sdk.Error{Status: 504, Type: "timeout", Message: fmt.Sprintf(
			"ollama: no byte from %s for %s (the profile's timeout_secs idle gap); a cold model load on CPU may need a larger one", r.base.Redacted(), r.idle)}
	}
	var se *sdk.Error
	if errors.As(err, &se) {
		return se
	}
	if ctx.Err() != nil && context.Cause(ctx) == context.Canceled {
		return err
	}
	return upstreamErr(err, "call Ollama at %s", r.base.Redacted())
}

// upstreamErr is a 502 for a transport failure talking to Ollama.
func upstreamErr(err error, format string, args ...any) error {
	return &sdk.Error{Status: 502, Type: "api_error", Message: fmt.Sprintf("ollama: "+format+": %v (is `ollama serve` running there?)", append(args, err)...)}
}

// badGateway is a 502 for an answer from Ollama that breaks its API.
func badGateway(format string, args ...any) error {
	return &sdk.Error{Status: 502, Type: "api_error", Message: "ollama: " + fmt.Sprintf(format, args...)}
}

// statusErr turns an Ollama error answer ({"error": "..."}) into an
// *sdk.Error with the status the agent should see.
func statusErr(resp *http.Response, path string, r route) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var e olError
	msg := ""
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg = strings.TrimSpace(string(data))
	}
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage] + "…"
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	status, typ := resp.StatusCode, "api_error"
	switch {
	case status == http.StatusNotFound:
		typ = "invalid_request_error"
		if r.model != "" && path != "/api/version" && path != "/api/tags" {
			msg += fmt.Sprintf(" (pull it on the host: ollama pull %s)", r.model)
		}
	case status == http.StatusBadRequest, status == http.StatusUnprocessableEntity:
		status, typ = http.StatusBadRequest, "invalid_request_error"
	case status == http.StatusUnauthorized:
		typ = "authentication_error"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status == http.StatusServiceUnavailable:
		// Ollama's "server busy": its request queue is full.
	default:
		status = http.StatusBadGateway
	}
	return &sdk.Error{Status: status, Type: typ, Message: fmt.Sprintf("ollama %s: %d: %s", path, resp.StatusCode, msg)}
}
