package cli

import (
	"runtime"

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
				v = version.String()
			}
			printf(app.Out, "nemoclaw %s (%s, %s/%s)\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
