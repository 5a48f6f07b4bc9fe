package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// The upstream side of plain-HTTP/1.1 requests without a body.
//
// http.Transport runs a reader and a writer goroutine per upstream
// connection and hands every request and response between them and the
// caller; for the small bodiless requests that make up most agent traffic
// those hand-offs cost more CPU than the proxying itself. h1Pool sends
// such a request from the calling goroutine with the standard library's
// own serialization ((*http.Request).Write) and parsing (http.ReadResponse)
// and keeps net/http's rules on reuse and retries. Everything else — a
// body, Expect, an upgrade, TLS, h2 — keeps http.Transport (see
// transports.RoundTrip); TestH1PoolMatchesTransport holds the two to the
// same behaviour.

// leanEligible reports whether r may take h1Pool: plain http, no body
// (so writing the whole request before reading the response cannot
// deadlock against an upstream that answers early), no Expect (100-continue
// needs the response read while the body waits), no upgrade.
func leanEligible(r *http.Request) bool {
	return r.URL.Scheme == "http" && (r.Body == nil || r.Body == http.NoBody) &&
		len(r.Header["Expect"]) == 0 && len(r.Header["Upgrade"]) == 0 && len(r.TransferEncoding) == 0
}

// h1Pool holds idle plain-HTTP/1.1 upstream connections of one dial class,
// keyed by host:port, most recently used last.
type h1Pool struct {
	dial func(context.Context) (net.Conn, error)
	// perHost and total bound the idle connections; idle bounds how long
	// one stays unused.
	perHost, total int
	idle           time.Duration
	maxHead        int64

	// sent counts the requests this pool sent (tests check that the
	// differential test exercised it).
	sent atomic.Int64

	mu     sync.Mutex
	conns  map[string][]*h1Conn
	n      int
	reaper *time.Timer
	closed bool
}

// h1Conn is one upstream connection.
type h1Conn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	key    string
	since  time.Time // idle since
	reused bool
	// limit is what may still be read into br: the response head limit
	// while a head is read, unbounded for bodies (as Transport does).
	limit   int64
	maxHead int64
	written int64
	// raw is c's syscall.RawConn for connQuiet; nil when c is not a socket.
	raw syscall.RawConn
}

// Read counts response-head bytes against the limit.
func (hc *h1Conn) Read(b []byte) (int, error) {
	if hc.limit <= 0 {
		return 0, fmt.Errorf("read limit of %d bytes exhausted", hc.maxHead)
	}
	if int64(len(b)) > hc.limit {
		b = b[:hc.limit]
	}
	n, err := hc.c.Read(b)
	hc.limit -= int64(n)
	return n, err
}

// Write counts what reached the connection (a failed write of nothing can
// be retried elsewhere).
func (hc *h1Conn) Write(b []byte) (int, error) {
	n, err := hc.c.Write(b)
	hc.written += int64(n)
	return n, err
}

// errH1Retry marks an error after which the request may be sent again on
// another connection (net/http's shouldRetryRequest).
type errH1Retry struct{ err error }

func (e errH1Retry) Error() string { return e.err.Error() }
func (e errH1Retry) Unwrap() error { return e.err }

// roundTrip sends r (eligible: leanEligible) and returns its response,
// whose body gives the connection back to the pool when read to the end.
func (hp *h1Pool) roundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	key := r.URL.Host
	hp.sent.Add(1)
	for {
		hc, err := hp.get(ctx, key)
		if err != nil {
			return nil, err
		}
		res, err := hp.send(hc, r)
		if err == nil {
			return res, nil
		}
		var re errH1Retry
		if !errors.As(err, &re) || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
	}
}

// send writes r on hc and reads the response head, passing 1xx responses
// to the client trace as Transport does. On error hc is closed.
func (hp *h1Pool) send(hc *h1Conn, r *http.Request) (res *http.Response, err error) {
	ctx := r.Context()
	// A cancelled request (the client left) unblocks the reads and writes
	// below and the body's reads; the connection is then not reused.
	stop := context.AfterFunc(ctx, func() { _ = hc.c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if err != nil {
			stop()
			hc.c.Close()
		}
	}()
	hc.written = 0
	if err := r.Write(hc.bw); err != nil {
		return nil, err
	}
	if err := hc.bw.Flush(); err != nil {
		if hc.written == 0 && hc.reused {
			// Nothing reached the upstream: safe for any method.
			return nil, errH1Retry{err}
		}
		return nil, err
	}
	hc.limit = hc.maxHead
	if _, err := hc.br.Peek(1); err != nil {
		if hc.reused && isReplayable(r) {
			// The upstream closed a pooled connection as the request went
			// out (keep-alive race): replay only what is safe to replay.
			return nil, errH1Retry{err}
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the upstream closed the connection before answering")
		}
		return nil, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	for {
		res, err = http.ReadResponse(hc.br, r)
		if err != nil {
			if hc.limit <= 0 {
				err = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", hc.maxHead)
			}
			return nil, err
		}
		if res.StatusCode < 100 || res.StatusCode > 199 {
			break
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("the upstream switched protocols on a request that did not ask to")
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
			hc.limit = hc.maxHead // delivered: the next head gets its own limit
		}
	}
	hc.limit = math.MaxInt64
	keep := !res.Close && !r.Close
	if res.Body == http.NoBody {
		hp.done(hc, stop, keep)
		return res, nil
	}
	res.Body = &h1Body{rc: res.Body, hp: hp, hc: hc, stop: stop, keep: keep}
	return res, nil
}

// isReplayable is net/http's rule: idempotent methods, or an idempotency
// key, and no body that could not be sent again.
func isReplayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case "", "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// h1Body returns the connection to the pool once the body has been read
// to its end; closed early, the connection is closed.
type h1Body struct {
	rc   io.ReadCloser
	hp   *h1Pool
	hc   *h1Conn
	stop func() bool
	keep bool
	once sync.Once
	// err is what reads return once the body is done.
	err error
}

// Read implements io.Reader.
func (b *h1Body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish(b.keep && err == io.EOF)
		b.err = err
	}
	return n, err
}

// Close implements io.Closer; it also unblocks a Read in progress.
func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(keep bool) {
	b.once.Do(func() { b.hp.done(b.hc, b.stop, keep) })
}

// done ends a request on hc: it goes back to the pool if the response
// allows reuse, nothing unsolicited follows it and the request was not
// cancelled; else it is closed.
func (hp *h1Pool) done(hc *h1Conn, stop func() bool, keep bool) {
	if !stop() || !keep || hc.br.Buffered() > 0 {
		hc.c.Close()
		return
	}
	hp.put(hc)
}

// get takes the most recently used live idle connection to key, or dials.
func (hp *h1Pool) get(ctx context.Context, key string) (*h1Conn, error) {
	for {
		hp.mu.Lock()
		l := hp.conns[key]
		if len(l) == 0 {
			hp.mu.Unlock()
			break
		}
		hc := l[len(l)-1]
		l[len(l)-1] = nil
		if len(l) == 1 {
			delete(hp.conns, key)
		} else {
			hp.conns[key] = l[:len(l)-1]
		}
		hp.n--
		hp.mu.Unlock()
		if connQuiet(hc.raw) {
			hc.reused = true
			return hc, nil
		}
		hc.c.Close() // closed by the upstream, or unsolicited bytes
	}
	c, err := hp.dial(ctx)
	if err != nil {
		return nil, err
	}
	hc := &h1Conn{c: c, key: key, maxHead: hp.maxHead}
	if sc, ok := c.(syscall.Conn); ok {
		// Taken once: SyscallConn allocates, and connQuiet runs per reuse.
		hc.raw, _ = sc.SyscallConn()
	}
	hc.br = bufio.NewReader(hc)
	hc.bw = bufio.NewWriter(hc)
	return hc, nil
}

// put pools hc within the caps (past the per-host cap hc is closed, past
// the total the longest-idle connection is), and arms the reaper.
func (hp *h1Pool) put(hc *h1Conn) {
	var evict *h1Conn
	hp.mu.Lock()
	if hp.closed || len(hp.conns[hc.key]) >= hp.perHost {
		hp.mu.Unlock()
		hc.c.Close()
		return
	}
	if hp.n >= hp.total {
		evict = hp.oldestLocked()
	}
	hc.since = time.Now()
	hp.conns[hc.key] = append(hp.conns[hc.key], hc)
	hp.n++
	if hp.reaper == nil {
		hp.reaper = time.AfterFunc(hp.idle, hp.reap)
	}
	hp.mu.Unlock()
	if evict != nil {
		evict.c.Close()
	}
}

// oldestLocked removes and returns the longest-idle connection.
func (hp *h1Pool) oldestLocked() *h1Conn {
	var ok string
	var old *h1Conn
	for k, l := range hp.conns {
		if old == nil || l[0].since.Before(old.since) {
			ok, old = k, l[0]
		}
	}
	if old != nil {
		hp.removeLocked(ok, 1)
	}
	return old
}

func (hp *h1Pool) removeLocked(key string, n int) {
	l := hp.conns[key]
	if n >= len(l) {
		delete(hp.conns, key)
	} else {
		hp.conns[key] = append(l[:0], l[n:]...)
		clear(l[len(l)-n:])
	}
	hp.n -= n
}

// reap closes the connections idle for longer than hp.idle and re-arms
// itself while any remain.
func (hp *h1Pool) reap() {
	now := time.Now()
	var drop []*h1Conn
	hp.mu.Lock()
	next := time.Duration(0)
	for k, l := range hp.conns {
		i := 0
		for i < len(l) && now.Sub(l[i].since) >= hp.idle {
			i++
		}
		// The next deadline first: removeLocked shifts l's elements in
		// place, so l[i] is not the oldest survivor after it.
		if i < len(l) {
			if d := hp.idle - now.Sub(l[i].since); next == 0 || d < next {
				next = d
			}
		}
		drop = append(drop, l[:i]...)
		if i > 0 {
			hp.removeLocked(k, i)
		}
	}
	hp.reaper = nil
	if next > 0 && !hp.closed {
		hp.reaper = time.AfterFunc(next, hp.reap)
	}
	hp.mu.Unlock()
	for _, hc := range drop {
		hc.c.Close()
	}
}

// closeIdle closes the idle connections; with final, connections given
// back later are closed too (the dial class is gone).
func (hp *h1Pool) closeIdle(final bool) {
	hp.mu.Lock()
	var drop []*h1Conn
	for _, l := range hp.conns {
		drop = append(drop, l...)
	}
	clear(hp.conns)
	hp.n = 0
	hp.closed = hp.closed || final
	if hp.reaper != nil {
		hp.reaper.Stop()
		hp.reaper = nil
	}
	hp.mu.Unlock()
	for _, hc := range drop {
		hc.c.Close()
	}
}

// connQuiet reports whether an idle connection is still open with nothing
// unread: one non-blocking MSG_PEEK (http.Transport learns the same from
// its reader goroutine).
// rc is the connection's syscall.RawConn (h1Conn.raw); nil (not a socket)
// counts as quiet.
func connQuiet(rc syscall.RawConn) bool {
	if rc == nil {
		return true
	}
	quiet := false
	var b [1]byte
	err := rc.Read(func(fd uintptr) bool {
		// errno 0 means EOF (0 bytes) or unsolicited bytes (1): not quiet.
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		quiet = errno == syscall.EAGAIN
		return true
	})
	return err == nil && quiet
}
