package distcli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/blueprints"
	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	"github.com/nemoclaw/nemoclaw/runner/kubernetes"
)

// `blueprint render` lives in nemoclaw-dist: the Kubernetes API types
// (k8s.io/api, apimachinery, agent-sandbox) are tens of packages whose
// initialisation the nemoclaw that starts sandboxes must not pay.

func newBlueprintRenderCmd(app *cli.App) *cobra.Command {
	var cfg kubernetes.Config
	var target, output, seccompOut string
	var warmPool int32
	var src *cli.SourceFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintRender.Use,
		Short: commands.BlueprintRender.Short,
		Long: `Render resolves the blueprint as apply does (the embedded default without an
argument, a local directory, or a registry reference fetched and
signature-verified) and prints the kubernetes-sigs/agent-sandbox objects that
run it on a cluster: a ConfigMap with the blueprint's files, a NetworkPolicy
that lets the pod reach only what the blueprint's policy and inference route
need, a SandboxTemplate whose pod runs nemoclaw as the supervisor with the
agent in its sandbox, and a Sandbox — or, with --warm-pool, a SandboxWarmPool
and a SandboxClaim. The blueprint's digest and signer are pinned in
annotations; credentials are Secret references, never values.

The YAML starts with what the cluster will enforce and what it cannot (the
Pod Security level, the ports a NetworkPolicy cannot narrow to host names,
what a --runtime-class drops). Under gVisor, which has no Landlock, a
hard_requirement blueprint is refused (exit 3). See docs/kubernetes.md.`,
		Example: `  nemoclaw blueprint render --target kubernetes --image registry.example.com/agents/coder:1.0 > sandbox.yaml
  nemoclaw blueprint render ./my-blueprint --target kubernetes --namespace agents --warm-pool 3 --image IMG
  nemoclaw blueprint render registry.example.com/bp/coder --version "~> 1.2" --target kubernetes --runtime-class kata --image IMG -o json
  nemoclaw blueprint render --target kubernetes --write-seccomp-profile supervisor.json`,
		Args: cli.ArgsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if seccompOut != "" {
				if err := os.WriteFile(seccompOut, kubernetes.SeccompProfileJSON, 0o644); err != nil {
					return fmt.Errorf("write seccomp profile: %w", err)
				}
				if len(args) == 0 && !cmd.Flags().Changed("image") {
					return nil // only the profile was asked for
				}
			}
			if target != "kubernetes" {
				return cli.Usage(fmt.Errorf("--target %q: the only target is kubernetes", target))
			}
			if err := cli.CheckOutput(output, kubernetes.FormatYAML, kubernetes.FormatJSON); err != nil {
				return err
			}
			if cmd.Flags().Changed("warm-pool") {
				if warmPool < 0 {
					return cli.Usage(fmt.Errorf("--warm-pool %d: want 0 or more replicas", warmPool))
				}
				cfg.WarmPool = &warmPool
			}
			b, err := cli.ResolveBlueprint(cmd, app, src, args)
			if err != nil {
				return err
			}
			cfg.Blueprint, cfg.Signer, cfg.ManifestDigest, cfg.Logger = b, src.Signer, src.Digest, app.Logger
			cfg.Source = b.Dir
			if len(args) > 0 {
				cfg.Source = args[0]
			}
			if b.Dir == blueprint.EmbeddedDefault {
				if cfg.Files, err = fs.Sub(blueprints.FS, blueprints.DefaultDir); err != nil {
					return err
				}
			} else {
				cfg.Files = os.DirFS(b.Dir)
			}
			r, err := kubernetes.Render(cfg)
			if err != nil {
				if re := (*kubernetes.RefusalError)(nil); errors.As(err, &re) {
					return cli.Refused(err)
				}
				return cli.Usage(err)
			}
			return kubernetes.Write(app.Out, r, output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "what to render for: kubernetes (required)")
	f.StringVar(&cfg.Namespace, "namespace", "default", "namespace of the objects")
	f.StringVar(&cfg.Name, "name", "", "name of the objects (default: the blueprint's components.sandbox.name)")
	f.StringVar(&cfg.Image, "image", "", "image with nemoclaw and the agent's tools (default: the blueprint's components.sandbox.image)")
	f.Int32Var(&warmPool, "warm-pool", 0, "render a SandboxWarmPool of this many sandboxes and a SandboxClaim instead of a Sandbox")
	f.StringVar(&cfg.RuntimeClass, "runtime-class", "", "the pod's runtimeClassName, e.g. gvisor or kata (default: the node's runtime)")
	f.StringVarP(&cfg.Profile, "profile", "p", "", "inference profile (default: the blueprint's default)")
	f.StringVar(&cfg.SecretName, "secret", "", "Secret holding the credentials (default: NAME-credentials)")
	f.StringVarP(&output, "output", "o", kubernetes.FormatYAML, "output format: yaml or json")
	f.StringVar(&seccompOut, "write-seccomp-profile", "", "also write the pod's Localhost seccomp profile to this file (install it on the nodes as /var/lib/kubelet/seccomp/"+kubernetes.SeccompProfile+")")
	src = cli.AddSourceFlags(cmd)
	return cmd
}
