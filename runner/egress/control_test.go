package egress

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestControlRevoke approves and saves a destination over the control
// socket, sees it in the live policy, revokes it, and checks that later
// requests are refused again, in this run and in the next one.
func TestControlRevoke(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	file := filepath.Join(t.TempDir(), "approvals.json")
	base := pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK)}})
	h, c := controlHarness(t, base, func(c *Config) { c.ApprovalsFile = file })
	ctx := context.Background()
	get := func(h *harness) int {
		st, _, _ := h.do(t, h.client(false), "GET", u("127.0.0.1", port, "/"), "", nil)
		return st
	}
	if st := get(h); st != 403 {
		t.Fatalf("before approval: %d", st)
	}
	items, err := c.Pending(ctx, 0)
	if err != nil || len(items) != 1 {
		t.Fatalf("pending: %+v %v", items, err)
	}
	if _, err := c.Decide(ctx, items[0].ID, true, true); err != nil {
		t.Fatal(err)
	}
	if st := get(h); st != 200 {
		t.Fatalf("after approval: %d", st)
	}
	id := "127.0.0.1:" + itoa(port)
	lp, err := c.LivePolicy(ctx)
	if err != nil || lp.Policy == nil || lp.Policy.NetworkPolicies["api"] == nil || len(lp.Approvals) != 1 || ApprovalID(lp.Approvals[0]) != id || !lp.Approvals[0].Saved {
		t.Fatalf("live policy: %+v %v", lp, err)
	}
	var ce *ControlError
	if _, err := c.Revoke(ctx, "other.test:443"); !errors.As(err, &ce) || !strings.Contains(err.Error(), "no approval") {
		t.Fatalf("unknown revoke: %v", err)
	}
	ap, err := c.Revoke(ctx, id)
	if err != nil || ap == nil || ap.Port != port {
		t.Fatalf("revoke: %+v %v", ap, err)
	}
	if st := get(h); st != 403 {
		t.Fatalf("after revoke: %d", st)
	}
	if lp, err := c.LivePolicy(ctx); err != nil || len(lp.Approvals) != 0 {
		t.Fatalf("live policy after revoke: %+v %v", lp, err)
	}
	// The saved approval is gone from the file: the next run refuses too.
	h2 := newHarness(t, base, func(c *Config) { c.ApprovalsFile = file })
	if st := get(h2); st != 403 {
		t.Fatalf("next run after revoke: %d", st)
	}
}
