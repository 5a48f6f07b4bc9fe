package inference

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends go-plugin's own log lines to the host's *slog.Logger.
//
// A plugin's stderr is not relayed through it: go-plugin parses each stderr
// line as hclog JSON with unchecked type assertions (a plugin printing
// {"@message": 1} would panic the host), so the children go-plugin names for
// that relay log nothing and stderrLog (ClientConfig.Stderr) relays the
// lines instead, parsed defensively.
type hclogAdapter struct {
	l     *slog.Logger
	name  string
	args  []any
	level hclog.Level
}

func newHclog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l, name: name, level: hclog.Debug}
}

var slogLevels = map[hclog.Level]slog.Level{
	hclog.Trace: slog.LevelDebug - 4, hclog.Debug: slog.LevelDebug, hclog.Info: slog.LevelInfo,
	hclog.Warn: slog.LevelWarn, hclog.Error: slog.LevelError,
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	lv, ok := slogLevels[level]
	if !ok {
		lv = slog.LevelInfo
	}
	if level < a.level || !a.l.Enabled(context.Background(), lv) {
		return
	}
	all := append(append([]any{"logger", a.name}, a.args...), args...)
	a.l.Log(context.Background(), lv, msg, all...)
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) IsTrace() bool                 { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool                 { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool                  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool                  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool                 { return a.enabled(hclog.Error) }
func (a *hclogAdapter) ImpliedArgs() []any            { return a.args }
func (a *hclogAdapter) Name() string                  { return a.name }
func (a *hclogAdapter) SetLevel(l hclog.Level)        { a.level = l }
func (a *hclogAdapter) GetLevel() hclog.Level         { return a.level }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return l >= a.level && a.l.Enabled(context.Background(), slogLevels[l])
}

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := *a
	c.args = append(append([]any(nil), a.args...), args...)
	return &c
}

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := *a
	c.level = hclog.Off // go-plugin names children only to relay stderr (and stdio, relayed by stderrLog too)
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *a
	c.name = name
	return &c
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slog.NewLogLogger(a.l.Handler(), slog.LevelInfo).Writer()
}

// stderrLog relays a plugin's output into the host's log, one record per
// line: hclog-style JSON lines ({"@level", "@message", …}, as sdk.Logger
// writes) keep their level, message and fields; anything else is logged as
// text at debug level. Lines are bounded (go-plugin's reader cuts at 64 KiB).
type stderrLog struct {
	log *slog.Logger
	buf []byte
}

const maxStderrLine = 64 << 10

func (s *stderrLog) Write(p []byte) (int, error) {
	for _, b := range p {
		if b == '\n' {
			s.emit()
			continue
		}
		if len(s.buf) < maxStderrLine {
			s.buf = append(s.buf, b)
		}
	}
	return len(p), nil
}

func (s *stderrLog) emit() {
	line := s.buf
	s.buf = s.buf[:0]
	if len(line) == 0 {
		return
	}
	var m map[string]any
	err := json.Unmarshal(line, &m)
	msg, okMsg := m["@message"].(string)
	lvl, okLvl := m["@level"].(string)
	if err != nil || !okMsg || !okLvl && m["@level"] != nil {
		s.log.Debug(string(line))
		return
	}
	level := slog.LevelInfo
	switch strings.ToLower(lvl) {
	case "trace", "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	attrs := make([]any, 0, 2*len(m))
	for k, v := range m {
		if strings.HasPrefix(k, "@") {
			continue
		}
		attrs = append(attrs, k, v)
	}
	s.log.Log(context.Background(), level, msg, attrs...)
}
