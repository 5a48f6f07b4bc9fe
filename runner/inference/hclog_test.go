package inference

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestStderrLog(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"@level":"warn","@message":"slow backend","@timestamp":"x","ms":12}` + "\n", `level=WARN msg="slow backend" ms=12`},
		{`{"@level":"error","@message":"down"}` + "\n", `level=ERROR msg=down`},
		{`{"@message":"no level"}` + "\n", `level=INFO msg="no level"`},
		{"plain text\n", `level=DEBUG msg="plain text"`},
		{`{"@message": 1}` + "\n", `level=DEBUG msg="{\"@message\": 1}"`},
		{`{"@message":"m","@level":7}` + "\n", `level=DEBUG msg="{\"@message\":\"m\",\"@level\":7}"`},
		{"", ""},
		{"no newline yet", ""},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		s := &stderrLog{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: dropTime}))}
		s.Write([]byte(tc.in))
		if got := strings.TrimSpace(out.String()); got != tc.want {
			t.Errorf("%q logged %q, want %q", tc.in, got, tc.want)
		}
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// FuzzStderrLog: whatever a plugin prints, the relay neither panics nor
// logs more records than lines nor keeps more than one bounded line.
func FuzzStderrLog(f *testing.F) {
	for _, s := range []string{`{"@message":"m","@level":"info"}` + "\n", `{"@message":1}` + "\n", "a\nb\n", `{"@level":null,"@message":"x","k":{"n":[1]}}` + "\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		s := &stderrLog{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))}
		s.Write(in)
		if n, lines := bytes.Count(out.Bytes(), []byte("\n")), bytes.Count(in, []byte("\n")); n > lines {
			t.Fatalf("%d records from %d lines", n, lines)
		}
		if len(s.buf) > maxStderrLine {
			t.Fatalf("held %d bytes", len(s.buf))
		}
	})
}
