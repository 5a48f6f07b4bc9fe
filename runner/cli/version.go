package cli

import (
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/version"
)

func init() {
	register(newVersionCmd)
}

func newVersionCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print nemoclaw's version, Go version and platform",
		Args:  argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			v := app.Version
			if v == "" {
				v = versionString()
			}
			printf(app.Out, "nemoclaw %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// versionString is runner/version's version, the one min_runner_version
// gates compare against. A build without -X …/runner/version.Build (a plain
// `go install`) takes its build metadata from the module version Go stamped.
func versionString() string {
	if version.Build == "" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return version.Version + "+" + semverMeta(bi.Main.Version)
		}
	}
	return version.String()
}

// semverMeta turns s into valid semver build metadata ([0-9A-Za-z-] in
// dot-separated parts).
func semverMeta(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
			b[i] = '-'
		}
	}
	return string(b)
}
