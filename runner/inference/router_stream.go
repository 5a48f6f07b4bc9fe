package inference

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
)

// sseOut writes server-sent events, each flushed at once: the agent sees a
// token when the backend sends it.
type sseOut struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	first   time.Time
	buf     []byte
}

func newSSEOut(w http.ResponseWriter) *sseOut {
	return &sseOut{w: w, rc: http.NewResponseController(w)}
}

func (o *sseOut) begin() {
	if o.started {
		return
	}
	o.started, o.first = true, time.Now()
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	o.w.WriteHeader(http.StatusOK)
}

// data writes one "data:" event.
func (o *sseOut) data(b []byte) error { return o.event("", b) }

// event writes one event (named when name is not "") and flushes it.
func (o *sseOut) event(name string, b []byte) error {
	o.begin()
	o.buf = o.buf[:0]
	if name != "" {
		o.buf = append(o.buf, "event: "...)
		o.buf = append(o.buf, name...)
		o.buf = append(o.buf, '\n')
	}
	o.buf = append(o.buf, "data: "...)
	o.buf = append(o.buf, b...)
	o.buf = append(o.buf, '\n', '\n')
	if _, err := o.w.Write(o.buf); err != nil {
		return err
	}
	return o.rc.Flush()
}

// errorEvent ends a started stream with an error event in the front
// door's shape. No [DONE] follows.
func (o *sseOut) errorEvent(c *call, status int, typ, msg string) {
	if c.anthropic {
		b := c.errorBody(status, typ, msg)
		_ = o.event("error", b[:len(b)-1])
		return
	}
	if c.responsesAPI {
		b, _ := json.Marshal(map[string]any{"type": "error", "code": codeOrType(status, typ), "message": msg, "param": nil, "sequence_number": c.seq()})
		_ = o.event("error", b)
		return
	}
	b := c.errorBody(status, typ, msg)
	_ = o.data(b[:len(b)-1])
}

func codeOrType(status int, typ string) string {
	if s, ok := codeOf(status).(string); ok {
		return s
	}
	if typ != "" {
		return typ
	}
	return errorType(status)
}

// errWriterClosed is what a backend's Send gets after the call ended (idle
// timeout, client gone).
var errWriterClosed = errors.New("the inference call ended (idle timeout or client gone)")

// guard is the StreamWriter a backend writes to: it forwards to sink,
// stamps the time of each chunk for the idle timer, and refuses chunks once
// the call has ended.
type guard struct {
	mu     sync.Mutex
	closed bool
	sink   func(sdk.Chunk) error
	last   atomic.Int64 // unix nanoseconds of the last chunk (or the start)
}

// Send implements sdk.StreamWriter.
func (g *guard) Send(ch sdk.Chunk) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errWriterClosed
	}
	g.last.Store(time.Now().UnixNano())
	err := g.sink(ch)
	g.last.Store(time.Now().UnixNano())
	if err != nil {
		g.closed = true
	}
	return err
}

func (g *guard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// run calls fn with a guarded writer, enforcing the route's idle-gap
// timeout (and never a total one) and the client's going away. It returns
// fn's error, the sink's, or *errIdle. A backend that ignores its context
// is left behind: its later Sends fail and the response is not touched.
func (c *call) run(ctx context.Context, fn func(context.Context, sdk.StreamWriter) error, sink func(sdk.Chunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sinkErr error
	g := &guard{sink: func(ch sdk.Chunk) error {
		if err := sink(ch); err != nil {
			sinkErr = err
			return err
		}
		return nil
	}}
	g.last.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	go func() { done <- fn(ctx, g) }()
	idle := c.idle()
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			g.close()
			if sinkErr != nil {
				return sinkErr
			}
			return err
		case <-ctx.Done():
			g.close()
			return ctx.Err()
		case <-t.C:
			since := time.Since(time.Unix(0, g.last.Load()))
			if since < idle {
				t.Reset(idle - since)
				continue
			}
			g.close()
			return &errIdle{d: idle, profile: c.route.Profile}
		}
	}
}
