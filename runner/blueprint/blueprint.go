// Package blueprint loads and validates blueprints: a directory holding
// blueprint.yaml, the sandbox policy it names and its presets.
//
// The format is a superset of NemoClaw's blueprint.yaml, so NemoClaw's files
// load unchanged; fields nemoclaw does not act on are kept and reported as
// findings, never silently ignored.
package blueprint

import (
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// FileName is the blueprint document inside a blueprint directory.
const FileName = "blueprint.yaml"

// PresetsDir is where a blueprint keeps its presets.
const PresetsDir = "policies/presets"

// PoliciesDir holds the blueprint's policy files.
const PoliciesDir = "policies"

// TiersFile is NemoClaw's policy tiers file: named bundles of presets.
const TiersFile = "policies/tiers.yaml"

// Blueprint is a loaded blueprint: the decoded blueprint.yaml plus what Load
// resolved from the directory (the effective policy, presets, findings).
type Blueprint struct {
	// Version is the blueprint's semver.
	Version string `yaml:"version" json:"version"`
	// MinRunnerVersion is the lowest nemoclaw that may apply it (enforced).
	MinRunnerVersion string `yaml:"min_runner_version,omitempty" json:"min_runner_version,omitempty"`
	// MinOpenShellVersion is NemoClaw's OpenShell gate (reported only).
	MinOpenShellVersion string `yaml:"min_openshell_version,omitempty" json:"min_openshell_version,omitempty"`
	// MaxOpenShellVersion is NemoClaw's OpenShell gate (reported only).
	MaxOpenShellVersion string `yaml:"max_openshell_version,omitempty" json:"max_openshell_version,omitempty"`
	// MinOpenClawVersion is NemoClaw's OpenClaw gate (reported only).
	MinOpenClawVersion string `yaml:"min_openclaw_version,omitempty" json:"min_openclaw_version,omitempty"`
	// Digest is NemoClaw's release digest (kept; the OCI digest is verified).
	Digest string `yaml:"digest,omitempty" json:"digest,omitempty"`
	// Profiles are the declared inference profile names.
	Profiles []string `yaml:"profiles,omitempty" json:"profiles,omitempty"`
	// DefaultProfile is used when no --profile is given (default: Profiles[0]).
	DefaultProfile string `yaml:"default_profile,omitempty" json:"default_profile,omitempty"`
	// Description says what the blueprint is for.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Presets are merged into the policy at apply, by name.
	Presets []string `yaml:"presets,omitempty" json:"presets,omitempty"`
	// OpenShellTarget is NemoClaw's externally managed OpenShell gateway
	// (kept and reported: nemoclaw runs its sandboxes itself).
	OpenShellTarget *OpenShellTarget `yaml:"openshell_target,omitempty" json:"openshell_target,omitempty"`
	// Components are the configured parts.
	Components Components `yaml:"components" json:"components"`

	// Dir is where the blueprint was loaded from ("embedded:default" for the
	// built-in one).
	Dir string `yaml:"-" json:"dir"`
	// Policy is the effective sandbox policy: base + additions + presets.
	Policy *policy.Policy `yaml:"-" json:"-"`
	// PolicyFile is the base policy file actually used.
	PolicyFile string `yaml:"-" json:"policy_file,omitempty"`
	// Available are the presets found under policies/presets, by name.
	Available map[string]*policy.Preset `yaml:"-" json:"-"`
	// OtherPolicies are the policy files under policies/ besides the base
	// (NemoClaw's permissive "shields down" policy): validated, not applied.
	OtherPolicies []string `yaml:"-" json:"other_policies,omitempty"`
	// Tiers are NemoClaw's policy tiers (policies/tiers.yaml), nil when the
	// blueprint has none: validated and reported, not applied.
	Tiers *policy.Tiers `yaml:"-" json:"tiers,omitempty"`
	// Findings are warnings and notes from loading: unenforced fields,
	// reported version gates, fallbacks.
	Findings policy.Problems `yaml:"-" json:"findings,omitempty"`
}

// Components are the parts a blueprint configures.
type Components struct {
	// Sandbox describes where and how the agent runs.
	Sandbox *Sandbox `yaml:"sandbox,omitempty" json:"sandbox,omitempty"`
	// Inference holds the inference profiles.
	Inference *Inference `yaml:"inference,omitempty" json:"inference,omitempty"`
	// Router is NemoClaw's model router (kept, not used).
	Router *Router `yaml:"router,omitempty" json:"router,omitempty"`
	// Policy names the base policy file and network additions.
	Policy *PolicyRef `yaml:"policy,omitempty" json:"policy,omitempty"`
	// GPU declares GPU needs for every profile.
	GPU *GPU `yaml:"gpu,omitempty" json:"gpu,omitempty"`
	// Identity is NemoClaw's runtime identity reference (kept, not used).
	Identity *RuntimeIdentity `yaml:"identity,omitempty" json:"identity,omitempty"`
}

// OpenShellTarget is NemoClaw's externally managed OpenShell gateway for
// target-only planning (kept and reported, not used).
type OpenShellTarget struct {
	Endpoint        string `yaml:"endpoint" json:"endpoint"`
	Workspace       string `yaml:"workspace" json:"workspace"`
	ExpectedRelease string `yaml:"expected_release" json:"expected_release"`
	Lifecycle       string `yaml:"lifecycle" json:"lifecycle"`
	Trust           *struct {
		CAFile string `yaml:"ca_file" json:"ca_file"`
	} `yaml:"trust" json:"trust"`
	Authentication *struct {
		CredentialFile string `yaml:"credential_file" json:"-"`
	} `yaml:"authentication" json:"-"`
}

// RuntimeIdentity is NemoClaw's provider-neutral runtime identity reference
// (kept, not used). It names environment variables, never secrets.
type RuntimeIdentity struct {
	ProfilePath     string `yaml:"profile_path" json:"profile_path"`
	ProviderType    string `yaml:"provider_type" json:"provider_type"`
	ProviderName    string `yaml:"provider_name" json:"provider_name"`
	CredentialKey   string `yaml:"credential_key" json:"credential_key"`
	ClientIDEnv     string `yaml:"client_id_env" json:"client_id_env"`
	RefreshTokenEnv string `yaml:"refresh_token_env" json:"refresh_token_env"`
	ClientSecretEnv string `yaml:"client_secret_env,omitempty" json:"client_secret_env,omitempty"`
}

// Sandbox is the sandbox component.
type Sandbox struct {
	// Image is NemoClaw's container image (kept and reported: nemoclaw runs
	// on the host root behind Landlock).
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// Name is the default sandbox name.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// ForwardPorts are ports served inside that the host should reach (kept).
	ForwardPorts []int `yaml:"forward_ports,omitempty" json:"forward_ports,omitempty"`
	// ResourceProfiles are NemoClaw's named sizes (kept).
	ResourceProfiles map[string]*ResourceProfile `yaml:"resource_profiles,omitempty" json:"resource_profiles,omitempty"`
	// Command is the agent command line.
	Command []string `yaml:"command,omitempty" json:"command,omitempty"`
	// Env is extra environment for the agent.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Workdir is the host directory used as /sandbox.
	Workdir string `yaml:"workdir,omitempty" json:"workdir,omitempty"`
}

// ResourceProfile is one NemoClaw resource size.
type ResourceProfile struct {
	CPU    string `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty"`
}

// Inference is the inference component.
type Inference struct {
	// Profiles are the inference routes by name.
	Profiles map[string]*InferenceProfile `yaml:"profiles,omitempty" json:"profiles,omitempty"`
}

// InferenceProfile is one route from inference.local to a real backend.
type InferenceProfile struct {
	ProviderType      string `yaml:"provider_type,omitempty" json:"provider_type,omitempty"`
	ProviderName      string `yaml:"provider_name,omitempty" json:"provider_name,omitempty"`
	Endpoint          string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
	Model             string `yaml:"model,omitempty" json:"model,omitempty"`
	CredentialEnv     string `yaml:"credential_env,omitempty" json:"credential_env,omitempty"`
	CredentialDefault string `yaml:"credential_default,omitempty" json:"-"`
	TimeoutSecs       int    `yaml:"timeout_secs,omitempty" json:"timeout_secs,omitempty"`
	DynamicEndpoint   bool   `yaml:"dynamic_endpoint,omitempty" json:"dynamic_endpoint,omitempty"`
	// Plugin is the backend plugin binary (default from ProviderType).
	Plugin string `yaml:"plugin,omitempty" json:"plugin,omitempty"`
	// PluginSHA256 pins the plugin binary's SHA-256, as the plugins lock
	// does; a binary with another checksum is refused.
	PluginSHA256 string `yaml:"sha256,omitempty" json:"sha256,omitempty"`
	// GPU declares this profile's GPU needs.
	GPU *GPU `yaml:"gpu,omitempty" json:"gpu,omitempty"`
	// Aliases are other model names the agent may ask inference.local for,
	// each mapped to a backend model ("" or null: Model). Any other name is
	// refused with 404.
	Aliases map[string]string `yaml:"aliases,omitempty" json:"aliases,omitempty"`
}

// Router is NemoClaw's model router config (kept, not used).
type Router struct {
	Enabled        bool   `yaml:"enabled,omitempty" json:"enabled,omitempty"`
	Port           int    `yaml:"port,omitempty" json:"port,omitempty"`
	PoolConfigPath string `yaml:"pool_config_path,omitempty" json:"pool_config_path,omitempty"`
}

// PolicyRef names the base policy and network additions.
type PolicyRef struct {
	// Base is the policy file, relative to the blueprint directory.
	Base string `yaml:"base,omitempty" json:"base,omitempty"`
	// Additions are network policies added to the base.
	Additions map[string]*policy.NetworkPolicy `yaml:"additions,omitempty" json:"additions,omitempty"`
}

// GPU is what a blueprint or profile needs from the host's GPUs. In
// components.gpu, Count or Devices (indexes, GPU-/MIG- UUIDs) also choose
// the GPUs passed into the sandbox; in a profile it is what the host must
// have for the profile's local model server (plan, --profile auto).
type GPU struct {
	Count                int      `yaml:"count,omitempty" json:"count,omitempty"`
	Devices              []string `yaml:"devices,omitempty" json:"devices,omitempty"`
	MinMemoryGiB         float64  `yaml:"min_memory_gib,omitempty" json:"min_memory_gib,omitempty"`
	MinComputeCapability string   `yaml:"min_compute_capability,omitempty" json:"min_compute_capability,omitempty"`
	Required             bool     `yaml:"required,omitempty" json:"required,omitempty"`
}

// Profile returns the named inference profile, or the default one for "".
func (b *Blueprint) Profile(name string) (string, *InferenceProfile, bool) {
	if name == "" {
		name = b.DefaultProfileName()
	}
	if b.Components.Inference == nil {
		return name, nil, false
	}
	p, ok := b.Components.Inference.Profiles[name]
	return name, p, ok
}

// DefaultProfileName is default_profile, else the first of profiles:, else
// the only inference profile; "" when several leave the choice open.
func (b *Blueprint) DefaultProfileName() string {
	if b.DefaultProfile != "" {
		return b.DefaultProfile
	}
	if len(b.Profiles) > 0 {
		return b.Profiles[0]
	}
	if b.Components.Inference != nil && len(b.Components.Inference.Profiles) == 1 {
		for name := range b.Components.Inference.Profiles {
			return name // the only one: nothing to choose
		}
	}
	return ""
}

// SandboxName is the blueprint's sandbox name, "agent" when unset.
func (b *Blueprint) SandboxName() string {
	if s := b.Components.Sandbox; s != nil && s.Name != "" {
		return s.Name
	}
	return "agent"
}
