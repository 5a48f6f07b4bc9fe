package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/egress"
)

// APIVersion is the version of the control API this supervisor serves. A
// request names the version it was written for ("v"; absent means 1, the
// egress proxy's original protocol, which version 1 extends); one newer
// than APIVersion is refused rather than half understood.
const APIVersion = 1

// Operations of the control API beyond the proxy's own (egress.OpStatus,
// OpPending, OpApprove, OpDeny, OpSetPolicy, OpAddPreset).
const (
	// OpStop stops the sandbox: SIGTERM, then a kill after
	// Request.StopTimeoutMillis.
	OpStop = "stop"
	// OpExec starts a process inside the running sandbox (joining its
	// namespaces and restrictions) on the caller's streams; it is sent
	// as a frame with files (exec.go), not a bare JSON object.
	OpExec = "exec"
)

// Request is one control request (one JSON object per connection). It
// extends egress.ControlRequest, whose operations the supervisor hands to
// the proxy.
type Request struct {
	V int `json:"v,omitempty"`
	egress.ControlRequest
	// StopTimeoutMillis is OpStop's grace period (negative: none, the
	// sandbox's own --stop-timeout applies).
	StopTimeoutMillis int64 `json:"stop_timeout_ms,omitempty"`
	// Exec is OpExec's process.
	Exec *ExecSpec `json:"exec,omitempty"`
	// Profile is OpInferenceSet's profile.
	Profile string `json:"profile,omitempty"`
}

// Response answers a Request. Status answers carry Info as well as the
// proxy's summaries, grants and pending approvals.
type Response struct {
	V int `json:"v"`
	egress.ControlResponse
	Info *Info `json:"info,omitempty"`
	// Pid is an OpExec process's pid in the sandbox, once it runs.
	Pid int `json:"pid,omitempty"`
	// ExitCode is an OpExec process's exit code (128+N for signal N),
	// or 126/127 for a command that could not be executed.
	ExitCode *int `json:"exit_code,omitempty"`
	// Detached acknowledges an exec client's ExecControl.Detach: its
	// process runs on without it.
	Detached bool `json:"detached,omitempty"`
	// Inference is OpInferenceSet's answer: the route now in force.
	Inference *InferenceInfo `json:"inference,omitempty"`
}

// serveControl answers control requests on l until it is closed. Every
// client passes egress.CheckControlPeer first: the owner's uid (or root)
// AND the supervisor's own pid namespace, so that an agent, which may run
// as the owner's uid but always in a pid namespace of its own, is refused
// even if it reaches the socket.
func (s *Supervisor) serveControl(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("control", "err", err)
			}
			return
		}
		go s.serveConn(c)
	}
}

func (s *Supervisor) serveConn(c net.Conn) {
	defer c.Close()
	if err := egress.CheckControlPeer(c); err != nil {
		s.log.Warn("control: client refused", "err", err)
		_ = json.NewEncoder(c).Encode(s.fail(err))
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, files, rest, err := readRequest(c)
	if err != nil {
		_ = json.NewEncoder(c).Encode(s.fail(fmt.Errorf("control: bad request: %w", err)))
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Op == OpExec && files != nil && req.V <= APIVersion {
		s.serveExec(c, req, files, rest)
		return
	}
	for _, f := range files {
		f.Close()
	}
	resp := s.control(req)
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_ = json.NewEncoder(c).Encode(resp)
}

func (s *Supervisor) fail(err error) Response {
	return Response{V: APIVersion, ControlResponse: egress.ControlResponse{Error: err.Error(), Sandbox: s.cfg.Name}}
}

// control answers one admitted request.
func (s *Supervisor) control(req Request) Response {
	if req.V > APIVersion {
		return s.fail(fmt.Errorf("control: API version %d requested; this supervisor serves version %d: use the nemoclaw that started the sandbox, or restart the sandbox with this one", req.V, APIVersion))
	}
	switch req.Op {
	case OpStop:
		if err := s.Stop(time.Duration(req.StopTimeoutMillis) * time.Millisecond); err != nil {
			return s.fail(err)
		}
		return Response{V: APIVersion, ControlResponse: egress.ControlResponse{OK: true, Sandbox: s.cfg.Name, Generation: s.proxy.Generation()}}
	case OpExec:
		return s.fail(errors.New("control: exec: send it with its files (supervisor.Client.Exec), not as a bare request"))
	case OpInferenceSet:
		return s.setInference(req.Profile)
	}
	r := Response{V: APIVersion, ControlResponse: s.proxy.Control(req.ControlRequest)}
	if r.OK && (req.Op == egress.OpSetPolicy || req.Op == egress.OpAddPreset) && s.keeps() {
		// Kept at once, not at the end: a supervisor that dies keeps
		// the change for `sandbox start` too.
		if err := writeLaunch(s.res.dir, s.launch()); err != nil {
			s.log.Warn("launch record: the policy change will not survive a restart", "err", err)
		}
	}
	if req.Op == egress.OpStatus && r.OK {
		in := s.Info()
		r.Info = &in
	}
	return r
}

// Client talks to a supervisor's control socket. Its embedded
// egress.Client serves the proxy's operations (approvals, policy changes)
// over the same socket.
type Client struct {
	egress.Client
}

// NewClient returns the client of sandbox name's control socket under home.
func NewClient(home, name string) *Client {
	return &Client{egress.Client{Path: filepath.Join(Dir(home, name), ControlSocket)}}
}

// Call sends one request, stamped with APIVersion, and returns the
// response; an error response is an *egress.ControlError.
func (c *Client) Call(ctx context.Context, req Request) (*Response, error) {
	req.V = APIVersion
	to := c.Timeout
	if to == 0 {
		to = 40 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, fmt.Errorf("control %s: no running supervisor serves this socket (is the sandbox running? see nemoclaw sandbox list): %w", c.Path, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	werr := json.NewEncoder(conn).Encode(req)
	// A refused client is answered before its request is read: the
	// refusal is there to read even when the write failed.
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if werr != nil {
			err = werr
		}
		return nil, fmt.Errorf("control %s: %w", req.Op, err)
	}
	if !resp.OK {
		return &resp, &egress.ControlError{Msg: resp.Error, Refused: resp.Refused}
	}
	return &resp, nil
}

// Status returns the supervisor's view of the sandbox and the proxy's
// summaries, grants and pending approvals.
func (c *Client) Status(ctx context.Context) (*Response, error) {
	return c.Call(ctx, Request{ControlRequest: egress.ControlRequest{Op: egress.OpStatus}})
}

// Stop asks the supervisor to stop the sandbox: SIGTERM, then a kill
// after timeout (negative: the sandbox's own stop timeout). It returns
// once the request is accepted; the supervisor exits when the agent has.
func (c *Client) Stop(ctx context.Context, timeout time.Duration) error {
	ms := timeout.Milliseconds()
	if timeout < 0 {
		ms = -1
	}
	_, err := c.Call(ctx, Request{ControlRequest: egress.ControlRequest{Op: OpStop}, StopTimeoutMillis: ms})
	return err
}
