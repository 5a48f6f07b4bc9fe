package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/plugins/sdk"
	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/inference"
	"github.com/nemoclaw/nemoclaw/runner/state"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
	"github.com/nemoclaw/nemoclaw/runner/version"
)

func init() { register(newInferenceCmd) }

// inferenceProvider returns the plugin host for routes, a function that
// stops it, and, when there is none, the reason.
func inferenceProvider(app *App, routes []inference.Route) (inference.Provider, func() error, string) {
	ctor := app.InferenceHost
	if ctor == nil {
		ctor = pluginHost
	}
	p, stop, err := ctor(app, inference.Pins(routes))
	if err != nil {
		return nil, func() error { return nil }, fmt.Sprintf("the inference plugin host did not start: %v", err)
	}
	return p, stop, ""
}

// pluginHost starts the plugin host: plugins from $NEMOCLAW_HOME/plugins
// and next to nemoclaw (those built with it are pinned by the build).
func pluginHost(app *App, pins map[string]string) (inference.Provider, func() error, error) {
	h, err := inference.NewHost(inference.HostConfig{
		Home: app.Home, ExecutableDir: executableDir(), Pins: pins,
		BundledPins: version.BundledPluginPins(), Logger: app.Logger,
	})
	if err != nil {
		return nil, nil, err
	}
	return h, h.Close, nil
}

func newInferenceCmd(app *App) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inference",
		Short: "Inference routes: switch a running sandbox's route, list a profile's models, test a profile",
		Long: `Every sandbox reaches its model at inference.local (OpenAI-compatible, and
Anthropic's /v1/messages), served by its supervisor: the agent never holds the
backend's key. A blueprint's inference profiles are the sandbox's routes; these
commands switch between them, list what a profile serves and try one.`,
		Args: noArgs,
		RunE: groupHelp,
	}
	cmd.AddCommand(newInferenceSetCmd(app), newInferenceModelsCmd(app), newInferenceTestCmd(app), newInferencePluginsCmd(app))
	return cmd
}

func newInferenceSetCmd(app *App) *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "set NAME --profile P",
		Short: "Switch a running sandbox's inference route to another of its profiles",
		Long: `Set switches sandbox NAME's inference.local to profile P of its blueprint, live:
calls in flight finish on the old route, the next call and GET /v1/models use
the new one. Other sandboxes are not touched.`,
		Example: `  nemoclaw inference set agent --profile ollama`,
		Args:    argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if profile == "" {
				return Usage(errors.New("set needs --profile P (one of the sandbox blueprint's inference profiles)"))
			}
			info, err := supervisor.NewClient(app.Home, args[0]).SetInference(cmd.Context(), profile)
			if err != nil {
				return fmt.Errorf("inference set %s: %w", args[0], err)
			}
			printf(app.Out, "sandbox %s: inference.local -> profile %s (plugin %s, model %s)\n", args[0], info.Profile, info.Plugin, info.Model)
			return nil
		},
	}
	cmd.Flags().StringVarP(&profile, "profile", "p", "", "the profile to switch to")
	return cmd
}

// inferenceRoute resolves the profile of the blueprint named by args.
func inferenceRoute(args []string, profile string) (*blueprint.Blueprint, inference.Route, *blueprint.InferenceProfile, error) {
	b, err := loadBlueprintArg(args)
	if err != nil {
		return nil, inference.Route{}, nil, err
	}
	name, p, ok := b.Profile(profile)
	if !ok || p == nil {
		var have []string
		if b.Components.Inference != nil {
			for k := range b.Components.Inference.Profiles {
				have = append(have, k)
			}
		}
		sort.Strings(have)
		return nil, inference.Route{}, nil, Usage(fmt.Errorf("blueprint %s has no inference profile %q; its profiles: %s", b.Dir, name, strings.Join(have, ", ")))
	}
	return b, inference.RouteOf(name, p, os.LookupEnv), p, nil
}

// routeBackend starts the plugin host and returns the route's backend.
func routeBackend(ctx context.Context, app *App, r inference.Route, p *blueprint.InferenceProfile) (sdk.Backend, sdk.Description, func() error, error) {
	if env := inference.MissingCredential(p, os.LookupEnv); env != "" {
		return nil, sdk.Description{}, nil, fmt.Errorf("profile %s needs the API key in %s, which is not set on the host: export it (the agent never sees it)", r.Profile, env)
	}
	prov, stop, why := inferenceProvider(app, []inference.Route{r})
	if prov == nil {
		return nil, sdk.Description{}, nil, fmt.Errorf("profile %s: %s", r.Profile, why)
	}
	rt, err := inference.NewRouter(inference.RouterConfig{Routes: []inference.Route{r}, Active: r.Profile, Provider: prov, Logger: app.Logger})
	if err != nil {
		_ = stop()
		return nil, sdk.Description{}, nil, err
	}
	_, b, d, err := rt.Backend(ctx)
	if err != nil {
		_ = stop()
		return nil, sdk.Description{}, nil, err
	}
	return b, d, stop, nil
}

func newInferenceModelsCmd(app *App) *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "models [DIR] [--profile P]",
		Short: "List what a profile serves at inference.local and the models its backend has",
		Example: `  nemoclaw inference models
  nemoclaw inference models ./my-blueprint --profile ollama`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, r, p, err := inferenceRoute(args, profile)
			if err != nil {
				return err
			}
			printf(app.Out, "profile %s (plugin %s): inference.local serves\n  %s\n", r.Profile, r.Plugin, orDash(r.Config.Model))
			aliases := make([]string, 0, len(r.Aliases))
			for a := range r.Aliases {
				aliases = append(aliases, a)
			}
			sort.Strings(aliases)
			for _, a := range aliases {
				to := r.Aliases[a]
				if to == "" {
					to = r.Config.Model
				}
				printf(app.Out, "  %s -> %s (alias)\n", a, to)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			b, _, stop, err := routeBackend(ctx, app, r, p)
			if err != nil {
				return fmt.Errorf("inference models: %w", err)
			}
			defer func() { _ = stop() }()
			ms, err := b.ListModels(ctx)
			if err != nil {
				return fmt.Errorf("inference models: backend %s at %s: %w", r.Plugin, orDash(r.Config.Endpoint), err)
			}
			printf(app.Out, "backend %s at %s has %d model(s)\n", r.Plugin, orDash(r.Config.Endpoint), len(ms))
			for _, m := range ms {
				printf(app.Out, "  %s\n", m.ID)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&profile, "profile", "p", "", "inference profile (default: the blueprint's default)")
	return cmd
}

func newInferenceTestCmd(app *App) *cobra.Command {
	var profile, prompt string
	cmd := &cobra.Command{
		Use:   "test [DIR] [--profile P]",
		Short: "Send one small chat request through a profile: latency and first tokens",
		Long: `Test sends one short streamed chat request to the profile's backend, as the
router would for an agent's call, and prints the time to the first chunk, the
total time and the first tokens. It exits non-zero when the credential is
missing, the plugin cannot start or the backend does not answer.`,
		Example: `  nemoclaw inference test
  nemoclaw inference test ./my-blueprint --profile ollama`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, r, p, err := inferenceRoute(args, profile)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			b, d, stop, err := routeBackend(ctx, app, r, p)
			if err != nil {
				return fmt.Errorf("inference test: %w", err)
			}
			defer func() { _ = stop() }()
			res, err := inference.Probe(ctx, b, d, r.Config.Model, prompt)
			if err != nil {
				return fmt.Errorf("inference test: profile %s (plugin %s, %s): %w", r.Profile, r.Plugin, orDash(r.Config.Endpoint), err)
			}
			printf(app.Out, "profile %s: plugin %s %s, model %s\n", r.Profile, d.Name, d.Version, r.Config.Model)
			printf(app.Out, "  first chunk after %s, done after %s (%d chunk(s))\n", res.TTFB.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Chunks)
			printf(app.Out, "  answer: %q\n", res.Text)
			return nil
		},
	}
	cmd.Flags().StringVarP(&profile, "profile", "p", "", "inference profile (default: the blueprint's default)")
	cmd.Flags().StringVar(&prompt, "prompt", "Say hello in five words.", "the prompt to send")
	return cmd
}

// applyInference is the sandbox's routes from blueprint b (the profile
// plan chose in force), after saying plainly what will not work.
func applyInference(app *App, b *blueprint.Blueprint, plan *state.Plan) *supervisor.InferenceConfig {
	profile := ""
	if plan.Inference != nil {
		profile = plan.Inference.Profile
	}
	return sayMissingKey(app, supervisor.NewInferenceConfig(inference.Routes(b, os.LookupEnv), profile, os.LookupEnv))
}

// restartInference gives a started sandbox the routes its launch record
// kept (without keys), keyed again from this process's environment.
func restartInference(app *App, li *supervisor.LaunchInference) *supervisor.InferenceConfig {
	if li == nil {
		return nil
	}
	return sayMissingKey(app, supervisor.NewInferenceConfig(li.Routes, li.Profile, os.LookupEnv))
}

// sayMissingKey prints the active route's missing key, if any.
func sayMissingKey(app *App, ic *supervisor.InferenceConfig) *supervisor.InferenceConfig {
	if ic != nil && ic.MissingCredential != "" {
		printf(app.Err, "nemoclaw: inference profile %s: %s is not set on the host: the agent's calls to inference.local will fail until you export it and start the sandbox again (the agent never sees it)\n", ic.Profile, ic.MissingCredential)
	}
	return ic
}

// startInference starts the plugin host for a sandbox's routes and checks
// the active route's backend, saying plainly when it is down. It returns
// the host's stop.
func startInference(app *App, ic *supervisor.InferenceConfig) func() error {
	prov, stop, why := inferenceProvider(app, ic.Routes)
	ic.Provider, ic.Unavailable = prov, why
	if prov == nil {
		printf(app.Err, "nemoclaw: inference.local will answer 503: %s\n", why)
		return stop
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ic.CheckActive(ctx); err != nil {
		printf(app.Err, "nemoclaw: inference profile %s: %v: it is down (calls will fail with 502/503 until it answers; check it with `nemoclaw inference test`)\n", ic.Profile, err)
	}
	return stop
}

// planBackendLine says whether the planned profile's backend answers, for
// `blueprint plan` ("" when there is nothing to check).
func planBackendLine(ctx context.Context, app *App, b *blueprint.Blueprint, plan *state.Plan) string {
	if plan.Inference == nil {
		return ""
	}
	_, p, ok := b.Profile(plan.Inference.Profile)
	if !ok || p == nil {
		return ""
	}
	if env := inference.MissingCredential(p, os.LookupEnv); env != "" {
		return fmt.Sprintf("not checked: %s is not set on the host", env)
	}
	r := inference.RouteOf(plan.Inference.Profile, p, os.LookupEnv)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	be, _, stop, err := routeBackend(ctx, app, r, p)
	if err == nil {
		defer func() { _ = stop() }()
		err = be.Health(ctx)
	}
	if err != nil {
		return fmt.Sprintf("DOWN: %v (the agent's calls will fail until it answers)", err)
	}
	return "up"
}
