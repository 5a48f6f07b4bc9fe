package cli

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/egress"
)

// fakeApprovals is an in-memory approval queue behind approvalsClient.
type fakeApprovals struct {
	mu      sync.Mutex
	items   []egress.Pending
	decided []string
	changed chan struct{}
}

func newFakeApprovals(items ...egress.Pending) *fakeApprovals {
	return &fakeApprovals{items: items, changed: make(chan struct{})}
}

func (f *fakeApprovals) Pending(ctx context.Context, wait time.Duration) ([]egress.Pending, error) {
	f.mu.Lock()
	ch := f.changed
	out := append([]egress.Pending(nil), f.items...)
	f.mu.Unlock()
	if wait > 0 {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return f.Pending(ctx, 0)
	}
	return out, nil
}

func (f *fakeApprovals) Decide(_ context.Context, id string, approve, save bool) (*egress.Pending, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, it := range f.items {
		if it.ID == id {
			f.items = append(f.items[:i:i], f.items[i+1:]...)
			verb := "deny"
			if approve {
				verb = "approve"
				if save {
					verb = "save"
				}
			}
			f.decided = append(f.decided, verb+" "+id)
			close(f.changed)
			f.changed = make(chan struct{})
			return &it, nil
		}
	}
	return nil, errors.New("no pending approval with that id")
}

func (f *fakeApprovals) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.decided, ",")
}

// waitFor polls until cond holds or ctx ends.
func waitFor(ctx context.Context, t *testing.T, what func() string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("never: %s", what())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestApprovalsUI drives the terminal UI headlessly: keys go in through a
// pipe, the screen is read back, and the decisions reach the client.
func TestApprovalsUI(t *testing.T) {
	t.Parallel()
	f := newFakeApprovals(egress.Pending{ID: "1", Host: "a.test", Port: 443, Method: "CONNECT", Since: time.Now()},
		egress.Pending{ID: "2", Host: "b.test", Port: 8443, Since: time.Now()})
	pr, pw := io.Pipe()
	screen := &testutil.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	uiDone := make(chan error, 1)
	go func() { uiDone <- runApprovalsUI(ctx, f, "test", pr, screen) }()
	waitScreen := func(want string) {
		t.Helper()
		waitFor(ctx, t, func() string { return "screen shows " + want + ":\n" + screen.String() },
			func() bool { return strings.Contains(screen.String(), want) })
	}
	waitScreen("— 2 waiting")
	waitScreen("b.test:8443")
	_, _ = pw.Write([]byte("\r"))
	waitScreen("first request: CONNECT")
	_, _ = pw.Write([]byte("A"))
	waitScreen("— 0 waiting")
	if got := f.log(); got != "approve 1,approve 2" {
		t.Fatalf("decisions: %s", got)
	}
	_, _ = pw.Write([]byte("q"))
	if err := <-uiDone; err != nil {
		t.Fatal(err)
	}
}

func TestApprovalsUIModel(t *testing.T) {
	t.Parallel()
	m := &approvalsUI{sandbox: "s"}
	m.setItems([]egress.Pending{{ID: "1", Host: "a.test", Port: 443}, {ID: "2", Host: "b.test", Port: 80}})
	steps := []struct {
		key     string
		cursor  int
		ids     []string
		approve bool
		save    bool
		quit    bool
	}{
		{key: "j", cursor: 1},
		{key: "j", cursor: 1},
		{key: "\x1b[A", cursor: 0},
		{key: "d", cursor: 0, ids: []string{"1"}},
		{key: "\x1b[B", cursor: 1},
		{key: "s", cursor: 1, ids: []string{"2"}, approve: true, save: true},
		{key: "a", cursor: 1, ids: []string{"2"}, approve: true},
		{key: "A", cursor: 1, ids: []string{"1", "2"}, approve: true},
		{key: "q", cursor: 1, quit: true},
	}
	for i, s := range steps {
		a := m.key(s.key)
		if m.cursor != s.cursor || strings.Join(a.ids, ",") != strings.Join(s.ids, ",") || a.approve != s.approve || a.save != s.save || a.quit != s.quit {
			t.Fatalf("step %d %q: cursor %d action %+v", i, s.key, m.cursor, a)
		}
	}
	if v := m.view(); !strings.Contains(v, "> #2") || !strings.Contains(v, "b.test:80") {
		t.Fatalf("view:\n%s", v)
	}
	m.setItems([]egress.Pending{{ID: "2", Host: "b.test", Port: 80}})
	if m.cursor != 0 || m.items[0].ID != "2" {
		t.Fatal("cursor did not follow the item")
	}
	if got := splitKeys([]byte("j\x1b[Bq")); strings.Join(got, "|") != "j|\x1b[B|q" {
		t.Fatalf("splitKeys: %q", got)
	}
}

// TestApprovalsUIEscaping (issue 13 item 18): a program path with escape
// sequences and bidi overrides is shown escaped in the approvals UI.
func TestApprovalsUIEscaping(t *testing.T) {
	t.Parallel()
	evil := "/tmp/x\x1b[2K\x1b[1G#1 api.github.com:443 /usr/bin/git\u202e\x9b2J"
	m := &approvalsUI{sandbox: "s", detail: true}
	m.setItems([]egress.Pending{{ID: "1", Host: "evil.test", Port: 443, Binary: evil, Method: "GET", Path: "/\u202eabc"}})
	v := m.view()
	for _, bad := range []string{"\x1b[2K", "\u202e", "\x9b"} {
		if strings.Contains(v, bad) {
			t.Fatalf("view holds %q raw:\n%q", bad, v)
		}
	}
	if !strings.Contains(v, `\x1b[2K`) || !strings.Contains(v, `\u202e`) {
		t.Fatalf("view does not show the escapes:\n%q", v)
	}
}
