package egress

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestModelRefusalLine (issue 17): a model call the sandbox refuses — 503
// while no router serves inference.local, 403 for a path the policy's
// inference rules do not allow — gives one clear error line with the
// status, the reason and what to do, in the log and through
// OnModelRefusal; OpenClaw's 8 retries of the same call give one line, not
// eight; other destinations give none.
func TestModelRefusalLine(t *testing.T) {
	t.Parallel()
	var logs testutil.Buffer
	var mu sync.Mutex
	var lines []string
	infRules := ep("inference.local", 80)
	infRules.Rules = []*policy.Rule{{Allow: &policy.Matcher{Method: "POST", Path: "/v1/chat/completions"}}}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"inf": {infRules}}), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.OnModelRefusal = func(l string) {
			mu.Lock()
			lines = append(lines, l)
			mu.Unlock()
		}
	})
	c := h.client(false)
	for range 8 {
		if st, _, _ := h.do(t, c, "POST", "http://inference.local/v1/chat/completions", "{}", nil); st != 503 && st != 403 {
			t.Fatalf("inference.local: %d", st)
		}
	}
	h.do(t, c, "GET", "http://elsewhere.test/", "", nil)
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 {
		t.Fatalf("8 refusals of one call gave %d lines, want 1: %q", len(lines), lines)
	}
	l := lines[0]
	for _, want := range []string{"model call refused", "POST", "inference.local:80", "what to do", "connection error"} {
		if !strings.Contains(l, want) {
			t.Errorf("line lacks %q: %s", want, l)
		}
	}
	if !strings.Contains(l, "503") && !strings.Contains(l, "403") {
		t.Errorf("line names no status: %s", l)
	}
	if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "model call refused") || strings.Contains(got, "elsewhere.test") && strings.Count(got, "model call refused") != 1 {
		t.Errorf("log:\n%s", got)
	}
}

func TestModelRefusalLineStatuses(t *testing.T) {
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Host: "inference.local", Port: 80, Method: "POST", Path: "/v1/chat/completions", Status: 503, Reason: "no router"}, "configure an inference profile"},
		{Event{Host: "inference.local", Port: 443, Method: "DELETE", Path: "/v1/files", Status: 403, Reason: "no rule", Binary: "/usr/bin/node"}, "add an allow rule"},
		{Event{Host: "inference.local", Port: 443, Method: "GET", Path: "/v1/\x1b[2Jx", Status: 403}, `\x1b`},
	} {
		if l := ModelRefusalLine(&tc.e); !strings.Contains(l, tc.want) || strings.Contains(l, "\x1b") {
			t.Errorf("%+v: %s, want %q and no raw escape", tc.e, l, tc.want)
		}
	}
}
