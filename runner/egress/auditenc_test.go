package egress

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzAppendEvent checks the hand-written audit encoder against
// encoding/json on arbitrary strings.
func FuzzAppendEvent(f *testing.F) {
	f.Add("api.test", "/a/b", "why \"quoted\" <tag>\n", 443)
	f.Add("\xff\xfe", "\u2028", "\x00", 0)
	f.Fuzz(func(t *testing.T, host, path, reason string, port int) {
		e := &Event{Time: time.Unix(1700000000, 123456789).UTC(), Class: "HTTP Activity", Activity: "request", Decision: Deny,
			Sandbox: "s", Host: host, Port: port, Method: "GET", Path: path, Reason: reason, Gen: 3, Count: 2,
			Model: reason, Plugin: host, PromptTokens: int64(port), CompletionTokens: 7, LatencyUs: int64(port) * 3, TTFBUs: 1}
		want, _ := json.Marshal(e)
		if got := appendEvent(nil, e); string(got) != string(want) {
			t.Fatalf("encoder mismatch:\n got %s\nwant %s", got, want)
		}
	})
}
