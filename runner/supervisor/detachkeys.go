package supervisor

import (
	"fmt"
	"io"
	"strings"
)

// DefaultDetachKeys is the key sequence that detaches `sandbox connect`
// and `exec -t` from their process, as docker's: ctrl-p ctrl-q.
const DefaultDetachKeys = "ctrl-p,ctrl-q"

// ParseDetachKeys parses a detach key sequence in docker's notation: keys
// separated by commas, each a single character or "ctrl-" and one of a-z,
// @, [, \, ], ^, _. "" is no sequence (detaching is off).
func ParseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	var keys []byte
	for _, k := range strings.Split(s, ",") {
		if name, ok := strings.CutPrefix(strings.ToLower(k), "ctrl-"); ok && len(k) > len("ctrl-") {
			if len(name) != 1 {
				return nil, fmt.Errorf("detach keys %q: %q: want ctrl- and one of a-z, @, [, \\, ], ^, _", s, k)
			}
			switch c := name[0]; {
			case c >= 'a' && c <= 'z':
				keys = append(keys, c-'a'+1)
			case strings.IndexByte("@[\\]^_", c) >= 0:
				keys = append(keys, c-'@')
			default:
				return nil, fmt.Errorf("detach keys %q: %q: want ctrl- and one of a-z, @, [, \\, ], ^, _", s, k)
			}
			continue
		}
		if len(k) != 1 || k[0] < 0x20 || k[0] > 0x7e {
			return nil, fmt.Errorf("detach keys %q: %q: want a printable character or ctrl-X, separated by commas (e.g. %s)", s, k, DefaultDetachKeys)
		}
		keys = append(keys, k[0])
	}
	return keys, nil
}

// CopyInput copies src to dst until src ends (detached false) or the key
// sequence keys is read (detached true; the sequence is not copied). Bytes
// that begin the sequence are held back until the sequence is either
// complete or broken, then passed on, as docker does.
func CopyInput(dst io.Writer, src io.Reader, keys []byte) (detached bool, err error) {
	buf := make([]byte, 4096)
	out := make([]byte, 0, 4096+len(keys))
	matched := 0
	for {
		n, rerr := src.Read(buf)
		out = out[:0]
		for _, b := range buf[:n] {
			if len(keys) > 0 && b == keys[matched] {
				matched++
				if matched == len(keys) {
					if len(out) > 0 {
						if _, err := dst.Write(out); err != nil {
							return false, err
						}
					}
					return true, nil
				}
				continue
			}
			if matched > 0 {
				// A broken sequence: what was held is passed on, and
				// this byte may begin the sequence afresh.
				out = append(out, keys[:matched]...)
				matched = 0
				if b == keys[0] {
					matched = 1
					continue
				}
			}
			out = append(out, b)
		}
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil {
				return false, err
			}
		}
		if rerr == io.EOF {
			if matched > 0 {
				_, err := dst.Write(keys[:matched])
				return false, err
			}
			return false, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}
