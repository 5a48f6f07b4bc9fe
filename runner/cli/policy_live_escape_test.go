package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
)

// TestPrintPendingEscapes (issue 13 item 18): `policy approvals --list`
// shows an agent-controlled program path escaped, so that escape sequences
// cannot repaint the operator's terminal.
func TestPrintPendingEscapes(t *testing.T) {
	var out bytes.Buffer
	app := &App{Out: &out}
	items := []egress.Pending{{ID: "1", Host: "evil.test", Port: 443, Binary: "/x\x1b[2K\x1b[1Gapi.github.com:443 /usr/bin/git\u202e", Method: "GET", Path: "/\x9b2J", Since: time.Now()}}
	if err := printPending(app, items, "text"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"\x1b", "\u202e", "\x9b"} {
		if strings.Contains(out.String(), bad) {
			t.Fatalf("--list printed %q raw:\n%q", bad, out.String())
		}
	}
	if !strings.Contains(out.String(), `\x1b[2K`) {
		t.Fatalf("--list does not show the escape:\n%q", out.String())
	}
}
