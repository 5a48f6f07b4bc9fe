package egress

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestCredentialPlaceholders covers the Telegram bot-token case: the agent
// holds only a placeholder; the proxy swaps in the secret on the bound
// endpoint (path and header) and refuses the placeholder anywhere else.
func TestCredentialPlaceholders(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	secretFile := filepath.Join(t.TempDir(), "hdr")
	if err := os.WriteFile(secretFile, []byte("file-secret-42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOST_TG_TOKEN": "123456:ABC-real_token"}
	h := newHarness(t, pol(map[string][]*policy.Endpoint{
		"telegram": {ep("tg.test", port, loopOK, rest, allow("GET", "/bot*/**"), allow("POST", "/bot*/**"), func(e *policy.Endpoint) {
			e.Credentials = []*policy.Credential{
				{Name: "TELEGRAM_BOT_TOKEN", Env: "HOST_TG_TOKEN", In: []string{"path"}},
				{Name: "API_KEY", File: secretFile, In: []string{"header"}},
			}
		})},
		"api": {ep("api.test", port, loopOK, rest, allow("*", "/**"))},
	}), func(c *Config) {
		c.LookupEnv = func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	})
	var tg, key string
	for _, kv := range h.p.Env("http://127.0.0.1:3128", "/b", "/c") {
		if v, ok := strings.CutPrefix(kv, "TELEGRAM_BOT_TOKEN="); ok {
			tg = v
		}
		if v, ok := strings.CutPrefix(kv, "API_KEY="); ok {
			key = v
		}
		if strings.Contains(kv, "real_token") || strings.Contains(kv, "file-secret") {
			t.Fatalf("secret leaked into the sandbox env: %s", kv)
		}
	}
	if !strings.HasPrefix(tg, placeholderPrefix) || !strings.HasPrefix(key, placeholderPrefix) {
		t.Fatalf("placeholders missing from env: %q %q", tg, key)
	}
	c := h.client(false)
	st, body, _ := h.do(t, c, "GET", u("tg.test", port, "/bot"+tg+"/getMe"), "", map[string]string{"Authorization": "Bearer " + key})
	if st != 200 {
		t.Fatalf("bound endpoint: %d %s", st, body)
	}
	e := decodeEcho(t, body)
	if e.URI != "/bot123456:ABC-real_token/getMe" || e.Auth != "Bearer file-secret-42" {
		t.Fatalf("upstream saw %q / %q", e.URI, e.Auth)
	}
	// The placeholder sent to another host, or in a place it is not bound to.
	for _, tc := range []struct {
		url string
		hdr map[string]string
	}{
		{u("api.test", port, "/bot"+tg+"/getMe"), nil},
		{u("api.test", port, "/x"), map[string]string{"Authorization": "Bearer " + key}},
		{u("api.test", port, "/x?t="+tg), nil},
		{u("tg.test", port, "/bot1/getMe"), map[string]string{"X-Token": tg}}, // path-only credential in a header
	} {
		st, body, _ := h.do(t, c, "GET", tc.url, "", tc.hdr)
		if st != 403 || !strings.Contains(body, "placeholder") {
			t.Fatalf("%s: misuse not refused: %d %s", tc.url, st, body)
		}
	}
	h.p.FlushAudit()
	if log := h.audit.String(); strings.Contains(log, "real_token") || strings.Contains(log, "file-secret") {
		t.Fatalf("secret in audit log:\n%s", log)
	}
	// A missing host secret is a load error naming the variable.
	_, err := New(Config{Policy: pol(map[string][]*policy.Endpoint{"t": {ep("tg.test", 443, rest, func(e *policy.Endpoint) {
		e.Credentials = []*policy.Credential{{Name: "T", Env: "NEMOCLAW_TEST_UNSET_VAR"}}
	})}})})
	if err == nil || !strings.Contains(err.Error(), "NEMOCLAW_TEST_UNSET_VAR") {
		t.Fatalf("missing secret: %v", err)
	}
}

// TestApprovalsHeadless queues a denied destination, approves it through
// the API while the request waits, and checks the request goes through;
// a denied one fails, a saved one survives a restart.
func TestApprovalsHeadless(t *testing.T) {
	t.Parallel()
	_, port := newTLSUpstream(t)
	file := filepath.Join(t.TempDir(), "approvals.json")
	h := newHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK, rest, allow("GET", "/**"))}}), func(c *Config) {
		c.Approvals, c.ApprovalTimeout, c.ApprovalsFile = true, 20*time.Second, file
	})
	c := h.client(false)
	type res struct {
		st   int
		body string
	}
	ask := func(url string) chan res {
		ch := make(chan res, 1)
		go func() { st, b, _ := h.do(t, c, "GET", url, "", nil); ch <- res{st, b} }()
		return ch
	}
	waitPending := func(host string) Pending {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			for _, p := range h.p.Pending() {
				if p.Host == host {
					return p
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("no pending approval for %s", host)
			}
			h.p.WaitPending(ctx)
		}
	}
	ch := ask(u("127.0.0.1", port, "/approved"))
	p := waitPending("127.0.0.1")
	if p.Port != port || p.Waiting != 1 {
		t.Fatalf("pending %+v", p)
	}
	if _, err := h.p.Decide(p.ID, true, true); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.st != 200 {
		t.Fatalf("approved request: %d %s", r.st, r.body)
	}
	if st, _, _ := h.do(t, c, "GET", u("127.0.0.1", port, "/again"), "", nil); st != 200 {
		t.Fatalf("later request after approval: %d", st)
	}
	ch = ask("https://[::1]:" + itoa(port) + "/denied")
	p = waitPending("::1")
	if _, err := h.p.Decide(p.ID, false, false); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.st != 403 {
		t.Fatalf("denied request: %d %s", r.st, r.body)
	}
	if _, err := h.p.Decide("9999", true, false); err == nil {
		t.Fatal("unknown id accepted")
	}
	// The saved approval applies to a new proxy for the same sandbox.
	h2 := newHarness(t, pol(map[string][]*policy.Endpoint{"api": {ep("api.test", port, loopOK)}}), func(c *Config) { c.ApprovalsFile = file })
	if st, body, _ := h2.do(t, h2.client(false), "GET", u("127.0.0.1", port, "/saved"), "", nil); st != 200 {
		t.Fatalf("saved approval after restart: %d %s", st, body)
	}
}

// TestEnvName: a credential's name is an environment variable name.
func TestEnvName(t *testing.T) {
	for s, want := range map[string]bool{
		"GITHUB_TOKEN": true, "_x": true, "a1": true, "A": true,
		"": false, "1A": false, "A-B": false, "A B": false, "É": false, "A=1": false, "a.b": false,
	} {
		if got := envName(s); got != want {
			t.Errorf("envName(%q) = %v, want %v", s, got, want)
		}
	}
}
