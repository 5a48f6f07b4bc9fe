package sdk

import (
	"log/slog"
	"os"
	"strings"
)

// stderr is the process's standard error as it was at start: go-plugin's
// Serve points os.Stderr elsewhere (a stream the host may discard), while
// file descriptor 2 is what the host reads log lines from.
var stderr = os.Stderr

// Logger returns a logger for a plugin's own messages: JSON lines on
// standard error in the shape the host reads ("@level", "@message", then the
// fields), which nemoclaw relays into its log tagged with the plugin's
// name. Never log the credential or request bodies (prompts).
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				a.Key = "@message"
			case slog.TimeKey:
				a.Key = "@timestamp"
			}
			return a
		},
	}))
}
