package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/state"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

func init() {
	register(newGPUCmd)
}

// gpuFlags are --gpus, --gpus-shared and --cdi-spec-dir.
type gpuFlags struct {
	spec    string
	shared  bool
	cdiDirs []string
}

// addGPUFlags adds --gpus and --gpus-shared to a command that starts a
// sandbox.
func addGPUFlags(f *pflag.FlagSet, g *gpuFlags) {
	f.StringVar(&g.spec, "gpus", "", "GPUs to pass into the sandbox: all, a count, or a list of indexes, GPU-/MIG- UUIDs or GPU:MIG pairs (device=1 for GPU 1 alone); nemoclaw gpu lists them")
	f.BoolVar(&g.shared, "gpus-shared", false, "allow GPUs another running sandbox holds")
	f.StringSliceVar(&g.cdiDirs, "cdi-spec-dir", nil, "directory of CDI specs for --gpus, repeatable (default: /etc/cdi and /var/run/cdi)")
}

// config is where the GPUs' files are: the real host, with --cdi-spec-dir.
func (g *gpuFlags) config() supervisor.GPUConfig {
	return supervisor.GPUConfig{Passthrough: gpu.PassthroughConfig{CDIDirs: g.cdiDirs}}
}

// request parses the flags; def is the blueprint's gpu: when --gpus is
// not given.
func (g *gpuFlags) request(def gpu.Request) (gpu.Request, error) {
	r := def
	if g.spec != "" {
		var err error
		if r, err = gpu.ParseRequest(g.spec); err != nil {
			return r, Usage(err)
		}
	}
	r.Shared = r.Shared || g.shared
	return r, nil
}

// gpuReport is `nemoclaw gpu -o json`.
type gpuReport struct {
	Driver    bool           `json:"driver"`
	Error     string         `json:"error,omitempty"`
	Inventory *gpu.Inventory `json:"inventory,omitempty"`
	CDI       gpu.CDIStatus  `json:"cdi"`
	// InUse maps device UUIDs to the running sandbox holding them.
	InUse map[string]string `json:"in_use,omitempty"`
}

func newGPUCmd(app *App) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "List this host's NVIDIA GPUs, their MIG devices, and which sandbox holds each",
		Long: `Gpu asks NVML for the driver and CUDA versions and, per GPU, its index, name,
UUID, total and free memory, compute capability, MIG mode and MIG devices.
It also says whether the NVIDIA Container Toolkit's CDI spec (/etc/cdi,
/var/run/cdi) is there and current, and which running sandbox holds which
device. Without a driver it says so and exits 0.`,
		Args: argsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "text", "json"); err != nil {
				return err
			}
			rep := gpuReport{}
			inv, err := gpu.Detect(gpu.Config{Logger: app.Logger})
			switch {
			case errors.Is(err, gpu.ErrNoDriver):
				rep.Error = err.Error()
			case err != nil:
				rep.Error = err.Error()
				rep.Driver = true
			default:
				rep.Driver, rep.Inventory = true, inv
			}
			rep.CDI = gpu.CheckCDI(nil, inv)
			claims := &gpu.Claims{Root: filepath.Join(app.Home, "sandboxes"), Alive: supervisor.ProcessAlive}
			rep.InUse, _ = claims.InUse("")
			if output == "json" {
				return writeJSON(app.Out, rep)
			}
			printGPUs(app, &rep)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// printGPUs renders the report for people.
func printGPUs(app *App, rep *gpuReport) {
	w := app.Out
	if !rep.Driver {
		printf(w, "%s.\nThis host cannot pass GPUs to sandboxes; blueprints whose profiles need a GPU use a cloud profile instead (nemoclaw blueprint plan --profile auto).\n", rep.Error)
		return
	}
	if rep.Inventory == nil {
		printf(w, "NVIDIA driver present, but NVML failed: %s\n", rep.Error)
		return
	}
	inv := rep.Inventory
	printf(w, "driver %s, CUDA %s, %d GPU(s)\n", inv.DriverVersion, inv.CUDAVersion, len(inv.Devices))
	for _, d := range inv.Devices {
		mig := "MIG off"
		if d.MIGEnabled {
			mig = fmt.Sprintf("MIG on (%d devices)", len(d.MIGDevices))
		}
		printf(w, "  %d  %-28s %s  %5.1f GiB (%5.1f free)  cc %s  %s%s\n", d.Index, d.Name, d.UUID,
			d.MemoryGiB(), float64(d.MemoryFreeBytes)/gpu.GiB, d.ComputeCapability, mig, heldBy(rep, d.UUID))
		for _, m := range d.MIGDevices {
			printf(w, "     %d:%d %-24s %s  %5.1f GiB%s\n", d.Index, m.Index, m.Name, m.UUID, float64(m.MemoryTotalBytes)/gpu.GiB, heldBy(rep, m.UUID))
		}
	}
	printCDI(w, rep.CDI)
}

func heldBy(rep *gpuReport, uuid string) string {
	if s, ok := rep.InUse[uuid]; ok {
		return "  [in use by " + s + "]"
	}
	return ""
}

func printCDI(w interface{ Write([]byte) (int, error) }, st gpu.CDIStatus) {
	switch {
	case len(st.Files) == 0:
		printf(w, "CDI spec: none in /etc/cdi or /var/run/cdi; passthrough is planned from NVML and /dev (sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml makes one)\n")
	case st.Current:
		printf(w, "CDI spec: %s (current)\n", strings.Join(st.Files, ", "))
	default:
		printf(w, "CDI spec: %s (NOT current: %s)\n", strings.Join(st.Files, ", "), strings.Join(st.Problems, "; "))
	}
}

// gpuChecks are doctor's GPU lines: the driver and GPUs, the CDI spec,
// the device nodes.
func gpuChecks(app *App) []state.Check {
	inv, err := gpu.Detect(gpu.Config{Logger: app.Logger})
	switch {
	case errors.Is(err, gpu.ErrNoDriver):
		return []state.Check{{Name: "nvml", OK: false, Detail: "no NVIDIA driver found (libnvidia-ml.so.1 could not be loaded): blueprints that need GPUs cannot get them and --profile auto picks a cloud profile; everything else works"}}
	case err != nil:
		return []state.Check{{Name: "nvml", OK: false, Detail: fmt.Sprintf("NVML error: %v; GPU passthrough is unavailable", err)}}
	}
	detail := fmt.Sprintf("driver %s, CUDA %s, %d GPU(s)", inv.DriverVersion, inv.CUDAVersion, len(inv.Devices))
	for _, d := range inv.Devices {
		detail += fmt.Sprintf("; #%d %s %.0f GiB cc %s", d.Index, d.Name, d.MemoryGiB(), d.ComputeCapability)
		if d.MIGEnabled {
			detail += fmt.Sprintf(" MIG(%d)", len(d.MIGDevices))
		}
	}
	checks := []state.Check{{Name: "nvml", OK: true, Detail: detail}}
	st := gpu.CheckCDI(nil, inv)
	cdi := state.Check{Name: "gpu: CDI spec", OK: st.Current}
	switch {
	case len(st.Files) == 0:
		cdi.Detail = "none in /etc/cdi or /var/run/cdi: passthrough is planned from NVML and /dev; `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` makes one"
	case st.Current:
		cdi.Detail = strings.Join(st.Files, ", ") + " is current"
	default:
		cdi.Detail = strings.Join(st.Files, ", ") + " is stale: " + strings.Join(st.Problems, "; ")
	}
	checks = append(checks, cdi)
	var missing []string
	nodes := []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools"}
	for _, d := range inv.Devices {
		nodes = append(nodes, fmt.Sprintf("/dev/nvidia%d", d.Minor))
	}
	for _, n := range nodes {
		if fi, err := os.Stat(n); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			missing = append(missing, n)
		}
	}
	dn := state.Check{Name: "gpu: device nodes", OK: len(missing) == 0, Detail: strings.Join(nodes, " ") + " present"}
	if len(missing) > 0 {
		dn.Detail = "missing " + strings.Join(missing, " ") + ": CUDA cannot start in a sandbox until they exist (sudo nvidia-modprobe -u -c=0, or load nvidia-uvm)"
	}
	return append(checks, dn)
}

// blueprintGPUs is the blueprint's components.gpu as a request; on a host
// without GPUs (detectErr) one that is not required is dropped with a
// warning (a required one was refused by the plan).
func blueprintGPUs(b *blueprint.Blueprint, detectErr error, app *App) gpu.Request {
	g := b.Components.GPU
	if g == nil {
		return gpu.Request{}
	}
	if detectErr != nil && !g.Required {
		app.Logger.Warn("blueprint asks for GPUs but this host has none usable: running without", "err", detectErr)
		return gpu.Request{}
	}
	return gpu.Request{Count: g.Count, Devices: g.Devices}
}

// printProfiles lists which profiles this host can run.
func printProfiles(w interface{ Write([]byte) (int, error) }, p *state.Plan) {
	if len(p.Profiles) == 0 {
		return
	}
	printf(w, "profiles   (what this host can run)\n")
	for _, pp := range p.Profiles {
		mark, where := "  ", "cloud"
		if pp.Chosen {
			mark = "=>"
		}
		if pp.Local {
			where = "local"
		}
		fits := "fits"
		if !pp.Fits {
			fits = "does not fit"
		}
		printf(w, "  %s %-10s %-5s %-12s %s\n", mark, pp.Name, where, fits, pp.Why)
	}
	if p.AutoWhy != "" {
		printf(w, "  auto chose %s: %s\n", profileName(p), p.AutoWhy)
	}
}
