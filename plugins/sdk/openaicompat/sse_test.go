package openaicompat

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestEventScanner(t *testing.T) {
	tests := []struct {
		name, in string
		max      int
		want     []string
		wantErr  error
	}{
		{"one event", "data: {}\n\n", 64, []string{"{}"}, nil},
		{"no space after colon", "data:{}\n\n", 64, []string{"{}"}, nil},
		{"multi-line data", "data: a\ndata: b\n\n", 64, []string{"a\nb"}, nil},
		{"crlf", "data: a\r\n\r\ndata: b\r\n\r\n", 64, []string{"a", "b"}, nil},
		{"comments and fields", ": ping\nevent: x\nid: 3\nretry: 10\ndata: a\n\n", 64, []string{"a"}, nil},
		{"blank lines only", "\n\n\n", 64, nil, nil},
		{"event without data", "event: x\n\n", 64, nil, nil},
		{"open event at end", "data: a\n\ndata: b", 64, []string{"a", "b"}, nil},
		{"line too long", "data: " + strings.Repeat("x", 100) + "\n\n", 32, nil, ErrEventTooLong},
		{"event too long over lines", strings.Repeat("data: xxxxxxxxxx\n", 10) + "\n", 32, nil, ErrEventTooLong},
		{"field named like data", "database: a\n\n", 64, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := NewEventScanner(strings.NewReader(tc.in), tc.max)
			var got []string
			for sc.Scan() {
				got = append(got, string(sc.Data()))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
			if !errors.Is(sc.Err(), tc.wantErr) {
				t.Errorf("err = %v, want %v", sc.Err(), tc.wantErr)
			}
		})
	}
}

// FuzzEventScanner: any input ends in events no larger than the limit and
// an error or a clean end, never a panic or an unbounded event.
func FuzzEventScanner(f *testing.F) {
	for _, s := range []string{"data: {}\n\n", "data: a\ndata: b\n\n", ": c\n\ndata:[DONE]\r\n\r\n", "data", "\r\r\n\n", "data: " + strings.Repeat("x", 80)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		const max = 64
		sc := NewEventScanner(strings.NewReader(in), max)
		for sc.Scan() {
			if len(sc.Data()) > max {
				t.Fatalf("event of %d bytes over the %d limit", len(sc.Data()), max)
			}
		}
		if err := sc.Err(); err != nil && !errors.Is(err, ErrEventTooLong) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// FuzzInspect: a backend's chunk never panics the usage and error
// extraction, and what it accepts is JSON.
func FuzzInspect(f *testing.F) {
	for _, s := range []string{`{"usage":{"prompt_tokens":1}}`, `{"error":{"message":"x"}}`, `{"object":"error","message":"m"}`, `{"response":{"usage":null}}`, `[`, `"usage"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		u, err := inspect(data)
		if err == nil && !json.Valid(data) {
			t.Fatalf("inspect accepted non-JSON %q", data)
		}
		if u != nil && u.TotalTokens == 0 && u.PromptTokens+u.CompletionTokens != 0 {
			t.Fatalf("usage %+v has no total", u)
		}
	})
}
