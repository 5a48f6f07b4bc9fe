package supervisor

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseDetachKeys(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		err  string
	}{
		{"", nil, ""},
		{DefaultDetachKeys, []byte{0x10, 0x11}, ""},
		{"ctrl-a,x,CTRL-Z", []byte{1, 'x', 26}, ""},
		{"ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", []byte{0, 27, 28, 29, 30, 31}, ""},
		{"ctrl-", []byte(nil), "want a printable character"},
		{"ctrl-1", nil, "want ctrl- and one of"},
		{"ctrl-ab", nil, "want ctrl- and one of"},
		{"ab", nil, "want a printable character"},
		{"a,,b", nil, "want a printable character"},
		{"\x01", nil, "want a printable character"},
	} {
		got, err := ParseDetachKeys(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDetachKeys(%q) = %v, %v; want error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseDetachKeys(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestCopyInput(t *testing.T) {
	pq := []byte{0x10, 0x11}
	for _, tc := range []struct {
		name, in, want string
		keys           []byte
		detached       bool
	}{
		{"no keys", "ls\x10\x11\n", "ls\x10\x11\n", nil, false},
		{"plain", "echo hi\n", "echo hi\n", pq, false},
		{"detach", "echo hi\n\x10\x11more", "echo hi\n", pq, true},
		{"broken sequence passed on", "a\x10b\x10", "a\x10b\x10", pq, false},
		{"p p q detaches after one p", "\x10\x10\x11", "\x10", pq, true},
		{"q alone", "\x11x", "\x11x", pq, false},
	} {
		for _, one := range []bool{false, true} {
			var src io.Reader = strings.NewReader(tc.in)
			if one {
				src = iotest.OneByteReader(src) // the sequence split across reads
			}
			var dst bytes.Buffer
			detached, err := CopyInput(&dst, src, tc.keys)
			if err != nil || detached != tc.detached || dst.String() != tc.want {
				t.Errorf("%s (one byte a read: %v): detached %v, err %v, copied %q; want %v, %q", tc.name, one, detached, err, dst.String(), tc.detached, tc.want)
			}
		}
	}
}

// FuzzCopyInput: what is copied plus the detach sequence, when it ends
// the copy, is exactly the input up to where the copy stopped.
func FuzzCopyInput(f *testing.F) {
	f.Add([]byte("echo\x10\x11"), []byte{0x10, 0x11})
	f.Add([]byte("\x10\x10\x11"), []byte{0x10, 0x11})
	f.Fuzz(func(t *testing.T, in, keys []byte) {
		if len(keys) > 8 {
			keys = keys[:8]
		}
		var dst bytes.Buffer
		detached, err := CopyInput(&dst, iotest.OneByteReader(bytes.NewReader(in)), keys)
		if err != nil {
			t.Fatal(err)
		}
		got := dst.Bytes()
		if !detached {
			if !bytes.Equal(got, in) {
				t.Fatalf("no detach, copied %q of %q", got, in)
			}
			return
		}
		if len(keys) == 0 || !bytes.HasPrefix(in, append(append([]byte{}, got...), keys...)) {
			t.Fatalf("detached after copying %q of %q (keys %q)", got, in, keys)
		}
	})
}

func FuzzParseDetachKeys(f *testing.F) {
	f.Add(DefaultDetachKeys)
	f.Add("ctrl-],x")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseDetachKeys(s)
		if err == nil && s != "" && len(keys) != strings.Count(s, ",")+1 {
			t.Fatalf("%q: %d keys", s, len(keys))
		}
	})
}
