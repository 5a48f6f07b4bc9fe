package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() { register(newTermCmd) }

func newTermCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "term",
		Short: "Terminal dashboard over every sandbox on this host: state, audit stream, approvals",
		Long: `Term opens a keyboard-driven terminal UI over every sandbox under
$NEMOCLAW_HOME, refreshed every second: state, blueprint, uptime, policy
generation and pending approvals of each; for the selected sandbox the tail
of its egress audit log (allowed and denied, with the rule) and the requests
waiting for approval. Plain ANSI: it works over SSH and redraws on resize.

Keys: j/k or arrows select a sandbox, tab selects the next waiting request,
a approves it, s approves and saves it, d denies it, c connects to the
sandbox (a shell; exit it to come back), l shows its agent's log (q or
Ctrl-C to come back), q quits.`,
		Example: "  nemoclaw term",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in, _ := app.In.(*os.File)
			out, _ := app.Out.(*os.File)
			if in == nil || out == nil || !term.IsTerminal(int(in.Fd())) || !term.IsTerminal(int(out.Fd())) {
				return Usage(fmt.Errorf("term needs a terminal on stdin and stdout; use `nemoclaw sandbox list` and `nemoclaw policy approvals NAME --list` in scripts"))
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("term: own executable: %w", err)
			}
			return runTerm(cmd.Context(), app, in, out, self)
		},
	}
}

// termAuditLines is how much of the selected sandbox's audit log term keeps.
const termAuditLines = 200

// termUI is the state of `nemoclaw term`: a plain model (data and keys in,
// screen text out) so that it can be tested without a terminal.
type termUI struct {
	rows    []supervisor.Info
	sel     int
	pending []egress.Pending
	pcur    int
	audit   []string // formatted, escaped
	status  string
	width   int
	height  int
	now     time.Time
}

// termAction is what a key asks the loop to do.
type termAction struct {
	quit             bool
	connect, logs    string // a sandbox name
	decide           string // a pending id
	approve, save    bool
	selectionChanged bool
}

// selected is the selected sandbox's name, or "".
func (m *termUI) selected() string {
	if m.sel < len(m.rows) {
		return m.rows[m.sel].Name
	}
	return ""
}

func (m *termUI) selectedRunning() bool {
	return m.sel < len(m.rows) && m.rows[m.sel].State == supervisor.StateRunning
}

// key applies one key press and returns the action it asks for.
func (m *termUI) key(k string) termAction {
	switch k {
	case "q", "\x03", "\x04":
		return termAction{quit: true}
	case "k", "\x1b[A":
		if m.sel > 0 {
			m.sel--
			m.pending, m.audit, m.pcur = nil, nil, 0
			return termAction{selectionChanged: true}
		}
	case "j", "\x1b[B":
		if m.sel < len(m.rows)-1 {
			m.sel++
			m.pending, m.audit, m.pcur = nil, nil, 0
			return termAction{selectionChanged: true}
		}
	case "\t":
		if len(m.pending) > 0 {
			m.pcur = (m.pcur + 1) % len(m.pending)
		}
	case "a", "s", "d":
		if len(m.pending) == 0 {
			m.status = "no request is waiting in " + m.selected()
			return termAction{}
		}
		return termAction{decide: m.pending[m.pcur].ID, approve: k != "d", save: k == "s"}
	case "c", "l":
		if !m.selectedRunning() {
			m.status = "select a running sandbox first"
			return termAction{}
		}
		if k == "c" {
			return termAction{connect: m.selected()}
		}
		return termAction{logs: m.selected()}
	}
	return termAction{}
}

// setRows replaces the sandbox list, keeping the selection on the same
// name if it is still there.
func (m *termUI) setRows(rows []supervisor.Info) bool {
	cur := m.selected()
	m.rows, m.sel = rows, 0
	for i, r := range rows {
		if r.Name == cur {
			m.sel = i
		}
	}
	return m.selected() != cur
}

// setPending replaces the selected sandbox's queue, keeping the cursor on
// the same id if it is still there.
func (m *termUI) setPending(items []egress.Pending) {
	cur := ""
	if m.pcur < len(m.pending) {
		cur = m.pending[m.pcur].ID
	}
	m.pending, m.pcur = items, 0
	for i, it := range items {
		if it.ID == cur {
			m.pcur = i
		}
	}
}

// clip cuts s to the screen width (s is already escaped: one rune, one
// column, close enough for a dashboard).
func (m *termUI) clip(s string) string {
	if m.width > 0 {
		if r := []rune(s); len(r) > m.width {
			return string(r[:m.width])
		}
	}
	return s
}

// view renders the whole screen: every line ends in \r\n (raw mode) and
// is cut to the width; the audit stream gets the rows left.
func (m *termUI) view() string {
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, m.clip(fmt.Sprintf(format, a...))) }
	add("nemoclaw term — %d sandboxes  (%dx%d)", len(m.rows), m.width, m.height)
	add("")
	add("  %-20s %-28s %-24s %-10s %-6s %s", "NAME", "STATE", "BLUEPRINT", "UPTIME", "POLICY", "PENDING")
	if len(m.rows) == 0 {
		add("  (no sandboxes; start one with `nemoclaw sandbox run --detach`)")
	}
	for i, r := range m.rows {
		mark := "  "
		if i == m.sel {
			mark = "> "
		}
		add("%s%-20s %-28s %-24s %-10s %-6s %s", mark, egress.Printable(r.Name), egress.Printable(r.Summary()), blueprintLabel(r),
			dash(r.Uptime(m.now)), genLabel(r), pendingLabel(r))
	}
	add("")
	if name := m.selected(); name != "" {
		add("waiting for approval in %s: %d", egress.Printable(name), len(m.pending))
		for i, it := range m.pending {
			mark := "  "
			if i == m.pcur {
				mark = "> "
			}
			bin := egress.Printable(it.Binary)
			if bin == "" {
				bin = "?"
			}
			add("%s#%-4s %s:%d  %s  %s %s  (%d waiting)", mark, egress.Printable(it.ID), egress.Printable(it.Host), it.Port, bin,
				egress.Printable(it.Method), egress.Printable(it.Path), it.Waiting)
		}
		add("")
		add("audit log of %s:", egress.Printable(name))
	}
	footer := []string{m.clip("j/k sandbox  tab request  a approve  s approve+save  d deny  c connect  l logs  q quit")}
	if m.status != "" {
		footer = append(footer, m.clip(egress.Printable(m.status)))
	}
	room := len(m.audit)
	if m.height > 0 {
		room = max(0, m.height-len(lines)-len(footer)-1)
	}
	for _, l := range m.audit[max(0, len(m.audit)-room):] {
		add("  %s", l)
	}
	add("")
	lines = append(lines, footer...)
	return strings.Join(lines, "\r\n") + "\r\n"
}

// keyReader reads keys from a terminal and can be paused, so that a child
// (connect, logs) gets every keystroke while it runs: the reader only
// reads after poll(2) said a key is there, under a lock that pause takes.
type keyReader struct {
	f      *os.File
	mu     sync.Mutex
	paused bool
	epoch  int // counts pauses: keys read before one are stale
	keys   chan termKey
}

// termKey is a key and the epoch it was read in.
type termKey struct {
	k     string
	epoch int
}

// stale reports whether k was read before the latest pause: typed ahead
// of a child (connect, logs), it was meant for the child, not term.
func (r *keyReader) stale(k termKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return k.epoch != r.epoch
}

func newKeyReader(ctx context.Context, f *os.File) *keyReader {
	r := &keyReader{f: f, keys: make(chan termKey)}
	go r.loop(ctx)
	return r
}

func (r *keyReader) loop(ctx context.Context) {
	defer close(r.keys)
	buf := make([]byte, 64)
	for ctx.Err() == nil {
		r.mu.Lock()
		n := 0
		var err error
		if !r.paused {
			fds := []unix.PollFd{{Fd: int32(r.f.Fd()), Events: unix.POLLIN}}
			if k, perr := unix.Poll(fds, 100); perr == nil && k > 0 {
				n, err = r.f.Read(buf)
			}
		}
		paused, epoch := r.paused, r.epoch
		r.mu.Unlock()
		if paused {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, k := range splitKeys(buf[:n]) {
			select {
			case r.keys <- termKey{k, epoch}:
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pause stops reading (it returns once no read is under way).
func (r *keyReader) pause(p bool) {
	r.mu.Lock()
	r.paused = p
	if p {
		r.epoch++
	}
	r.mu.Unlock()
}

// runTerm runs the dashboard on the terminal in/out until q. self is this
// executable, which connect and logs run as children.
func runTerm(ctx context.Context, app *App, in, out *os.File, self string) error {
	fd := int(in.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("term: raw terminal: %w", err)
	}
	// Alternate screen, cursor hidden; both undone on the way out.
	_, _ = io.WriteString(out, "\x1b[?1049h\x1b[?25l")
	restore := func() {
		_, _ = io.WriteString(out, "\x1b[?25h\x1b[?1049l")
		_ = term.Restore(fd, old)
	}
	defer restore()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	keys := newKeyReader(ctx, in)
	m := &termUI{}
	size := func() {
		if w, h, err := term.GetSize(int(out.Fd())); err == nil {
			m.width, m.height = w, h
		}
	}
	size()
	refresh := func() {
		m.now = time.Now()
		rows, err := supervisor.List(ctx, app.Home, statusTimeout)
		if err != nil {
			m.status = err.Error()
		}
		m.setRows(rows)
		name := m.selected()
		if name == "" {
			m.pending, m.audit = nil, nil
			return
		}
		m.audit = tailAudit(filepath.Join(supervisor.Dir(app.Home, name), supervisor.AuditFile), termAuditLines)
		if !m.selectedRunning() {
			m.pending = nil
			return
		}
		items, err := supervisor.NewClient(app.Home, name).Pending(ctx, 0)
		if err != nil {
			m.status = err.Error()
			items = nil
		}
		m.setPending(items)
	}
	draw := func() { _, _ = io.WriteString(out, "\x1b[H\x1b[2J"+m.view()) }
	// child runs `nemoclaw ARGS...` on the terminal, in cooked mode, with
	// the key reader paused, and comes back to the dashboard after it.
	child := func(args ...string) {
		keys.pause(true)
		// Ctrl-C in the child's cooked terminal signals the whole
		// foreground group: caught here (not ignored, which the child
		// would inherit) so that it ends the child only.
		ints := make(chan os.Signal, 1)
		signal.Notify(ints, os.Interrupt)
		defer signal.Stop(ints)
		restore()
		c := exec.CommandContext(ctx, self, args...)
		c.Stdin, c.Stdout, c.Stderr = in, out, out
		c.Env = append(os.Environ(), "NEMOCLAW_HOME="+app.Home)
		err := c.Run()
		if _, err := term.MakeRaw(fd); err != nil {
			m.status = "raw terminal: " + err.Error()
		}
		_, _ = io.WriteString(out, "\x1b[?1049h\x1b[?25l")
		keys.pause(false)
		m.status = "back from " + strings.Join(args, " ")
		if err != nil {
			m.status += ": " + err.Error()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	refresh()
	draw()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			refresh()
			draw()
		case <-winch:
			size()
			draw()
		case k, ok := <-keys.keys:
			if !ok {
				return nil
			}
			if keys.stale(k) {
				continue
			}
			a := m.key(k.k)
			switch {
			case a.quit:
				return nil
			case a.connect != "":
				child("sandbox", "connect", a.connect)
			case a.logs != "":
				child("sandbox", "logs", "--follow", a.logs)
			case a.decide != "":
				c := supervisor.NewClient(app.Home, m.selected())
				if d, err := c.Decide(ctx, a.decide, a.approve, a.save); err != nil {
					m.status = fmt.Sprintf("#%s: %v", a.decide, err)
				} else {
					m.status = fmt.Sprintf("#%s %s:%d %s", d.ID, d.Host, d.Port, decisionVerb(a.approve, a.save))
				}
			}
			if a.selectionChanged || a.decide != "" || a.connect != "" || a.logs != "" {
				refresh()
			}
			draw()
		}
	}
}

// decisionVerb says what an approve/deny decision did.
func decisionVerb(approve, save bool) string {
	switch {
	case approve && save:
		return "approved and saved"
	case approve:
		return "approved"
	}
	return "denied"
}

// tailAudit returns the last n events of an audit log, formatted for a
// human and escaped (formatAuditLine); it reads only the file's end.
func tailAudit(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(0, st.Size()-window)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil
	}
	if off > 0 { // the first line is cut: drop it
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	lines = lines[max(0, len(lines)-n):]
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = formatAuditLine(l, true)
	}
	return out
}
