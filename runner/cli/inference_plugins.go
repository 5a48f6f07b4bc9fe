package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/version"
)

// pluginListing is one row of `inference plugins` (and its JSON).
type pluginListing struct {
	Name         string   `json:"name"`
	Version      string   `json:"version,omitempty"`
	Path         string   `json:"path"`
	SHA256       string   `json:"sha256,omitempty"`
	Pin          string   `json:"pinned_by,omitempty"`
	Trusted      bool     `json:"trusted"`
	Capabilities []string `json:"capabilities,omitempty"`
	Problem      string   `json:"problem,omitempty"`
}

// executableDir is the directory of the running nemoclaw, where the
// bundled plugins are installed next to it.
func executableDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Dir(exe)
}

func newInferencePluginsCmd(app *App) *cobra.Command {
	var dirs []string
	var trust []string
	var output string
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "List the inference backend plugins found, their checksums and whether they are trusted",
		Long: `Plugins lists the inference backend plugins (executables named nemoclaw-inference-NAME)
found in the --plugin-dir directories, $NEMOCLAW_HOME/plugins and the directory of nemoclaw
itself, in that order. A plugin runs only when its SHA-256 is pinned, in $NEMOCLAW_HOME/plugins.lock
(written by --trust NAME) or by a blueprint profile's sha256, and only from a directory and file
that nobody but its owner (root or you) can write. Trusted plugins are started once to report
their version and capabilities.`,
		Example: `  nemoclaw inference plugins
  nemoclaw inference plugins --plugin-dir ./bin --trust echo`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			h, err := inference.NewHost(inference.HostConfig{Home: app.Home, Dirs: dirs, ExecutableDir: executableDir(), BundledPins: version.BundledPluginPins(), Logger: app.Logger, HealthInterval: -1})
			if err != nil {
				return err
			}
			defer h.Close()
			for _, name := range trust {
				p, err := h.Trust(name)
				if err != nil {
					return Refused(err)
				}
				printf(app.Err, "trusted %s: sha256 %s (%s)\n", p.Name, p.SHA256, p.Path)
			}
			rows, err := listPlugins(cmd.Context(), h)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(app.Out, rows)
			}
			return printPlugins(app, rows)
		},
	}
	cmd.Flags().StringArrayVar(&dirs, "plugin-dir", nil, "also search this directory for plugins, before the others (repeatable)")
	cmd.Flags().StringArrayVar(&trust, "trust", nil, "pin the named plugin at its current checksum in $NEMOCLAW_HOME/plugins.lock (repeatable)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func listPlugins(ctx context.Context, h *inference.Host) ([]pluginListing, error) {
	ps, err := h.Plugins()
	if err != nil {
		return nil, err
	}
	rows := make([]pluginListing, 0, len(ps))
	for _, p := range ps {
		r := pluginListing{Name: p.Name, Path: p.Path, SHA256: p.SHA256, Pin: p.PinSource, Trusted: p.Trusted()}
		if p.Refused != nil {
			r.Problem = p.Refused.Error()
		} else if d, err := h.Describe(ctx, p.Name); err != nil {
			r.Problem = fmt.Sprintf("describe: %v", err)
		} else {
			r.Version = d.Version
			for _, c := range d.Capabilities {
				r.Capabilities = append(r.Capabilities, string(c))
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func printPlugins(app *App, rows []pluginListing) error {
	if len(rows) == 0 {
		printf(app.Out, "no inference plugins found (binaries named %sNAME in --plugin-dir, $NEMOCLAW_HOME/plugins or next to nemoclaw)\n", inference.BinaryPrefix)
		return nil
	}
	tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tTRUSTED\tSHA256\tCAPABILITIES\tPATH")
	var problems []string
	for _, r := range rows {
		trusted, sum := "no", r.SHA256
		if r.Trusted {
			trusted = "yes"
		}
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, dash(r.Version), trusted, dash(sum), dash(strings.Join(r.Capabilities, ",")), r.Path)
		if r.Problem != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", r.Name, r.Problem))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print plugins: %w", err)
	}
	for _, p := range problems {
		printf(app.Out, "\n%s", p)
	}
	if len(problems) > 0 {
		printf(app.Out, "\n")
	}
	return nil
}
