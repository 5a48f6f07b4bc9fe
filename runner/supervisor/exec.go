package supervisor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// An exec request carries the caller's stdin, stdout and stderr as
// SCM_RIGHTS, so it cannot be a bare JSON object: a JSON decoder reads
// ahead of the object, past where the files arrived. It is one frame
// instead, sent in the same sendmsg as the files: execMagic, the JSON
// Request's length (4 bytes, big-endian), the Request. After it the
// connection carries newline-delimited JSON both ways: ExecControl from
// the client (resize, signal), Response from the supervisor (the start,
// then the exit).
var execMagic = []byte("NCX\x01")

const (
	execHeader   = 8
	maxExecFrame = 256 << 10
	// execFiles is the number of files an exec request carries.
	execFiles = 3
)

// ExecSpec is OpExec's process: sandbox.ExecConfig without the streams,
// which travel as the request's files.
type ExecSpec struct {
	Command []string `json:"command"`
	Env     []string `json:"env,omitempty"`
	Dir     string   `json:"dir,omitempty"`
	TTY     bool     `json:"tty,omitempty"`
	Rows    uint16   `json:"rows,omitempty"`
	Cols    uint16   `json:"cols,omitempty"`
	// Detachable, with TTY, lets the client detach (ExecControl.Detach)
	// and leave the process running. Its stdin must then be a pipe that
	// the client writes (it watches the keys for its detach sequence): a
	// terminal read here could not be let go of without taking a key
	// typed after the detach.
	Detachable bool `json:"detachable,omitempty"`
}

// ExecControl is a message from an exec client to its running process:
// a window size (Rows and Cols) or a signal.
type ExecControl struct {
	Rows   uint16 `json:"rows,omitempty"`
	Cols   uint16 `json:"cols,omitempty"`
	Signal int    `json:"signal,omitempty"`
	// Detach lets go of a Detachable process: its output is dropped from
	// here on, its input's end is not passed on, and the client's going
	// away no longer hangs it up. The supervisor answers Response.Detached.
	Detach bool `json:"detach,omitempty"`
}

// readRequest reads a connection's request: a JSON object, or an exec
// frame with its files. Files that came with anything else are closed.
// rest reads what follows the request on c.
func readRequest(c net.Conn) (req Request, files []*os.File, rest io.Reader, err error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		err = json.NewDecoder(c).Decode(&req)
		return req, nil, c, err
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(execFiles*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if oobn > 0 {
		files = rightsFiles(oob[:oobn])
	}
	closeAll := func() {
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	if err != nil {
		closeAll()
		return req, nil, c, err
	}
	buf = buf[:n]
	if !bytes.HasPrefix(buf, execMagic) {
		closeAll()
		rd := io.MultiReader(bytes.NewReader(buf), c)
		dec := json.NewDecoder(rd)
		err = dec.Decode(&req)
		return req, nil, io.MultiReader(dec.Buffered(), rd), err
	}
	for len(buf) < execHeader {
		var more [execHeader]byte
		m, rerr := c.Read(more[:execHeader-len(buf)])
		if rerr != nil {
			closeAll()
			return req, nil, c, rerr
		}
		buf = append(buf, more[:m]...)
	}
	size := int(binary.BigEndian.Uint32(buf[4:execHeader]))
	if size > maxExecFrame {
		closeAll()
		return req, nil, c, fmt.Errorf("exec request of %d bytes: at most %d", size, maxExecFrame)
	}
	body := buf[execHeader:]
	var tail []byte
	if len(body) > size {
		body, tail = body[:size], body[size:]
	} else if len(body) < size {
		more := make([]byte, size-len(body))
		if _, rerr := io.ReadFull(c, more); rerr != nil {
			closeAll()
			return req, nil, c, rerr
		}
		body = append(body, more...)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		closeAll()
		return req, nil, c, err
	}
	if req.Op != OpExec {
		closeAll()
		return req, nil, c, fmt.Errorf("a request with files must be %q, not %q", OpExec, req.Op)
	}
	return req, files, io.MultiReader(bytes.NewReader(tail), c), nil
}

// rightsFiles returns the files of the SCM_RIGHTS messages in oob.
func rightsFiles(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "exec-stream"))
		}
	}
	return files
}

// serveExec runs an OpExec request's process in the sandbox on the
// caller's files, serves its ExecControl messages from rest, and answers
// its start and its exit. A caller that goes away (end of file on the
// connection) takes the process with it: SIGHUP with a TTY, as a closed
// ssh session; SIGKILL without, since nothing would read its output.
func (s *Supervisor) serveExec(c net.Conn, req Request, files []*os.File, rest io.Reader) {
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	enc := json.NewEncoder(c)
	fail := func(err error, code int) {
		r := s.fail(err)
		if code != 0 {
			r.ExitCode = &code
		}
		if sandbox.IsRefused(err) {
			r.Refused = true
		}
		_ = enc.Encode(r)
	}
	if req.Exec == nil || len(files) != execFiles {
		fail(fmt.Errorf("control: exec: want a process and %d files (stdin, stdout, stderr), got %d files", execFiles, len(files)), 0)
		return
	}
	if s.sb == nil {
		fail(errors.New("control: exec: the sandbox has not started"), 0)
		return
	}
	x := req.Exec
	cfg := sandbox.ExecConfig{Command: x.Command, Env: x.Env, Dir: x.Dir, TTY: x.TTY,
		Stdin: files[0], Stdout: files[1], Stderr: files[2]}
	if x.TTY && x.Rows > 0 && x.Cols > 0 {
		cfg.WindowSize = &sandbox.WindowSize{Rows: x.Rows, Cols: x.Cols}
	}
	exited := make(chan struct{})
	var detached atomic.Bool
	if x.TTY && x.Detachable {
		if isTerminalFile(files[0]) {
			fail(errors.New("control: exec: a detachable process's stdin must be a pipe, not a terminal"), 0)
			return
		}
		cfg.Stdin = &detachableInput{r: files[0], detached: &detached, exited: exited}
		cfg.Stdout = &detachableOutput{w: files[1], detached: &detached}
	}
	p, err := s.sb.Exec(context.Background(), cfg)
	if err != nil {
		var se *sandbox.StepError
		if errors.As(err, &se) && se.Hint != "" {
			err = fmt.Errorf("%w\n  what to do: %s", err, se.Hint)
		}
		fail(err, sandbox.ExecStatus(err))
		return
	}
	s.log.Info("exec", "command", x.Command, "pid", p.Pid(), "tty", x.TTY)
	var sendMu sync.Mutex
	send := func(r Response) {
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_ = enc.Encode(r)
	}
	send(Response{V: APIVersion, ControlResponse: egress.ControlResponse{OK: true, Sandbox: s.cfg.Name}, Pid: p.Pid()})
	go func() {
		dec := json.NewDecoder(bufio.NewReader(rest))
		for {
			var m ExecControl
			if err := dec.Decode(&m); err != nil {
				select {
				case <-exited:
				default:
					if detached.Load() {
						return // it runs on without its client
					}
					hup := syscall.SIGKILL
					if x.TTY {
						hup = syscall.SIGHUP
					}
					_ = p.Signal(hup)
				}
				return
			}
			if m.Rows > 0 && m.Cols > 0 {
				_ = p.Resize(sandbox.WindowSize{Rows: m.Rows, Cols: m.Cols})
			}
			if m.Signal > 0 && m.Signal < 65 {
				_ = p.Signal(syscall.Signal(m.Signal))
			}
			if m.Detach && x.TTY && x.Detachable && !detached.Swap(true) {
				s.log.Info("exec: detached", "pid", p.Pid())
				send(Response{V: APIVersion, ControlResponse: egress.ControlResponse{OK: true, Sandbox: s.cfg.Name}, Detached: true})
			}
		}
	}()
	code, werr := p.Wait()
	close(exited)
	for _, f := range files {
		f.Close()
	}
	files = nil
	r := Response{V: APIVersion, ControlResponse: egress.ControlResponse{OK: true, Sandbox: s.cfg.Name}, ExitCode: &code}
	if werr != nil {
		r.Error = werr.Error()
	}
	send(r)
	s.log.Info("exec: exited", "pid", p.Pid(), "code", code)
}

// detachableInput is a Detachable process's input: once detached, the end
// of its client's pipe is not passed on (a pseudo-terminal would read it
// as ^D and the shell exit); the copy then waits for the process's exit.
type detachableInput struct {
	r        *os.File
	detached *atomic.Bool
	exited   <-chan struct{}
}

func (d *detachableInput) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && d.detached.Load() {
		<-d.exited
		return n, io.ErrClosedPipe // not EOF: nothing is typed into the terminal
	}
	return n, err
}

// detachableOutput is a Detachable process's output: dropped once detached
// (the client's terminal belongs to its shell again).
type detachableOutput struct {
	w        *os.File
	detached *atomic.Bool
}

func (d *detachableOutput) Write(p []byte) (int, error) {
	if d.detached.Load() {
		return len(p), nil
	}
	n, err := d.w.Write(p)
	if err != nil && d.detached.Load() {
		return len(p), nil
	}
	return n, err
}

// isTerminalFile reports whether f is a terminal.
func isTerminalFile(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// ErrDetached is ExecSession.Wait's error once the client detached: the
// process runs on.
var ErrDetached = errors.New("exec: detached; the process runs on")

// ExecSession is a process started in the sandbox through Client.Exec.
type ExecSession struct {
	conn *net.UnixConn
	dec  *json.Decoder
	mu   sync.Mutex
	// Pid is the process's pid in the sandbox's pid namespace.
	Pid int
}

// Exec starts spec's process in the running sandbox with stdin, stdout
// and stderr as its streams; the supervisor relays or hands them on under
// sandbox.ExecConfig's rules (a terminal is never handed to the process).
// It returns once the process runs. A command that cannot be executed is
// an *ExecError with status 127 or 126.
func (c *Client) Exec(ctx context.Context, spec ExecSpec, stdin, stdout, stderr *os.File) (*ExecSession, error) {
	body, err := json.Marshal(Request{V: APIVersion, ControlRequest: egress.ControlRequest{Op: OpExec}, Exec: &spec})
	if err != nil {
		return nil, err
	}
	if len(body) > maxExecFrame {
		return nil, fmt.Errorf("exec: the command and environment take %d bytes: at most %d", len(body), maxExecFrame)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		return nil, fmt.Errorf("control %s: no running supervisor serves this socket (is the sandbox running? see nemoclaw sandbox list): %w", c.Path, err)
	}
	conn := nc.(*net.UnixConn)
	frame := make([]byte, execHeader, execHeader+len(body))
	copy(frame, execMagic)
	binary.BigEndian.PutUint32(frame[4:], uint32(len(body)))
	frame = append(frame, body...)
	rights := unix.UnixRights(int(stdin.Fd()), int(stdout.Fd()), int(stderr.Fd()))
	_, _, werr := conn.WriteMsgUnix(frame, rights, nil)
	// A refused client is answered before its request is read.
	e := &ExecSession{conn: conn, dec: json.NewDecoder(conn)}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	var resp Response
	err = e.dec.Decode(&resp)
	stop()
	if err != nil {
		conn.Close()
		if werr != nil {
			err = werr
		}
		return nil, fmt.Errorf("control %s: %w", OpExec, err)
	}
	if !resp.OK {
		conn.Close()
		ce := &egress.ControlError{Msg: resp.Error, Refused: resp.Refused}
		if resp.ExitCode != nil {
			return nil, &ExecError{Code: *resp.ExitCode, Err: ce}
		}
		return nil, ce
	}
	e.Pid = resp.Pid
	return e, nil
}

// ExecError is an exec refused with an exit status of its own (126, 127).
type ExecError struct {
	Code int
	Err  error
}

// Error implements error.
func (e *ExecError) Error() string { return e.Err.Error() }

// Unwrap returns the supervisor's refusal.
func (e *ExecError) Unwrap() error { return e.Err }

func (e *ExecSession) send(m ExecControl) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = e.conn.Write(append(b, '\n'))
	return err
}

// Detach lets go of a Detachable process; Wait then returns ErrDetached.
func (e *ExecSession) Detach() error {
	return e.send(ExecControl{Detach: true})
}

// Resize sets the process's terminal size (with a TTY).
func (e *ExecSession) Resize(rows, cols uint16) error {
	return e.send(ExecControl{Rows: rows, Cols: cols})
}

// Signal sends sig to the process's process group.
func (e *ExecSession) Signal(sig syscall.Signal) error {
	return e.send(ExecControl{Signal: int(sig)})
}

// Wait waits for the process to exit and returns its exit code (128+N
// for signal N).
func (e *ExecSession) Wait() (int, error) {
	var resp Response
	if err := e.dec.Decode(&resp); err != nil {
		return 0, fmt.Errorf("exec: the supervisor went away before the process's exit: %w", err)
	}
	if resp.Detached {
		return 0, ErrDetached
	}
	if resp.ExitCode == nil {
		return 0, fmt.Errorf("exec: %s", resp.Error)
	}
	if resp.Error != "" {
		return *resp.ExitCode, errors.New(resp.Error)
	}
	return *resp.ExitCode, nil
}

// Close ends the session; a process still running is killed (hung up
// with a TTY).
func (e *ExecSession) Close() error { return e.conn.Close() }
