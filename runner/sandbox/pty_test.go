package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// failAfter writes until n bytes have gone, then fails with EIO, as a
// terminal that hung up does.
type failAfter struct {
	n   int
	got bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.got.Len()+len(p) > f.n {
		return 0, syscall.EIO
	}
	return f.got.Write(p)
}

// TestPTYOutput: the relay's writer passes output until the caller's
// terminal fails, reports that failure once, and from then on accepts
// (and drops) everything, so that io.Copy keeps reading the agent's side.
func TestPTYOutput(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int
		wantOut  string
		wantHang int
	}{
		{"terminal stays", 1 << 20, strings.Repeat("x", 64*1024), 0},
		{"terminal hangs up", 40000, strings.Repeat("x", 32*1024), 1}, // io.Copy writes 32 KiB at a time
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := &failAfter{n: tc.limit}
			var hangs []error
			w := &ptyOutput{w: dst, hangup: func(err error) { hangs = append(hangs, err) }}
			n, err := io.Copy(w, io.LimitReader(strings.NewReader(strings.Repeat("x", 64*1024)), 64*1024))
			if err != nil || n != 64*1024 {
				t.Fatalf("copy: %d %v, want all 65536 bytes taken", n, err)
			}
			if dst.got.String() != tc.wantOut {
				t.Errorf("passed %d bytes, want %d", dst.got.Len(), len(tc.wantOut))
			}
			if len(hangs) != tc.wantHang {
				t.Fatalf("hangup called %d times, want %d", len(hangs), tc.wantHang)
			}
			if tc.wantHang > 0 && !errors.Is(hangs[0], syscall.EIO) {
				t.Errorf("hangup got %v, want EIO", hangs[0])
			}
		})
	}
}

// TestIsTerminal: a pty is a terminal, still after its hangup; a pipe and a
// file are not.
func TestIsTerminal(t *testing.T) {
	m, pts, err := openPTY(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	if !isTerminal(pts) {
		t.Error("a pty slave is not a terminal")
	}
	m.Close() // hangs the slave up
	if !isTerminal(pts) {
		t.Error("a hung-up pty slave is not a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	f, err := os.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, nt := range []*os.File{r, f} {
		if isTerminal(nt) {
			t.Errorf("%s is a terminal", nt.Name())
		}
	}
}

// TestTermRelay: streams that are terminals become pipes the agent gets
// instead (stdout and stderr on one terminal share one), input typed on
// the terminal reaches the agent's pipe, the agent's output reaches the
// terminal, and once the input relay is stopped what is typed stays on
// the terminal for whoever reads next.
func TestTermRelay(t *testing.T) {
	m, pts, err := openPTY(&WindowSize{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer pts.Close()
	// Raw input, no echo: what is typed is what is read.
	tio, err := unix.IoctlGetTermios(rawFd(pts), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Lflag &^= unix.ECHO
	if err := unix.IoctlSetTermios(rawFd(pts), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	sb := &Sandbox{}
	var buf bytes.Buffer
	cfg, err := sb.relayTerminals(Config{Stdin: pts, Stdout: pts, Stderr: pts})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Stdout != cfg.Stderr {
		t.Error("stdout and stderr on one terminal got two pipes")
	}
	var agentIn, agentOut *os.File
	for i, s := range []any{cfg.Stdin, cfg.Stdout, cfg.Stderr} {
		f, ok := s.(*os.File)
		if !ok || f == pts || isTerminal(f) {
			t.Fatalf("stream %d is %v, want a pipe", i, s)
		}
	}
	// The agent's ends, as the init would hold them (start closes the
	// relay's copies).
	if agentIn, err = dupFile(cfg.Stdin.(*os.File)); err != nil {
		t.Fatal(err)
	}
	defer agentIn.Close()
	if agentOut, err = dupFile(cfg.Stdout.(*os.File)); err != nil {
		t.Fatal(err)
	}
	done := sb.relay.start()
	if _, err := m.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(agentIn, got); err != nil || string(got) != "typed\n" {
		t.Fatalf("agent read %q, %v; want %q", got, err, "typed\n")
	}
	if _, err := agentOut.Write([]byte("out\n")); err != nil {
		t.Fatal(err)
	}
	agentOut.Close() // the last writer: the output relay ends
	<-done
	for !strings.Contains(buf.String(), "out") {
		b := make([]byte, 64)
		n, err := m.Read(b)
		if err != nil {
			t.Fatalf("terminal output %q, then %v", buf.String(), err)
		}
		buf.Write(b[:n])
	}
	sb.relay.stopInput()
	sb.relay.close()
	// The relay reads nothing after it stopped: wait for its end (the
	// agent's input pipe closes), then type.
	if n, err := agentIn.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("agent's input after stop: %d, %v; want EOF", n, err)
	}
	if _, err := m.Write([]byte("shell\n")); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 16)
	n, err := pts.Read(line)
	if err != nil || string(line[:n]) != "shell\n" {
		t.Fatalf("terminal kept %q, %v; want %q for the next reader", line[:n], err, "shell\n")
	}
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(rawFd(f)), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
