package egress

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

func controlHarness(t *testing.T, pol *policy.Policy, mod func(*Config)) (*harness, *Client) {
	t.Helper()
	h := newHarness(t, pol, mod)
	sock := filepath.Join(t.TempDir(), "control.sock")
	l, err := ListenControl(sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.p.ServeControl(l) }()
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode: %v %v", st.Mode(), err)
	}
	return h, &Client{Path: sock, Timeout: 10 * time.Second}
}

// TestControlSocket reloads, adds a preset and reads status over the real
// unix socket; invalid generations come back as refusals.
func TestControlSocket(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	h, c := controlHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"))}}), nil)
	ctx := context.Background()
	hc := h.client(false)
	if st, _, _ := h.do(t, hc, "GET", u("other.test", port, "/"), "", nil); st != 403 {
		t.Fatalf("before preset: %d", st)
	}
	gen, err := c.AddPreset(ctx, &policy.Preset{Meta: policy.PresetMeta{Name: "other"}, NetworkPolicies: map[string]*policy.NetworkPolicy{
		"other": {Endpoints: []*policy.Endpoint{ep("other.test", port, loopOK, rest, allow("GET", "/**"))}}}})
	if err != nil || gen != 2 {
		t.Fatalf("add preset: %d %v", gen, err)
	}
	if st, _, _ := h.do(t, hc, "GET", u("other.test", port, "/"), "", nil); st != 200 {
		t.Fatalf("after preset: %d", st)
	}
	bad := pol(map[string][]*policy.Endpoint{"x": {ep("x.test", 99999)}})
	_, err = c.SetPolicy(ctx, bad)
	var ce *ControlError
	if !errors.As(err, &ce) || !ce.Refused || !strings.Contains(err.Error(), "port") {
		t.Fatalf("invalid set: %v", err)
	}
	locked := pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK)}})
	locked.Process = &policy.ProcessPolicy{RunAsUser: "root"}
	if _, err := c.SetPolicy(ctx, locked); err == nil || !strings.Contains(err.Error(), "process") {
		t.Fatalf("static change over control: %v", err)
	}
	if gen, err := c.SetPolicy(ctx, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"))}})); err != nil || gen != 3 {
		t.Fatalf("set: %d %v", gen, err)
	}
	if st, _, _ := h.do(t, hc, "GET", u("other.test", port, "/"), "", nil); st != 403 {
		t.Fatalf("after set: %d", st)
	}
	s, err := c.Status(ctx)
	if err != nil || len(s.Summaries) == 0 || s.Generation != 3 {
		t.Fatalf("status: %+v %v", s, err)
	}
	if _, err := c.Decide(ctx, "42", true, false); !errors.As(err, &ce) || ce.Refused || !strings.Contains(err.Error(), "no pending approval") {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := (&Client{Path: filepath.Join(t.TempDir(), "none.sock")}).Status(ctx); err == nil || !strings.Contains(err.Error(), "is the sandbox running") {
		t.Fatalf("missing socket: %v", err)
	}
}

// TestApprovalsUI drives the terminal UI headlessly: keys go in through a
// pipe, the screen is read back, and the waiting request completes once
// the UI approves it.
func TestApprovalsUI(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	_, port2 := newTLSUpstream(t)
	h, c := controlHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK)}}), func(c *Config) {
		c.Approvals, c.ApprovalTimeout = true, 20*time.Second
	})
	hc := h.client(false)
	done := make(chan string, 2)
	get := func(url string) {
		resp, err := hc.Get(url)
		if err != nil {
			done <- err.Error()
			return
		}
		resp.Body.Close()
		done <- resp.Status
	}
	go get(u("127.0.0.1", port, "/one"))
	go get(u("127.0.0.1", port2, "/two"))
	pr, pw := io.Pipe()
	screen := &testutil.Buffer{} // the TUI's screen output
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	uiDone := make(chan error, 1)
	go func() { uiDone <- RunApprovalsUI(ctx, c, "test", pr, screen) }()
	waitScreen := func(want string) {
		t.Helper()
		for !strings.Contains(screen.String(), want) {
			if ctx.Err() != nil {
				t.Fatalf("screen never showed %q:\n%s", want, screen.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitScreen("2 waiting")
	waitScreen(itoa(port2))
	_, _ = pw.Write([]byte("\r")) // detail of the first
	waitScreen("first request: CONNECT")
	_, _ = pw.Write([]byte("A")) // approve all
	for range 2 {
		if st := <-done; st != "200 OK" {
			t.Fatalf("approved through the UI: %s\n%s", st, screen.String())
		}
	}
	waitScreen("0 waiting")
	_, _ = pw.Write([]byte("q"))
	if err := <-uiDone; err != nil {
		t.Fatal(err)
	}
}

func TestApprovalsUIModel(t *testing.T) {
	t.Parallel()
	m := &approvalsUI{sandbox: "s"}
	m.setItems([]Pending{{ID: "1", Host: "a.test", Port: 443}, {ID: "2", Host: "b.test", Port: 80}})
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
	m.setItems([]Pending{{ID: "2", Host: "b.test", Port: 80}})
	if m.cursor != 0 || m.items[0].ID != "2" {
		t.Fatal("cursor did not follow the item")
	}
	if got := splitKeys([]byte("j\x1b[Bq")); strings.Join(got, "|") != "j|\x1b[B|q" {
		t.Fatalf("splitKeys: %q", got)
	}
}
