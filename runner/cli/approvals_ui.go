package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
)

// approvalsUI is the state of the approvals terminal UI. It is a plain
// model (keys in, screen text out) so it can be driven headlessly.
type approvalsUI struct {
	sandbox string
	items   []egress.Pending
	cursor  int
	detail  bool
	status  string
	width   int
}

// uiAction is what a key asks the UI loop to do.
type uiAction struct {
	quit    bool
	ids     []string
	approve bool
	save    bool
}

// key applies one key press and returns the action it asks for.
func (m *approvalsUI) key(k string) uiAction {
	switch k {
	case "q", "\x03", "\x04", "\x1b":
		return uiAction{quit: true}
	case "k", "\x1b[A":
		if m.cursor > 0 {
			m.cursor--
		}
	case "j", "\x1b[B":
		if m.cursor < len(m.items)-1 {
			m.cursor++
		}
	case "\r", "\n", " ":
		m.detail = !m.detail
	case "a", "s", "d":
		if len(m.items) == 0 {
			m.status = "nothing to decide"
			return uiAction{}
		}
		return uiAction{ids: []string{m.items[m.cursor].ID}, approve: k != "d", save: k == "s"}
	case "A":
		var ids []string
		for _, it := range m.items {
			ids = append(ids, it.ID)
		}
		if len(ids) == 0 {
			m.status = "nothing to approve"
			return uiAction{}
		}
		return uiAction{ids: ids, approve: true}
	}
	return uiAction{}
}

// setItems replaces the list, keeping the cursor on the same id if it is
// still there.
func (m *approvalsUI) setItems(items []egress.Pending) {
	cur := ""
	if m.cursor < len(m.items) {
		cur = m.items[m.cursor].ID
	}
	m.items = items
	m.cursor = 0
	for i, it := range items {
		if it.ID == cur {
			m.cursor = i
		}
	}
}

// view renders the whole screen.
func (m *approvalsUI) view() string {
	var b strings.Builder
	fmt.Fprintf(&b, "nemoclaw approvals: sandbox %s — %d waiting\r\n\r\n", m.sandbox, len(m.items))
	if len(m.items) == 0 {
		b.WriteString("  (no requests are waiting; denied destinations appear here while approvals are on)\r\n")
	}
	for i, it := range m.items {
		mark := "  "
		if i == m.cursor {
			mark = "> "
		}
		bin := egress.Printable(it.Binary)
		if bin == "" {
			bin = "?"
		}
		fmt.Fprintf(&b, "%s#%-4s %s  %s  (%d waiting, %s ago)\r\n", mark, egress.Printable(it.ID), egress.Printable(net.JoinHostPort(it.Host, strconv.Itoa(it.Port))), bin, it.Waiting, time.Since(it.Since).Truncate(time.Second))
		if i == m.cursor && m.detail {
			fmt.Fprintf(&b, "      first request: %s %s\r\n      attempts: %d, since %s\r\n", egress.Printable(it.Method), egress.Printable(it.Path), it.Attempts, it.Since.Format(time.RFC3339))
			b.WriteString("      approving allows every request to this host:port for the sandbox's life (s: also save)\r\n")
		}
	}
	b.WriteString("\r\n[j/k] move  [enter] detail  [a] approve  [s] approve+save  [d] deny  [A] approve all  [q] quit\r\n")
	if m.status != "" {
		b.WriteString(egress.Printable(m.status) + "\r\n")
	}
	return b.String()
}

// approvalsClient is the part of the control API the approvals UI uses
// (egress.Client, or a fake in tests).
type approvalsClient interface {
	Pending(ctx context.Context, wait time.Duration) ([]egress.Pending, error)
	Decide(ctx context.Context, id string, approve, save bool) (*egress.Pending, error)
}

// runApprovalsUI runs the approvals terminal UI against a sandbox's control
// socket, reading keys from in (a terminal in raw mode, or any stream) and
// drawing on out, until q or the end of in.
func runApprovalsUI(ctx context.Context, c approvalsClient, sandbox string, in io.Reader, out io.Writer) error {
	m := &approvalsUI{sandbox: sandbox}
	keys := make(chan string)
	go func() {
		defer close(keys)
		buf := make([]byte, 64)
		for {
			n, err := in.Read(buf)
			for _, k := range splitKeys(buf[:n]) {
				select {
				case keys <- k:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lists := make(chan []egress.Pending, 1)
	errs := make(chan error, 1)
	go func() {
		wait := time.Duration(0)
		for ctx.Err() == nil {
			items, err := c.Pending(ctx, wait)
			if err != nil {
				select {
				case errs <- err:
				default:
				}
				return
			}
			select {
			case lists <- items:
			case <-ctx.Done():
				return
			}
			wait = 5 * time.Second
		}
	}()
	draw := func() { _, _ = io.WriteString(out, "\x1b[H\x1b[2J"+m.view()) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return fmt.Errorf("approvals: %w", err)
		case items := <-lists:
			m.setItems(items)
			draw()
		case k, ok := <-keys:
			if !ok {
				return nil
			}
			a := m.key(k)
			if a.quit {
				return nil
			}
			for _, id := range a.ids {
				if _, err := c.Decide(ctx, id, a.approve, a.save); err != nil {
					m.status = fmt.Sprintf("#%s: %v", id, err)
				} else {
					m.status = fmt.Sprintf("#%s %s", id, decisionVerb(a.approve, a.save))
				}
			}
			if len(a.ids) > 0 {
				items, err := c.Pending(ctx, 0)
				if err == nil {
					m.setItems(items)
				}
			}
			draw()
		}
	}
}

// splitKeys splits raw terminal input into keys, keeping arrow escape
// sequences whole.
func splitKeys(b []byte) []string {
	var out []string
	for i := 0; i < len(b); {
		if b[i] == 0x1b && i+2 < len(b) && b[i+1] == '[' {
			out = append(out, string(b[i:i+3]))
			i += 3
			continue
		}
		out = append(out, string(b[i:i+1]))
		i++
	}
	return out
}
