package egress

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// modelRefusalQuiet is how long repeats of one refused model call (same
// status, method and path) are counted instead of logged: OpenClaw retries
// a refused call 8 times over ~90 s.
const modelRefusalQuiet = 30 * time.Second

// modelNotes turns refused calls to inference.local into one clear line
// each: agents show only their own error for them (OpenClaw: "connection
// error"), so the operator must learn the cause from nemoclaw's logs.
type modelNotes struct {
	mu   sync.Mutex
	last map[string]time.Time
	reps map[string]int
	// hook is Config.OnModelRefusal (nil: none).
	hook func(string)
}

// ModelRefusalLine renders a refused model call for a person: what was
// called, the status the agent got and why, and what to do.
func ModelRefusalLine(e *Event) string {
	what := "the call"
	if m := strings.TrimSpace(e.Method + " " + e.Path); m != "" {
		what = Printable(m)
	}
	by := ""
	if e.Binary != "" {
		by = " by " + Printable(e.Binary)
	}
	step := "see `nemoclaw sandbox logs NAME --audit`"
	switch e.Status {
	case http.StatusServiceUnavailable:
		step = "inference.local has no route for this sandbox: configure an inference profile (`nemoclaw onboard --profile …`, or the blueprint's components.inference) and restart the sandbox"
	case http.StatusForbidden:
		step = "the sandbox policy's inference rules do not allow " + what + ": add an allow rule to network_policies.inference (`nemoclaw policy set NAME FILE`)"
	}
	to := Printable(e.Host)
	if e.Port != 0 { // the router's own events carry no port
		to += ":" + strconv.Itoa(e.Port)
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden && e.Class == "Inference Activity" {
		step = "the backend refused the route's credential: check the variable the profile's credential_env names on the host and `nemoclaw inference test`"
	}
	return fmt.Sprintf("model call refused: %s to %s%s answered %d %s: %s; the agent only shows its own error (OpenClaw: \"connection error\"); what to do: %s",
		what, to, by, e.Status, http.StatusText(e.Status), Printable(e.Reason), step)
}

// note logs e (a refused inference.local request) through a, at most once
// per modelRefusalQuiet for the same call, with the count of repeats.
func (n *modelNotes) note(a *auditor, e *Event) {
	if e.Decision != Deny || e.Host != inferenceHost || e.Class == "DNS Activity" {
		return
	}
	key := strconv.Itoa(e.Status) + " " + e.Method + " " + e.Path
	n.mu.Lock()
	if n.last == nil {
		n.last, n.reps = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := n.last[key]; ok && e.Time.Sub(t) < modelRefusalQuiet {
		n.reps[key]++
		n.mu.Unlock()
		return
	}
	if len(n.last) > 256 {
		clear(n.last) // an agent inventing paths: start over rather than grow
	}
	reps := n.reps[key]
	n.last[key], n.reps[key] = e.Time, 0
	hook := n.hook
	n.mu.Unlock()
	line := ModelRefusalLine(e)
	if reps > 0 {
		line += fmt.Sprintf(" (refused %d more times since the last line)", reps)
	}
	a.log.Error(line, "host", Printable(e.Host), "port", e.Port, "status", e.Status, "binary", Printable(e.Binary))
	if hook != nil {
		hook(line)
	}
}
