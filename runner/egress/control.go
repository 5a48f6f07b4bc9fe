package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Control operations understood by the per-sandbox control socket.
const (
	OpStatus    = "status"
	OpPending   = "pending"
	OpApprove   = "approve"
	OpDeny      = "deny"
	OpSetPolicy = "set-policy"
	OpAddPreset = "add-preset"
	// OpPolicy returns the policy in force with the approvals granted.
	OpPolicy = "policy"
	// OpRevoke withdraws the approval ControlRequest.ID ("HOST:PORT").
	OpRevoke = "revoke"
)

// ControlRequest is one request on the control socket (one JSON object per
// connection).
type ControlRequest struct {
	Op     string         `json:"op"`
	ID     string         `json:"id,omitempty"`
	Save   bool           `json:"save,omitempty"`
	Policy *policy.Policy `json:"policy,omitempty"`
	Preset *policy.Preset `json:"preset,omitempty"`
	// WaitMillis makes OpPending block until the list changes or this long.
	WaitMillis int `json:"wait_ms,omitempty"`
}

// ControlResponse answers a ControlRequest.
type ControlResponse struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Refused marks a policy refusal: an invalid or locked-field generation.
	Refused    bool       `json:"refused,omitempty"`
	Sandbox    string     `json:"sandbox,omitempty"`
	Generation uint64     `json:"generation,omitempty"`
	Pending    []Pending  `json:"pending,omitempty"`
	Approvals  []Approval `json:"approvals,omitempty"`
	Summaries  []Summary  `json:"summaries,omitempty"`
	Decided    *Pending   `json:"decided,omitempty"`
	// Policy is the policy in force (OpPolicy).
	Policy *policy.Policy `json:"policy,omitempty"`
	// Revoked is the approval OpRevoke withdrew.
	Revoked *Approval `json:"revoked,omitempty"`
}

// ListenControl creates the control socket at path, readable and writable
// by the owner only. A stale socket from a dead run is replaced.
func ListenControl(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another sandbox with this name is running", path)
	}
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// ServeControl answers control requests on l until l is closed. Only
// clients running as this process's user (or root) are served.
func (p *Proxy) ServeControl(l net.Listener) error {
	if !p.addCloser(l) {
		return nil
	}
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control: %w", err)
		}
		go p.serveControlConn(c)
	}
}

// soPeerPidfd is SO_PEERPIDFD (Linux 6.5, asm-generic/socket.h; the same
// number on every architecture nemoclaw builds for): a pidfd of the peer
// that connected, which pins its identity while we look at it.
const soPeerPidfd = 77

// CheckControlPeer authenticates a control client beyond its uid: the
// agent runs as the owner's uid when rootless, so the uid alone admits it.
// The client must also be in the supervisor's own pid namespace; every
// sandbox runs in a pid namespace of its own, so a process inside one is
// refused even when it reaches the socket with the right uid. Anything
// that cannot be checked is refused. Every server of a sandbox's control
// socket (ServeControl, runner/supervisor) calls it before reading a request.
func CheckControlPeer(c net.Conn) error {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("control: not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("control: peer credentials: %w", err)
	}
	var (
		cred   *unix.Ucred
		pidfd  = -1
		credEr error
	)
	_ = raw.Control(func(fd uintptr) {
		cred, credEr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if n, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, soPeerPidfd); err == nil {
			pidfd = n
		}
	})
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	if credEr != nil {
		return fmt.Errorf("control: peer credentials: %w", credEr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("control: client uid %d is not the sandbox's owner (uid %d) or root", cred.Uid, os.Getuid())
	}
	if cred.Pid <= 0 {
		return errors.New("control: client is in a pid namespace the supervisor cannot see (a sandbox?)")
	}
	own, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return fmt.Errorf("control: own pid namespace: %w", err)
	}
	peer, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", cred.Pid))
	if err != nil {
		return fmt.Errorf("control: pid namespace of client pid %d: %w", cred.Pid, err)
	}
	// The pidfd still naming a live process proves /proc/PID was the peer
	// when it was read, not a process that reused its pid.
	if pidfd >= 0 {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			return fmt.Errorf("control: client pid %d exited during the check: %w", cred.Pid, err)
		}
	}
	if peer != own {
		return fmt.Errorf("control: client pid %d runs in another pid namespace (%s, the supervisor's is %s): requests from inside a sandbox are refused; run nemoclaw on the host", cred.Pid, peer, own)
	}
	return nil
}

func (p *Proxy) serveControlConn(c net.Conn) {
	defer c.Close()
	if err := CheckControlPeer(c); err != nil {
		p.log.Warn("egress control: client refused", "err", err)
		_ = json.NewEncoder(c).Encode(ControlResponse{Error: err.Error()})
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req ControlRequest
	if err := json.NewDecoder(c).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(ControlResponse{Error: fmt.Sprintf("control: bad request: %v", err)})
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	resp := p.Control(req)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = json.NewEncoder(c).Encode(resp)
}

// Control answers one control request whose client CheckControlPeer has
// admitted: the proxy's share of the control API (status, approvals,
// policy changes), which runner/supervisor's versioned API wraps.
func (p *Proxy) Control(req ControlRequest) ControlResponse {
	r := ControlResponse{OK: true, Sandbox: p.cfg.Sandbox}
	fail := func(err error, refused bool) ControlResponse {
		return ControlResponse{Error: err.Error(), Refused: refused, Sandbox: p.cfg.Sandbox, Generation: p.Generation()}
	}
	switch req.Op {
	case OpStatus:
		p.audit.flush()
		r.Summaries, r.Approvals, r.Pending = p.Summaries(), p.Approvals(), p.Pending()
	case OpPending:
		if req.WaitMillis > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(min(req.WaitMillis, 30000))*time.Millisecond)
			p.WaitPending(ctx)
			cancel()
		}
		r.Pending = p.Pending()
	case OpApprove, OpDeny:
		d, err := p.Decide(req.ID, req.Op == OpApprove, req.Save)
		if err != nil {
			return fail(err, false)
		}
		r.Decided = &d
	case OpPolicy:
		r.Policy, r.Approvals = p.Policy(), p.Approvals()
	case OpRevoke:
		ap, err := p.Revoke(req.ID)
		if err != nil {
			return fail(err, false)
		}
		r.Revoked = &ap
	case OpSetPolicy:
		if err := p.Reload(req.Policy); err != nil {
			return fail(err, true)
		}
	case OpAddPreset:
		if err := p.AddPreset(req.Preset); err != nil {
			return fail(err, true)
		}
	default:
		return fail(fmt.Errorf("control: unknown operation %q", req.Op), false)
	}
	r.Generation = p.Generation()
	return r
}

// Client talks to a running sandbox's control socket.
type Client struct {
	// Path is the socket path, $NEMOCLAW_HOME/sandboxes/<name>/control.sock.
	Path string
	// Timeout bounds each call (default 40 s).
	Timeout time.Duration
}

// ControlError is an error reported by the sandbox; Refused marks policy
// refusals (an invalid generation or a change to a locked field).
type ControlError struct {
	Msg     string
	Refused bool
}

// Error implements error.
func (e *ControlError) Error() string { return e.Msg }

// Do sends one request and returns the response; an error response is
// returned as *ControlError.
func (c *Client) Do(ctx context.Context, req ControlRequest) (*ControlResponse, error) {
	to := c.Timeout
	if to == 0 {
		to = 40 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("control %s: no running sandbox serves this socket (is the sandbox running?): %w", c.Path, err)
		}
		return nil, fmt.Errorf("control %s: %w", c.Path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		// A refused client is answered before its request is read; the
		// refusal is waiting to be read even though the write failed.
		var resp ControlResponse
		if json.NewDecoder(conn).Decode(&resp) == nil && resp.Error != "" {
			return &resp, &ControlError{Msg: resp.Error, Refused: resp.Refused}
		}
		return nil, fmt.Errorf("control %s: %w", req.Op, err)
	}
	var resp ControlResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control %s: %w", req.Op, err)
	}
	if !resp.OK {
		return &resp, &ControlError{Msg: resp.Error, Refused: resp.Refused}
	}
	return &resp, nil
}

// Pending lists waiting approvals; wait > 0 blocks until the list changes.
func (c *Client) Pending(ctx context.Context, wait time.Duration) ([]Pending, error) {
	r, err := c.Do(ctx, ControlRequest{Op: OpPending, WaitMillis: int(wait / time.Millisecond)})
	if err != nil {
		return nil, err
	}
	return r.Pending, nil
}

// Decide approves (optionally saving) or denies a pending approval.
func (c *Client) Decide(ctx context.Context, id string, approve, save bool) (*Pending, error) {
	op := OpDeny
	if approve {
		op = OpApprove
	}
	r, err := c.Do(ctx, ControlRequest{Op: op, ID: id, Save: save})
	if err != nil {
		return nil, err
	}
	return r.Decided, nil
}

// SetPolicy replaces the running network policy; it returns the new
// generation number.
func (c *Client) SetPolicy(ctx context.Context, p *policy.Policy) (uint64, error) {
	r, err := c.Do(ctx, ControlRequest{Op: OpSetPolicy, Policy: p})
	if err != nil {
		return 0, err
	}
	return r.Generation, nil
}

// AddPreset merges a preset into the running policy.
func (c *Client) AddPreset(ctx context.Context, pr *policy.Preset) (uint64, error) {
	r, err := c.Do(ctx, ControlRequest{Op: OpAddPreset, Preset: pr})
	if err != nil {
		return 0, err
	}
	return r.Generation, nil
}

// LivePolicy returns the policy in force, its generation and the
// approvals granted for the sandbox's life.
func (c *Client) LivePolicy(ctx context.Context) (*ControlResponse, error) {
	return c.Do(ctx, ControlRequest{Op: OpPolicy})
}

// Revoke withdraws the approval id ("HOST:PORT").
func (c *Client) Revoke(ctx context.Context, id string) (*Approval, error) {
	r, err := c.Do(ctx, ControlRequest{Op: OpRevoke, ID: id})
	if err != nil {
		return nil, err
	}
	return r.Revoked, nil
}

// Status returns summaries, grants and pending approvals.
func (c *Client) Status(ctx context.Context) (*ControlResponse, error) {
	return c.Do(ctx, ControlRequest{Op: OpStatus})
}
