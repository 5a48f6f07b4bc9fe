package inference

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

type endpointKind int

const (
	kindChat endpointKind = iota
	kindCompletions
	kindEmbeddings
	kindResponses
	kindMessages
)

// call is one request in flight.
type call struct {
	rt        *Router
	w         http.ResponseWriter
	r         *http.Request
	route     *Route
	start     time.Time
	ev        AuditEvent
	anthropic bool // answer errors in Anthropic's shape
	// responsesAPI: a translated /v1/responses stream, whose events are
	// numbered (sequence_number).
	responsesAPI bool
	seqNo        int64
	out          *sseOut
}

// seq returns the next sequence_number of a Responses API stream.
func (c *call) seq() int64 { n := c.seqNo; c.seqNo++; return n }

// finish audits the call.
func (c *call) finish() {
	c.ev.Latency = time.Since(c.start)
	if c.out != nil && c.out.started {
		c.ev.TTFB = c.out.first.Sub(c.start)
	}
	if c.rt.cfg.Audit != nil {
		c.rt.cfg.Audit(c.ev)
	}
}

// fail answers an error before any byte of a response was written.
func (c *call) fail(status int, typ, msg string) {
	c.ev.Status, c.ev.Error = status, msg
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(c.errorBody(status, typ, msg))
}

// errorBody is an error in the front door's shape (OpenAI or Anthropic).
func (c *call) errorBody(status int, typ, msg string) []byte {
	if typ == "" {
		typ = errorType(status)
	}
	var b []byte
	if c.anthropic {
		b, _ = json.Marshal(map[string]any{"type": "error", "error": map[string]any{"type": anthropicErrorType(status), "message": msg}})
	} else {
		b, _ = json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": codeOf(status)}})
	}
	return append(b, '\n')
}

func errorType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "authentication_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func anthropicErrorType(status int) string {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable:
		return "overloaded_error"
	}
	return "api_error"
}

func codeOf(status int) any {
	switch status {
	case http.StatusNotFound:
		return "model_not_found"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusGatewayTimeout:
		return "timeout"
	}
	return nil
}

// failErr answers err (an *sdk.Error keeps its status) before any byte
// was written, or as a stream's error event after.
func (c *call) failErr(err error) {
	status, typ, msg := errStatus(c, err)
	if c.out != nil && c.out.started {
		c.ev.Error = msg
		c.out.errorEvent(c, status, typ, msg)
		return
	}
	c.fail(status, typ, msg)
}

// errIdle is the idle-gap timeout.
type errIdle struct {
	d       time.Duration
	profile string
}

func (e *errIdle) Error() string {
	return fmt.Sprintf("the backend sent nothing for %s (the idle timeout of profile %s; raise its timeout_secs for slower models)", e.d, e.profile)
}

func errStatus(c *call, err error) (int, string, string) {
	st, typ, msg := classify(c, err)
	// The contract says no backend puts its key in an error; if one
	// does anyway, it does not reach the agent.
	if k := c.route; k != nil && len(k.Config.Credential) >= 4 {
		msg = strings.ReplaceAll(msg, k.Config.Credential, "[credential]")
	}
	return st, typ, msg
}

func classify(c *call, err error) (int, string, string) {
	var se *sdk.Error
	var ie *errIdle
	switch {
	case errors.As(err, &se):
		st := se.Status
		if st < 400 || st > 599 {
			st = http.StatusBadGateway
		}
		return st, se.Type, fmt.Sprintf("%s (backend %s)", se.Message, c.backendName())
	case errors.As(err, &ie):
		return http.StatusGatewayTimeout, "timeout", err.Error()
	}
	return http.StatusBadGateway, "server_error", fmt.Sprintf("backend %s: %v", c.backendName(), err)
}

func (c *call) backendName() string {
	if c.route == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s of profile %s", c.route.Plugin, c.route.Profile)
}

// models answers GET /v1/models: the route's model and its aliases.
func (c *call) models() {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	if c.route != nil {
		owner := "nemoclaw/" + c.route.Profile
		list.Data = append(list.Data, model{ID: c.route.Config.Model, Object: "model", OwnedBy: owner})
		names := make([]string, 0, len(c.route.Aliases))
		for a := range c.route.Aliases {
			names = append(names, a)
		}
		sort.Strings(names)
		for _, a := range names {
			if a != c.route.Config.Model {
				list.Data = append(list.Data, model{ID: a, Object: "model", OwnedBy: owner})
			}
		}
	}
	b, _ := json.Marshal(list)
	c.ev.Status = http.StatusOK
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(b)
}

// resolveModel maps the requested model to the backend's: the route's
// model, one of its aliases, or "" (the route's model). Anything else is
// refused: a call meant for another model is not silently answered by this
// one.
func (c *call) resolveModel(asked string) (string, bool) {
	m := c.route.Config.Model
	if asked == "" || asked == m {
		return m, true
	}
	if t, ok := c.route.Aliases[asked]; ok {
		if t == "" {
			return m, true
		}
		return t, true
	}
	return "", false
}

// serve handles one POST.
func (c *call) serve(kind endpointKind) {
	if c.route == nil {
		c.fail(http.StatusServiceUnavailable, "server_error", "this sandbox has no inference route: give its blueprint an inference profile, or set one with `nemoclaw inference set SANDBOX --profile P` on the host")
		return
	}
	select {
	case c.rt.slots <- struct{}{}:
		defer func() { <-c.rt.slots }()
	default:
		c.fail(http.StatusTooManyRequests, "rate_limit_error", fmt.Sprintf("%d inference calls are in flight in this sandbox (the router's limit); retry when one ends", cap(c.rt.slots)))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.rt.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.fail(http.StatusRequestEntityTooLarge, "invalid_request_error", fmt.Sprintf("request body is over %d bytes (the inference router's limit)", mbe.Limit))
			return
		}
		c.fail(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("read request body: %v", err))
		return
	}
	obj, err := parseObject(body)
	if err != nil {
		c.fail(http.StatusBadRequest, "invalid_request_error", "request body: "+err.Error())
		return
	}
	asked, stream, err := obj.modelStream()
	if err != nil {
		c.fail(http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	if kind == kindEmbeddings && stream {
		c.fail(http.StatusBadRequest, "invalid_request_error", "embeddings are never streamed: drop \"stream\"")
		return
	}
	c.ev.Stream = stream
	model, ok := c.resolveModel(asked)
	if !ok {
		c.fail(http.StatusNotFound, "invalid_request_error", fmt.Sprintf("model %q is not served here: inference.local serves %s (profile %s); GET /v1/models lists them, and the profile's aliases map other names", clip(asked), c.servedList(), c.route.Profile))
		return
	}
	c.ev.Model = model
	if c.rt.cfg.Provider == nil {
		c.fail(http.StatusServiceUnavailable, "server_error", c.rt.noProvider())
		return
	}
	ctx := c.r.Context()
	b, err := c.rt.cfg.Provider.Backend(ctx, *c.route)
	if err != nil {
		var se *sdk.Error
		if errors.As(err, &se) {
			c.failErr(err)
			return
		}
		// The operator's log gets the whole reason (a refused checksum
		// and what to run); the audit line keeps only its start.
		c.rt.log.Warn("inference backend not available", "sandbox", c.rt.cfg.Sandbox, "profile", c.route.Profile, "plugin", c.route.Plugin, "err", err)
		c.fail(http.StatusServiceUnavailable, "server_error", fmt.Sprintf("backend %s is not available: %v", c.backendName(), err))
		return
	}
	desc, err := c.rt.describe(ctx, b)
	if err != nil {
		c.fail(http.StatusBadGateway, "server_error", fmt.Sprintf("backend %s: describe: %v", c.backendName(), err))
		return
	}
	switch kind {
	case kindChat, kindCompletions:
		obj.set("model", model)
		req := &sdk.Request{Model: model, Stream: stream, Body: obj.encode()}
		fn := b.ChatCompletions
		if kind == kindCompletions {
			fn = b.Completions
		}
		c.passthrough(ctx, req, fn)
	case kindEmbeddings:
		obj.set("model", model)
		req := &sdk.Request{Model: model, Body: obj.encode()}
		c.embeddings(ctx, b, req)
	case kindResponses:
		if desc.Has(sdk.CapResponses) {
			obj.set("model", model)
			c.passthrough(ctx, &sdk.Request{Model: model, Stream: stream, Body: obj.encode()}, b.Responses)
			return
		}
		c.responses(ctx, b, body, model, stream)
	case kindMessages:
		c.messages(ctx, b, body, model, stream)
	}
}

// servedList names the models a route serves.
func (c *call) servedList() string {
	s := strconv.Quote(c.route.Config.Model)
	names := make([]string, 0, len(c.route.Aliases))
	for a := range c.route.Aliases {
		names = append(names, strconv.Quote(a))
	}
	sort.Strings(names)
	for _, n := range names {
		s += ", " + n
	}
	return s
}

// idle is the route's idle-gap timeout.
func (c *call) idle() time.Duration {
	if c.rt.cfg.idle > 0 {
		return c.rt.cfg.idle
	}
	if c.route.Config.TimeoutSecs > 0 {
		return time.Duration(c.route.Config.TimeoutSecs) * time.Second
	}
	return DefaultIdleTimeout
}

// backendFn is a streaming backend method.
type backendFn func(ctx context.Context, req *sdk.Request, w sdk.StreamWriter) error

// passthrough serves an OpenAI-shaped call whose answer is the backend's
// own: a stream relayed chunk by chunk, or one JSON body.
func (c *call) passthrough(ctx context.Context, req *sdk.Request, fn backendFn) {
	if req.Stream {
		c.out = newSSEOut(c.w)
		err := c.run(ctx, func(ctx context.Context, w sdk.StreamWriter) error { return fn(ctx, req, w) }, func(ch sdk.Chunk) error {
			if !json.Valid(ch.Data) {
				return errMalformed("a stream chunk that is not JSON")
			}
			c.noteUsage(ch)
			return c.out.data(ch.Data)
		})
		c.endStream(err, func() error { return c.out.data([]byte("[DONE]")) })
		return
	}
	var got *sdk.Chunk
	err := c.run(ctx, func(ctx context.Context, w sdk.StreamWriter) error { return fn(ctx, req, w) }, one(&got))
	if err == nil && got == nil {
		err = errMalformed("no response")
	}
	if err == nil && !json.Valid(got.Data) {
		err = errMalformed("a response body that is not JSON")
	}
	if err != nil {
		c.failErr(err)
		return
	}
	c.noteUsage(*got)
	c.writeJSON(got.Data)
}

// one collects the single chunk of a non-streamed answer.
func one(dst **sdk.Chunk) func(sdk.Chunk) error {
	return func(ch sdk.Chunk) error {
		if *dst != nil {
			return errMalformed("more than one chunk for a non-streamed request")
		}
		cp := ch
		*dst = &cp
		return nil
	}
}

// endStream closes a stream: done() on success, an error event otherwise
// (and never [DONE] after an error: the client must see the truncation).
func (c *call) endStream(err error, done func() error) {
	if err == nil && !c.out.started {
		err = errMalformed("an empty stream")
	}
	if err != nil {
		if c.r.Context().Err() != nil {
			c.ev.Status, c.ev.Error = 499, "the client went away"
			return
		}
		c.failErr(err)
		return
	}
	c.ev.Status = http.StatusOK
	if werr := done(); werr != nil {
		c.ev.Error = "the client went away"
	}
}

func (c *call) writeJSON(b []byte) {
	c.ev.Status = http.StatusOK
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(b)
}

// embeddings serves POST /v1/embeddings.
func (c *call) embeddings(ctx context.Context, b sdk.Backend, req *sdk.Request) {
	var got *sdk.Chunk
	err := c.run(ctx, func(ctx context.Context, w sdk.StreamWriter) error {
		ch, err := b.Embeddings(ctx, req)
		if err != nil {
			return err
		}
		if ch == nil {
			return errMalformed("no response")
		}
		return w.Send(*ch)
	}, one(&got))
	if err == nil && !json.Valid(got.Data) {
		err = errMalformed("a response body that is not JSON")
	}
	if err != nil {
		c.failErr(err)
		return
	}
	c.noteUsage(*got)
	c.writeJSON(got.Data)
}

// noteUsage records the tokens a chunk reports: its Usage, else a "usage"
// object in its JSON (OpenAI's shape).
func (c *call) noteUsage(ch sdk.Chunk) {
	if ch.Usage != nil {
		c.ev.Usage = *ch.Usage
		return
	}
	if !bytes.Contains(ch.Data, []byte(`"usage"`)) {
		return
	}
	var v struct {
		Usage *struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
			Total      int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	if json.Unmarshal(ch.Data, &v) == nil && v.Usage != nil {
		c.ev.Usage = sdk.Usage{PromptTokens: v.Usage.Prompt, CompletionTokens: v.Usage.Completion, TotalTokens: v.Usage.Total}
	}
}

// errMalformed is a backend answer the router cannot pass on.
func errMalformed(what string) error {
	return &sdk.Error{Status: http.StatusBadGateway, Type: "server_error", Message: "the backend sent " + what}
}
