package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// TestTermModel drives the dashboard's key handling step by step.
func TestTermModel(t *testing.T) {
	t.Parallel()
	m := &termUI{}
	m.setRows([]supervisor.Info{{Name: "a", State: supervisor.StateRunning}, {Name: "b", State: supervisor.StateStopped}})
	m.setPending([]egress.Pending{{ID: "1", Host: "x.test", Port: 443}, {ID: "2", Host: "y.test", Port: 80}})
	steps := []struct {
		key    string
		sel    int
		pcur   int
		want   termAction
		status string
	}{
		{key: "\t", pcur: 1},
		{key: "s", pcur: 1, want: termAction{decide: "2", approve: true, save: true}},
		{key: "\t", pcur: 0},
		{key: "a", want: termAction{decide: "1", approve: true}},
		{key: "d", want: termAction{decide: "1"}},
		{key: "c", want: termAction{connect: "a"}},
		{key: "l", want: termAction{logs: "a"}},
		{key: "k"}, // already at the top
		{key: "j", sel: 1, want: termAction{selectionChanged: true}},
		{key: "j", sel: 1},
		{key: "a", sel: 1, status: "no request is waiting in b"},
		{key: "c", sel: 1, status: "select a running sandbox first"},
		{key: "\x1b[A", sel: 0, want: termAction{selectionChanged: true}},
		{key: "\x1b[B", sel: 1, want: termAction{selectionChanged: true}},
		{key: "x", sel: 1},
		{key: "q", sel: 1, want: termAction{quit: true}},
		{key: "\x03", sel: 1, want: termAction{quit: true}},
	}
	for i, s := range steps {
		m.status = ""
		a := m.key(s.key)
		if a != s.want || m.sel != s.sel || m.pcur != s.pcur || m.status != s.status {
			t.Fatalf("step %d %q: action %+v sel %d pcur %d status %q", i, s.key, a, m.sel, m.pcur, m.status)
		}
	}
	// The selection follows its sandbox through a refresh that reorders.
	m.setRows([]supervisor.Info{{Name: "b"}, {Name: "c"}, {Name: "a"}})
	if m.selected() != "b" {
		t.Fatalf("selection moved to %q", m.selected())
	}
	if changed := m.setRows([]supervisor.Info{{Name: "c"}}); !changed || m.selected() != "c" {
		t.Fatalf("a vanished selection: changed %v, now %q", changed, m.selected())
	}
}

// TestTermView renders the dashboard: every sandbox, the selected one's
// queue and audit tail, escaped, cut to the terminal's size.
func TestTermView(t *testing.T) {
	t.Parallel()
	now := time.Now()
	evil := "/tmp/x\x1b[2J\u202e"
	m := &termUI{width: 100, height: 14, now: now}
	m.setRows([]supervisor.Info{{Name: "alpha", State: supervisor.StateRunning, Started: now.Add(-time.Minute), Blueprint: "embedded:default", Version: "0.1.0", Generation: 3, Pending: 1},
		{Name: "beta", State: supervisor.StateStopped}})
	m.setPending([]egress.Pending{{ID: "7", Host: "evil.test", Port: 443, Binary: evil, Method: "GET", Path: "/\x9b", Waiting: 1}})
	for i := range 30 {
		m.audit = append(m.audit, "event "+string(rune('a'+i%26))+" "+strings.Repeat("z", 200))
	}
	v := m.view()
	lines := strings.Split(strings.TrimSuffix(v, "\r\n"), "\r\n")
	if len(lines) > m.height {
		t.Fatalf("%d lines on a %d-line terminal:\n%s", len(lines), m.height, v)
	}
	for _, l := range lines {
		if n := len([]rune(l)); n > m.width {
			t.Fatalf("a %d-column line on a %d-column terminal: %q", n, m.width, l)
		}
	}
	for _, want := range []string{"> alpha", "embedded:default@0.1.0", "beta", "waiting for approval in alpha: 1", "> #7", "evil.test:443", `\x1b[2J\u202e`, "audit log of alpha:", "q quit"} {
		if !strings.Contains(v, want) {
			t.Fatalf("view lacks %q:\n%s", want, v)
		}
	}
	for _, bad := range []string{"\x1b[2J", "\u202e", "\x9b"} {
		if strings.Contains(v, bad) {
			t.Fatalf("view holds %q raw:\n%q", bad, v)
		}
	}
	// The newest audit events are the ones that fit.
	if !strings.Contains(v, "event d z") || strings.Contains(v, "event a z") {
		t.Fatalf("audit tail:\n%s", v)
	}
	if v := (&termUI{}).view(); !strings.Contains(v, "no sandboxes") {
		t.Fatalf("empty view:\n%s", v)
	}
}

// TestTailAudit reads the end of an audit log, formatted and escaped, and
// drops a line cut by the read window.
func TestTailAudit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.jsonl")
	var b strings.Builder
	for range 2000 {
		b.WriteString(`{"time":"2026-01-01T00:00:00Z","activity":"connect","decision":"deny","host":"old.test","port":443,"rule":"r"}` + "\n")
	}
	b.WriteString(`{"time":"2026-01-01T00:00:00Z","activity":"connect","decision":"allow","host":"new.test","port":443,"binary":"/x` + `\u001b[2J","rule":"network_policies.api.endpoints[0]"}` + "\n")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	got := tailAudit(p, 5)
	if len(got) != 5 || !strings.Contains(got[4], "allow") || !strings.Contains(got[4], "rule=network_policies.api.endpoints[0]") || !strings.Contains(got[4], `\x1b[2J`) {
		t.Fatalf("tail: %q", got)
	}
	for _, l := range tailAudit(p, 10000) {
		if strings.HasPrefix(l, "?") {
			t.Fatalf("a cut line was kept: %q", l)
		}
	}
	if got := tailAudit(filepath.Join(dir, "none"), 5); got != nil {
		t.Fatalf("missing file: %q", got)
	}
}

// TestTermKeyReaderStale: keys typed ahead of a child (read in the same
// batch as the key that started it) are stale once the reader was paused,
// so that a "q" meant for the shell does not quit term on its return.
func TestTermKeyReaderStale(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kr := newKeyReader(ctx, r)
	if _, err := w.WriteString("cq"); err != nil {
		t.Fatal(err)
	}
	c := <-kr.keys
	if c.k != "c" || kr.stale(c) {
		t.Fatalf("first key %+v stale %v", c, kr.stale(c))
	}
	kr.pause(true)
	kr.pause(false)
	q := <-kr.keys
	if q.k != "q" || !kr.stale(q) {
		t.Fatalf("typed-ahead key %+v not stale", q)
	}
	if _, err := w.WriteString("j"); err != nil {
		t.Fatal(err)
	}
	if j := <-kr.keys; j.k != "j" || kr.stale(j) {
		t.Fatalf("a key after the child %+v is stale", j)
	}
}
