package supervisor

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestClientExec runs processes in a supervisor's sandbox through its
// control socket, as `nemoclaw sandbox exec` does from another process:
// the streams (passed as files) both ways, the exit code, 127, and a
// signal.
func TestClientExec(t *testing.T) {
	home := t.TempDir()
	start(t, Config{Name: "ex", Home: home, Command: []string{"sleep", "60"}, Detached: true})
	c := NewClient(home, "ex")
	ctx := context.Background()
	pipes := func(t *testing.T, input string) (in, out, errOut *os.File, outR *os.File, read func() (string, string)) {
		t.Helper()
		inR, inW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.WriteString(inW, input); inW.Close() }()
		t.Cleanup(func() { inR.Close(); outR.Close(); errR.Close() })
		return inR, outW, errW, outR, func() (string, string) {
			outW.Close()
			errW.Close()
			o, _ := io.ReadAll(outR)
			e, _ := io.ReadAll(errR)
			return string(o), string(e)
		}
	}
	for _, tc := range []struct {
		name      string
		spec      ExecSpec
		in        string
		code      int
		out, err  string
		startErr  string
		signalled bool
	}{
		{name: "streams and code", spec: ExecSpec{Command: []string{"sh", "-c", "cat; echo E >&2; exit 4"}}, in: "hi\n", code: 4, out: "hi\n", err: "E\n"},
		{name: "env and dir", spec: ExecSpec{Command: []string{"sh", "-c", "echo $X $PWD"}, Env: []string{"X=y"}, Dir: "/tmp"}, out: "y /tmp\n"},
		{name: "not found", spec: ExecSpec{Command: []string{"no-such-command"}}, code: 127, startErr: "no-such-command"},
		{name: "signal", spec: ExecSpec{Command: []string{"sh", "-c", "echo ready; exec sleep 60"}}, code: 128 + int(syscall.SIGTERM), out: "ready\n", signalled: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, out, errOut, outR, read := pipes(t, tc.in)
			sess, err := c.Exec(ctx, tc.spec, in, out, errOut)
			if tc.startErr != "" {
				var xe *ExecError
				if !errors.As(err, &xe) || xe.Code != tc.code || !strings.Contains(err.Error(), tc.startErr) {
					t.Fatalf("got %v, want an ExecError %d with %q", err, tc.code, tc.startErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer sess.Close()
			if sess.Pid <= 1 {
				t.Fatalf("pid %d", sess.Pid)
			}
			if tc.signalled {
				first := make([]byte, len(tc.out))
				if _, err := io.ReadFull(outR, first); err != nil || string(first) != tc.out {
					t.Fatalf("before the signal: %q, %v", first, err)
				}
				tc.out = ""
				if err := sess.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			}
			code, err := sess.Wait()
			o, e := read()
			if err != nil || code != tc.code || o != tc.out || e != tc.err {
				t.Fatalf("exit %d (%v), stdout %q, stderr %q; want %d, %q, %q", code, err, o, e, tc.code, tc.out, tc.err)
			}
		})
	}
}

// FuzzReadRequest: whatever a client sends, readRequest returns a request
// or an error, never files with anything but an exec frame, and never
// panics.
func FuzzReadRequest(f *testing.F) {
	frame := func(body string) []byte {
		b := append([]byte{}, execMagic...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		return append(b, body...)
	}
	f.Add([]byte(`{"op":"status"}`))
	f.Add(frame(`{"op":"exec","exec":{"command":["true"]}}` + "\n{\"rows\":3}"))
	f.Add(frame(`{"op":"status"}`))
	f.Add([]byte("NCX\x01\xff\xff\xff\xff"))
	f.Add([]byte("NCX"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		a, bf := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
		defer a.Close()
		ca, err := net.FileConn(bf)
		bf.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer ca.Close()
		go func() { _, _ = a.Write(b); _ = syscall.Shutdown(fds[0], syscall.SHUT_WR) }()
		_, files, _, _ := readRequest(ca)
		if len(files) > 0 {
			t.Fatalf("files without SCM_RIGHTS: %d", len(files))
		}
	})
}
