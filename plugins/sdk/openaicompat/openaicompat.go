// Package openaicompat is an sdk.Backend for servers that speak OpenAI's
// HTTP API (/v1/chat/completions, /v1/completions, /v1/embeddings,
// /v1/models): the NVIDIA API catalog and NIM, vLLM, and any other
// OpenAI-compatible service. It passes the request body through, adds the
// configured credential as a Bearer token, relays server-sent events chunk
// by chunk, extracts token usage, and turns every failure — an HTTP error, a
// malformed body, a stream cut short, a backend that went quiet for longer
// than the idle timeout — into an *sdk.Error the router can answer with.
//
// A plugin for such a server is Options plus sdk.Serve(openaicompat.New(o)).
package openaicompat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// DefaultIdleTimeout is the idle gap allowed when the route sets no timeout_secs.
const DefaultIdleTimeout = 120 * time.Second

// MaxEventBytes bounds one server-sent event line (one chunk's JSON).
const MaxEventBytes = 4 << 20

// maxErrorBody bounds how much of an error answer is read to find its message.
const maxErrorBody = 64 << 10

// A stream's answer ends at its [DONE] event, before the end of the HTTP
// body (the chunked encoding's last chunk). net/http keeps a connection for
// the next request only when the body was read to its end, so after a
// complete answer the rest is read, up to drainBytes and for drainWait at
// most: without it every streamed call dialled the backend again (a TCP
// handshake, ~150 µs of the plugin path's time to first byte on loopback).
// A backend that sends more, or does not end the body in time, has its
// connection closed, as before.
const (
	drainBytes = 4 << 10
	drainWait  = 20 * time.Millisecond
)

// Options describe one OpenAI-compatible backend.
type Options struct {
	// Name and Version are what Describe reports.
	Name, Version string
	// DefaultEndpoint is the base URL (ending in /v1) used when the route names none.
	DefaultEndpoint string
	// Capabilities are what Describe reports; a request for an endpoint
	// whose capability is missing answers 501.
	Capabilities []sdk.Capability
	// CredentialRequired makes Configure refuse an empty credential for
	// endpoints whose host is listed (e.g. the NVIDIA API catalog).
	CredentialRequired func(endpoint *url.URL) bool
	// MapError may refine an error built from a backend's HTTP error answer
	// (status and the backend's own message); it returns e or a replacement.
	MapError func(status int, backendMessage string, e *sdk.Error) *sdk.Error
	// Transport carries the backend's HTTP; nil is a dedicated clone of
	// http.DefaultTransport without a proxy (a plugin has no environment).
	Transport http.RoundTripper
}

// Backend is an OpenAI-compatible sdk.Backend.
type Backend struct {
	opts Options
	hc   *http.Client

	mu       sync.RWMutex
	cfg      sdk.Config
	base     string // endpoint without a trailing slash
	idle     time.Duration
	hasModel bool
}

// New returns a Backend for o; it serves requests once configured.
func New(o Options) *Backend {
	rt := o.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.MaxIdleConnsPerHost = 64
		rt = t
	}
	// No Timeout on the client: a stream may run for as long as it keeps
	// sending; the idle gap is enforced per read.
	return &Backend{opts: o, hc: &http.Client{Transport: rt}}
}

// Describe implements sdk.Backend.
func (b *Backend) Describe(context.Context) (sdk.Description, error) {
	return sdk.Description{Name: b.opts.Name, Version: b.opts.Version, Capabilities: b.opts.Capabilities}, nil
}

// Configure implements sdk.Backend: it checks the endpoint and keeps the route.
func (b *Backend) Configure(_ context.Context, cfg sdk.Config) error {
	ep := cfg.Endpoint
	if ep == "" {
		ep = b.opts.DefaultEndpoint
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: fmt.Sprintf("%s: endpoint %q is not an http(s) URL; set the profile's endpoint to the backend's base URL, e.g. %s", b.opts.Name, ep, b.opts.DefaultEndpoint)}
	}
	if u.User != nil {
		return &sdk.Error{Status: 400, Type: "invalid_request_error", Message: fmt.Sprintf("%s: endpoint %s carries a user or password; put the key in the profile's credential_env instead", b.opts.Name, u.Redacted())}
	}
	if cfg.Credential == "" && b.opts.CredentialRequired != nil && b.opts.CredentialRequired(u) {
		return &sdk.Error{Status: 401, Type: "authentication_error", Message: fmt.Sprintf("%s: %s needs an API key and the route has none; set the variable the profile's credential_env names", b.opts.Name, u.Host)}
	}
	idle := DefaultIdleTimeout
	if cfg.TimeoutSecs > 0 {
		idle = time.Duration(cfg.TimeoutSecs) * time.Second
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cfg, b.base, b.idle, b.hasModel = cfg, strings.TrimRight(ep, "/"), idle, cfg.Model != ""
	return nil
}

func (b *Backend) route() (sdk.Config, string, time.Duration, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.base == "" {
		return sdk.Config{}, "", 0, &sdk.Error{Status: 503, Type: "backend_unconfigured", Message: b.opts.Name + ": no route configured yet"}
	}
	return b.cfg, b.base, b.idle, nil
}

// Health implements sdk.Backend: GET /models answers, the key is accepted,
// and the route's model is among those listed (when the list names any).
func (b *Backend) Health(ctx context.Context) error {
	ms, err := b.ListModels(ctx)
	if err != nil {
		return err
	}
	cfg, base, _, _ := b.route()
	if cfg.Model == "" || len(ms) == 0 {
		return nil
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.ID == cfg.Model {
			return nil
		}
		ids = append(ids, m.ID)
	}
	if len(ids) > 8 {
		ids = append(ids[:8], "…")
	}
	return &sdk.Error{Status: 404, Type: "not_found_error", Message: fmt.Sprintf("%s at %s does not serve model %q (it lists %s); fix the profile's model", b.opts.Name, base, cfg.Model, strings.Join(ids, ", "))}
}

// ListModels implements sdk.Backend with GET /models.
func (b *Backend) ListModels(ctx context.Context) ([]sdk.Model, error) {
	var out []sdk.Model
	err := b.call(ctx, http.MethodGet, "/models", nil, func(body io.Reader, _ http.Header) error {
		var list struct {
			Data []struct {
				ID      string `json:"id"`
				OwnedBy string `json:"owned_by"`
				Created int64  `json:"created"`
			} `json:"data"`
		}
		if err := json.NewDecoder(io.LimitReader(body, sdk.MaxMessageBytes)).Decode(&list); err != nil {
			return b.malformed("model list", err)
		}
		for _, m := range list.Data {
			out = append(out, sdk.Model{ID: m.ID, OwnedBy: m.OwnedBy, Created: m.Created})
		}
		return nil
	})
	return out, err
}

// ChatCompletions implements sdk.Backend with POST /chat/completions.
func (b *Backend) ChatCompletions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.relay(ctx, sdk.CapChat, "/chat/completions", req, w)
}

// Completions implements sdk.Backend with POST /completions.
func (b *Backend) Completions(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.relay(ctx, sdk.CapCompletions, "/completions", req, w)
}

// Responses implements sdk.Backend with POST /responses, for backends that
// declare it (the router translates to chat for the others).
func (b *Backend) Responses(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error {
	return b.relay(ctx, sdk.CapResponses, "/responses", req, w)
}

// Embeddings implements sdk.Backend with POST /embeddings.
func (b *Backend) Embeddings(ctx context.Context, req *sdk.Request) (*sdk.Chunk, error) {
	var c *sdk.Chunk
	err := b.relay(ctx, sdk.CapEmbeddings, "/embeddings", &sdk.Request{Model: req.Model, Body: req.Body}, writerFunc(func(x sdk.Chunk) error {
		c = &x
		return nil
	}))
	return c, err
}

type writerFunc func(sdk.Chunk) error

func (f writerFunc) Send(c sdk.Chunk) error { return f(c) }

func (b *Backend) has(c sdk.Capability) bool {
	return sdk.Description{Capabilities: b.opts.Capabilities}.Has(c)
}

// relay posts req to path and sends the answer to w: one chunk for a JSON
// answer, one per event for a stream.
func (b *Backend) relay(ctx context.Context, c sdk.Capability, path string, req *sdk.Request, w sdk.StreamWriter) error {
	if !b.has(c) {
		return sdk.Unimplemented(path)
	}
	if req.Stream && !b.has(sdk.CapStreaming) {
		return sdk.Unimplemented("streaming")
	}
	return b.call(ctx, http.MethodPost, path, req, func(body io.Reader, h http.Header) error {
		if !req.Stream {
			return b.whole(body, w)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			return &sdk.Error{Status: 502, Type: "backend_error", Message: fmt.Sprintf("%s answered a stream request with %q, not text/event-stream", b.opts.Name, ct)}
		}
		return b.events(body, path == "/responses", w)
	})
}

// errIdle is the cause a request is cancelled with when the backend sent
// nothing for the idle timeout.
var errIdle = errors.New("idle timeout")

// call sends one HTTP request and hands a 2xx body to read; the idle
// timeout covers the wait for the answer's head and every gap in its body.
func (b *Backend) call(ctx context.Context, method, path string, req *sdk.Request, read func(io.Reader, http.Header) error) error {
	cfg, base, idle, err := b.route()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timer := time.AfterFunc(idle, func() { cancel(errIdle) })
	defer timer.Stop()

	var body io.Reader
	if req != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("build request %s: %w", path, err)
	}
	if req != nil {
		hr.Header.Set("Content-Type", "application/json")
		if req.Stream {
			hr.Header.Set("Accept", "text/event-stream")
		}
	}
	if cfg.Credential != "" {
		hr.Header.Set("Authorization", "Bearer "+cfg.Credential)
	}
	resp, err := b.hc.Do(hr)
	if err != nil {
		return b.failed(ctx, idle, path, err, false)
	}
	defer resp.Body.Close()
	timer.Reset(idle)
	r := &idleReader{r: resp.Body, t: timer, d: idle}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg, _ := io.ReadAll(io.LimitReader(r, maxErrorBody))
		return b.httpError(resp.StatusCode, resp.Header, msg, cfg.Credential)
	}
	if err := read(r, resp.Header); err != nil {
		return b.failed(ctx, idle, path, err, true)
	}
	// The answer is whole: its error, if any, is only the connection's.
	timer.Reset(drainWait)
	_, _ = io.CopyN(io.Discard, resp.Body, drainBytes)
	return nil
}

// failed classifies an error of the request (before the answer's head) or
// of reading the answer: the idle timeout, the caller's cancellation, err
// itself when it is already an *sdk.Error, a backend that cannot be reached,
// or an answer cut short.
func (b *Backend) failed(ctx context.Context, idle time.Duration, path string, err error, afterHead bool) error {
	var se *sdk.Error
	var gone callerGone
	switch {
	case errors.As(err, &gone):
		return gone.error
	case errors.As(err, &se):
		return se
	case context.Cause(ctx) == errIdle:
		return &sdk.Error{Status: 504, Type: "timeout", Message: fmt.Sprintf("%s sent nothing for %s on %s (the profile's timeout_secs)", b.opts.Name, idle, path)}
	case ctx.Err() != nil:
		return ctx.Err()
	case afterHead:
		return b.truncated(path, err)
	}
	return &sdk.Error{Status: 502, Type: "backend_unavailable", Message: fmt.Sprintf("%s: reach backend for %s: %v", b.opts.Name, path, err)}
}

func (b *Backend) truncated(what string, err error) *sdk.Error {
	return &sdk.Error{Status: 502, Type: "backend_error", Message: fmt.Sprintf("%s: the backend's answer to %s was cut short: %v", b.opts.Name, what, err)}
}

func (b *Backend) malformed(what string, err error) *sdk.Error {
	return &sdk.Error{Status: 502, Type: "backend_error", Message: fmt.Sprintf("%s: the backend's %s is malformed: %v", b.opts.Name, what, err)}
}

// whole reads a non-streamed JSON answer and sends it as one chunk.
func (b *Backend) whole(body io.Reader, w sdk.StreamWriter) error {
	data, err := io.ReadAll(io.LimitReader(body, sdk.MaxMessageBytes+1))
	if err != nil {
		return err
	}
	if len(data) > sdk.MaxMessageBytes {
		return &sdk.Error{Status: 502, Type: "backend_error", Message: fmt.Sprintf("%s: the backend's answer exceeds %d bytes", b.opts.Name, sdk.MaxMessageBytes)}
	}
	u, err := inspect(data)
	if err != nil {
		return b.malformed("answer", err)
	}
	return send(w, sdk.Chunk{Data: data, Usage: u})
}

// callerGone carries the error of a StreamWriter (the caller went away), to
// be returned as it is rather than taken for a backend failure.
type callerGone struct{ error }

func send(w sdk.StreamWriter, c sdk.Chunk) error {
	if err := w.Send(c); err != nil {
		return callerGone{err}
	}
	return nil
}

// events relays a server-sent event stream, one chunk per event's data.
// An OpenAI stream ends with "data: [DONE]", a Responses stream with a
// response.completed, .failed or .incomplete event; a stream that ends
// otherwise was cut short and is an error, never a silent end.
func (b *Backend) events(body io.Reader, responses bool, w sdk.StreamWriter) error {
	sc := NewEventScanner(body, MaxEventBytes)
	n := 0
	for sc.Scan() {
		data := sc.Data()
		if !responses && bytes.Equal(data, []byte("[DONE]")) {
			return nil
		}
		u, err := inspect(data)
		if err != nil {
			return b.malformed(fmt.Sprintf("stream event %d", n+1), err)
		}
		n++
		if err := send(w, sdk.Chunk{Data: bytes.Clone(data), Usage: u}); err != nil {
			return err
		}
		if responses && terminalResponseEvent(data) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, ErrEventTooLong) {
			return b.malformed(fmt.Sprintf("stream event %d", n+1), err)
		}
		return err
	}
	return b.truncated("a stream", fmt.Errorf("no end of stream after %d events", n))
}

func terminalResponseEvent(data []byte) bool {
	var ev struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return false
	}
	switch ev.Type {
	case "response.completed", "response.failed", "response.incomplete":
		return true
	}
	return false
}

// apiError is the error object of OpenAI ({"error": {...}}), of vLLM and
// NIM ({"object": "error", "message": ...}) and of FastAPI ({"detail": ...}).
type apiError struct {
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
	Object  string          `json:"object"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail"`
}

func (a *apiError) message() string {
	switch {
	case a.Error != nil:
		return a.Error.Message
	case a.Object == "error" || a.Message != "":
		return a.Message
	case len(a.Detail) > 0:
		var s string
		if json.Unmarshal(a.Detail, &s) == nil {
			return s
		}
		return string(a.Detail)
	}
	return ""
}

// inspect checks that data is one JSON value and extracts its usage; an
// in-band error object (a backend failing mid-stream) becomes an *sdk.Error.
// The full decode runs only when the bytes can hold "usage" or "error".
func inspect(data []byte) (*sdk.Usage, error) {
	hasUsage, hasError := bytes.Contains(data, []byte(`"usage"`)), bytes.Contains(data, []byte(`"error"`))
	if !hasUsage && !hasError {
		if !json.Valid(data) {
			return nil, errors.New("not JSON")
		}
		return nil, nil
	}
	var v struct {
		Usage *struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
			TotalTokens      int64 `json:"total_tokens"`
			InputTokens      int64 `json:"input_tokens"`  // Responses API
			OutputTokens     int64 `json:"output_tokens"` // Responses API
		} `json:"usage"`
		Response *struct {
			Usage json.RawMessage `json:"usage"`
		} `json:"response"`
		apiError
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v.apiError.Error != nil || v.Object == "error" {
		return nil, &sdk.Error{Status: 502, Type: "backend_error", Message: "backend failed mid-answer: " + v.message()}
	}
	if v.Usage == nil {
		return nil, nil
	}
	u := &sdk.Usage{PromptTokens: v.Usage.PromptTokens + v.Usage.InputTokens, CompletionTokens: v.Usage.CompletionTokens + v.Usage.OutputTokens, TotalTokens: v.Usage.TotalTokens}
	if u.TotalTokens == 0 {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u, nil
}

// httpError maps a backend's HTTP error answer to an *sdk.Error with the
// backend's own message (never the credential, which is cut out should a
// backend echo it).
func (b *Backend) httpError(status int, h http.Header, body []byte, credential string) error {
	var a apiError
	msg := ""
	if json.Unmarshal(body, &a) == nil {
		msg = a.message()
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
	}
	if credential != "" {
		msg = strings.ReplaceAll(msg, credential, "[credential]")
	}
	e := &sdk.Error{Status: status, Message: fmt.Sprintf("%s backend answered HTTP %d: %s", b.opts.Name, status, msg)}
	switch {
	case status == 400 || status == 422:
		e.Status, e.Type = 400, "invalid_request_error"
	case status == 401:
		e.Type = "authentication_error"
		e.Message += " (check the key in the profile's credential_env)"
	case status == 403:
		e.Type = "permission_error"
	case status == 404:
		e.Type = "not_found_error"
	case status == 413:
		e.Type = "invalid_request_error"
	case status == 429:
		e.Type = "rate_limit_error"
		if ra := h.Get("Retry-After"); ra != "" {
			e.Message += " (retry after " + ra + ")"
		}
	case status == 408 || status == 504:
		e.Status, e.Type = 504, "timeout"
	default:
		e.Status, e.Type = 502, "backend_error"
	}
	if b.opts.MapError != nil {
		e = b.opts.MapError(status, msg, e)
	}
	return e
}

// idleReader restarts the idle timer whenever bytes arrive.
type idleReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	n, err := i.r.Read(p)
	if n > 0 {
		i.t.Reset(i.d)
	}
	return n, err
}
