package egress

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Event is one audit record: a single decision about a connection, request
// or DNS query. It never carries bodies, query strings or secrets.
type Event struct {
	Time time.Time `json:"time"`
	// Class is the OCSF-style class name ("Network Activity", "HTTP Activity", "DNS Activity").
	Class    string `json:"class"`
	Activity string `json:"activity"` // connect, request, upgrade, query
	Decision string `json:"decision"` // allow, deny, audit
	Sandbox  string `json:"sandbox,omitempty"`
	Host     string `json:"host"`
	Port     int    `json:"port,omitempty"`
	Method   string `json:"method,omitempty"`
	Path     string `json:"path,omitempty"` // canonical path, no query
	Binary   string `json:"binary,omitempty"`
	Pid      int    `json:"pid,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Status   int    `json:"status,omitempty"`
	Gen      uint64 `json:"generation,omitempty"`
	// Inference Activity only: the backend model and plugin, the tokens
	// the backend reported, the call's latency and time to first byte.
	Model            string `json:"model,omitempty"`
	Plugin           string `json:"plugin,omitempty"`
	PromptTokens     int64  `json:"prompt_tokens,omitempty"`
	CompletionTokens int64  `json:"completion_tokens,omitempty"`
	LatencyUs        int64  `json:"latency_us,omitempty"`
	TTFBUs           int64  `json:"ttfb_us,omitempty"`
	// Count is set on summary records: how many decisions they stand for.
	Count int64 `json:"count,omitempty"`
}

// Summary is the deduplicated view of decisions per (host, port, binary).
type Summary struct {
	Host     string    `json:"host"`
	Port     int       `json:"port"`
	Binary   string    `json:"binary,omitempty"`
	Decision string    `json:"decision"`
	Count    int64     `json:"count"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	Reason   string    `json:"reason,omitempty"`
}

// auditor writes audit lines and keeps per-(host, port, binary, decision)
// counts. Lines are appended to a memory buffer under a short lock and
// written by a flusher every 200 ms (or sooner when 256 KiB pile up)
// outside that lock, so a slow disk never stalls requests. The first denial
// of a key is logged to the operator's logger; repeats only count.
type auditor struct {
	log     *slog.Logger
	sandbox string
	out     io.Writer

	mu      sync.Mutex
	pending []byte
	dropped int64
	sums    map[string]*Summary

	wmu   sync.Mutex // serialises writes to out
	spare []byte
	// written counts bytes given to out; past limit lines are dropped
	// (counted in the summaries) and one line says so.
	written, limit int64
	capped         bool
	warned         int

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	// models makes refused model calls obvious (modelcall.go).
	models modelNotes
}

const (
	auditKick = 256 << 10
	auditMax  = 16 << 20 // beyond this (a stuck disk) lines are counted, not kept
	// DefaultAuditMaxBytes caps the audit log a sandbox writes (Config.AuditMaxBytes).
	DefaultAuditMaxBytes = 256 << 20
	// maxSummaries bounds the per-(host, port, binary, decision) counts; an
	// agent asking for endless distinct names is counted under one key.
	maxSummaries = 4096
	// maxWarned bounds the one-WARN-per-destination operator log; later
	// distinct denials are counted in the summaries only.
	maxWarned = 64
	// Field limits of an audit line: a path or a name never makes a line
	// longer than a few KB.
	maxFieldHost, maxFieldPath, maxFieldText = 255, 1024, 1024
)

// overflowHost is the summary key of destinations past maxSummaries.
const overflowHost = "(other destinations)"

func newAuditor(w io.Writer, log *slog.Logger, sandbox string, limit int64) *auditor {
	if limit <= 0 {
		limit = DefaultAuditMaxBytes
	}
	a := &auditor{log: log, sandbox: sandbox, out: w, sums: map[string]*Summary{}, limit: limit,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go a.flusher()
	return a
}

func (a *auditor) flusher() {
	defer close(a.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		case <-a.kick:
		}
		a.flush()
	}
}

func (a *auditor) record(e *Event) {
	e.Time = time.Now().UTC()
	e.Sandbox = a.sandbox
	e.Host = clipField(e.Host, maxFieldHost)
	e.Path = clipField(e.Path, maxFieldPath)
	e.Binary = clipField(e.Binary, maxFieldText)
	e.Reason = clipField(e.Reason, maxFieldText)
	key := e.Host + "\x00" + strconv.Itoa(e.Port) + "\x00" + e.Binary + "\x00" + e.Decision
	a.mu.Lock()
	if _, ok := a.sums[key]; !ok && len(a.sums) >= maxSummaries {
		key = overflowHost + "\x00" + e.Decision
	}
	if a.out != nil {
		if len(a.pending) < auditMax {
			a.pending = append(appendEvent(a.pending, e), '\n')
			if len(a.pending) >= auditKick {
				select {
				case a.kick <- struct{}{}:
				default:
				}
			}
		} else {
			a.dropped++
		}
	}
	s, seen := a.sums[key]
	if !seen {
		s = &Summary{Host: e.Host, Port: e.Port, Binary: e.Binary, Decision: e.Decision, First: e.Time, Reason: e.Reason}
		if len(a.sums) >= maxSummaries {
			s = &Summary{Host: overflowHost, Decision: e.Decision, First: e.Time, Reason: "more distinct destinations than the summary keeps"}
		}
		a.sums[key] = s
	}
	s.Count++
	s.Last = e.Time
	warn, last := false, false
	if !seen && e.Decision != Allow && a.warned <= maxWarned {
		a.warned++
		warn, last = a.warned <= maxWarned, a.warned > maxWarned
	}
	a.mu.Unlock()
	switch {
	case warn:
		// Printable: a JSON log handler would pass C1 and bidi characters
		// from an agent-chosen program path or name to the operator raw.
		a.log.Warn("egress "+e.Decision, "host", Printable(e.Host), "port", e.Port, "binary", Printable(e.Binary), "reason", Printable(e.Reason), "rule", e.Rule)
	case last:
		a.log.Warn("egress: more distinct destinations were refused; they are counted in the audit log's summaries, not logged one by one", "logged", maxWarned)
	}
	a.models.note(a, e)
}

// clipField cuts s to at most n bytes (at a rune boundary), marking the cut.
func clipField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// flush writes the pending lines.
func (a *auditor) flush() {
	if a.out == nil {
		return
	}
	a.wmu.Lock()
	defer a.wmu.Unlock()
	a.mu.Lock()
	buf := a.pending
	a.pending = a.spare[:0]
	dropped := a.dropped
	a.dropped = 0
	a.mu.Unlock()
	if len(buf) > 0 && a.written+int64(len(buf)) > a.limit {
		// Keep whole lines up to the cap, then say once that it was hit.
		keep := 0
		for keep < len(buf) {
			j := bytes.IndexByte(buf[keep:], '\n')
			if j < 0 || a.written+int64(keep+j+1) > a.limit {
				break
			}
			keep += j + 1
		}
		dropped += int64(bytes.Count(buf[keep:], []byte{'\n'}))
		buf = buf[:keep]
		if !a.capped {
			a.capped = true
			buf = append(appendEvent(buf, &Event{Time: time.Now().UTC(), Class: "Audit", Activity: "cap", Sandbox: a.sandbox,
				Reason: "audit log reached its size cap (" + strconv.FormatInt(a.limit, 10) + " bytes); later decisions are counted in the summaries only"}), '\n')
			a.log.Warn("egress audit log reached its size cap; later decisions are counted, not written", "cap_bytes", a.limit)
		}
	}
	if len(buf) > 0 {
		a.written += int64(len(buf))
		if _, err := a.out.Write(buf); err != nil {
			a.log.Warn("egress audit log", "err", err)
		}
	}
	if dropped > 0 && !a.capped {
		a.log.Warn("egress audit log fell behind; lines were dropped", "dropped", dropped)
	}
	a.spare = buf
}

// summaries returns the deduplicated counts, most frequent first.
func (a *auditor) summaries() []Summary {
	a.mu.Lock()
	out := make([]Summary, 0, len(a.sums))
	for _, s := range a.sums {
		out = append(out, *s)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// close writes one summary line per key and flushes.
func (a *auditor) close() {
	close(a.stop)
	<-a.done
	a.flush() // the decisions, under the cap
	sums := a.summaries()
	a.mu.Lock()
	for _, s := range sums {
		a.pending = append(appendEvent(a.pending, &Event{Time: time.Now().UTC(), Class: "Network Activity", Activity: "summary",
			Decision: s.Decision, Sandbox: a.sandbox, Host: s.Host, Port: s.Port, Binary: s.Binary, Count: s.Count, Reason: s.Reason}), '\n')
	}
	a.mu.Unlock()
	a.wmu.Lock()
	a.limit = math.MaxInt64 // the summaries are bounded by maxSummaries
	a.wmu.Unlock()
	a.flush()
}
