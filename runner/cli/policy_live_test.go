package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// fakeControl serves a sandbox's control socket under home from answer,
// recording the requests; the real server is tested in runner/egress and
// runner/supervisor.
func fakeControl(t *testing.T, home, name string, answer func(egress.ControlRequest) egress.ControlResponse) *[]egress.ControlRequest {
	t.Helper()
	dir := supervisor.Dir(home, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, supervisor.ControlSocket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var reqs []egress.ControlRequest
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var req egress.ControlRequest
			if json.NewDecoder(c).Decode(&req) == nil {
				mu.Lock()
				reqs = append(reqs, req)
				mu.Unlock()
				_ = json.NewEncoder(c).Encode(answer(req))
			}
			c.Close()
		}
	}()
	return &reqs
}

// TestPolicyShowLive: `policy show NAME` of a running sandbox prints the
// policy in force in canonical form, and the approvals granted marked as
// such (comments, escaped); --output json carries them as fields.
func TestPolicyShowLive(t *testing.T) {
	home := t.TempDir()
	pol, err := policy.Parse("test.yaml", []byte("version: 1\nnetwork_policies:\n  api:\n    name: api\n    endpoints:\n      - { host: api.test, port: 443 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	fakeControl(t, home, "live", func(req egress.ControlRequest) egress.ControlResponse {
		if req.Op != egress.OpPolicy {
			return egress.ControlResponse{Error: "unexpected op " + req.Op}
		}
		return egress.ControlResponse{OK: true, Generation: 4, Policy: pol, Approvals: []egress.Approval{
			{Host: "pypi.org", Port: 443, Saved: true}, {Host: "evil\x1b[2J.test", Port: 80}}}
	})
	out, errs, code := runHome(t, home, "policy", "show", "live")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	canon, err := policy.Canonical(pol)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"generation 4", string(canon), "# approvals granted while the sandbox runs", "#   pypi.org:443", "saved", `evil\x1b[2J.test:80`} {
		if !strings.Contains(out, want) {
			t.Fatalf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Fatalf("show printed an escape raw:\n%q", out)
	}
	if _, err := policy.Parse("test.yaml", []byte(out)); err != nil {
		t.Fatalf("the live policy is not a valid policy file: %v\n%s", err, out)
	}
	out, errs, code = runHome(t, home, "policy", "show", "live", "-o", "json")
	var lp livePolicy
	if code != 0 || json.Unmarshal([]byte(out), &lp) != nil || lp.Generation != 4 || len(lp.Approvals) != 2 || lp.Policy.NetworkPolicies["api"] == nil {
		t.Fatalf("json: exit %d %s %s", code, out, errs)
	}
	// A sandbox that is not running (no socket) is an error naming why.
	if err := os.MkdirAll(supervisor.Dir(home, "stopped"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := runHome(t, home, "policy", "show", "stopped"); code != 1 || !strings.Contains(errs, "is the sandbox running") {
		t.Fatalf("stopped: exit %d %s", code, errs)
	}
}

// TestApprovalsRevoke: --revoke sends the revoke op with the id and reports
// what was withdrawn; an unknown id is the sandbox's error, exit 1; --list
// shows the granted approvals with the id --revoke takes.
func TestApprovalsRevoke(t *testing.T) {
	home := t.TempDir()
	reqs := fakeControl(t, home, "live", func(req egress.ControlRequest) egress.ControlResponse {
		switch {
		case req.Op == egress.OpRevoke && req.ID == "pypi.org:443":
			return egress.ControlResponse{OK: true, Revoked: &egress.Approval{Host: "pypi.org", Port: 443, Saved: true}}
		case req.Op == egress.OpRevoke:
			return egress.ControlResponse{Error: "revoke " + req.ID + ": no approval for that host:port"}
		case req.Op == egress.OpStatus:
			return egress.ControlResponse{OK: true, Approvals: []egress.Approval{{Host: "pypi.org", Port: 443, Saved: true}}}
		}
		return egress.ControlResponse{Error: "unexpected op " + req.Op}
	})
	out, errs, code := runHome(t, home, "policy", "approvals", "live", "--revoke", "pypi.org:443")
	if code != 0 || !strings.Contains(out, "revoked pypi.org:443 for this run and removed from the saved approvals") {
		t.Fatalf("revoke: exit %d %s %s", code, out, errs)
	}
	if _, errs, code := runHome(t, home, "policy", "approvals", "live", "--revoke", "x.test:1"); code != 1 || !strings.Contains(errs, "no approval") {
		t.Fatalf("unknown revoke: exit %d %s", code, errs)
	}
	out, errs, code = runHome(t, home, "policy", "approvals", "live", "--list")
	if code != 0 || !strings.Contains(out, "no destinations are waiting") || !strings.Contains(out, "pypi.org:443") || !strings.Contains(out, "saved") {
		t.Fatalf("list: exit %d %s %s", code, out, errs)
	}
	if len(*reqs) != 3 || (*reqs)[0].ID != "pypi.org:443" {
		t.Fatalf("requests: %+v", *reqs)
	}
}
