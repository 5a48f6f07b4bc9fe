package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
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
