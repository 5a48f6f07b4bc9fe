// Package state holds what nemoclaw knows about applying a blueprint: the
// plan (what apply would do, decided before anything runs) and, as apply
// grows, run records under $NEMOCLAW_HOME/state.
package state

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/gpu"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// Check is one preflight finding about the host (kernel features, GPUs).
type Check struct {
	// Name is the feature, e.g. "landlock".
	Name string `json:"name"`
	// OK says whether the feature is there.
	OK bool `json:"ok"`
	// Detail says what was found, and what is lost without it.
	Detail string `json:"detail"`
	// Fatal makes plan refuse (e.g. hard_requirement Landlock missing).
	Fatal bool `json:"fatal,omitempty"`
}

// PlanOptions are the choices and host facts a plan is made from.
type PlanOptions struct {
	// Profile is the inference profile; "" for the blueprint's default.
	Profile string
	// Home is $NEMOCLAW_HOME, for the default workspace path.
	Home string
	// Name overrides the sandbox name.
	Name string
	// Preflight are the host checks gathered by the caller.
	Preflight []Check
	// Getenv looks up credentials' presence (never their values);
	// os.Getenv when nil.
	Getenv func(string) string
	// GPUs and GPUErr are gpu.Detect's answer, for the profiles' GPU
	// needs and --profile auto (gpu.go).
	GPUs   *gpu.Inventory
	GPUErr error
}

// Plan is what `blueprint apply` would do, computed without side effects.
type Plan struct {
	Blueprint PlanBlueprint   `json:"blueprint"`
	Sandbox   PlanSandbox     `json:"sandbox"`
	Policy    PlanPolicy      `json:"policy"`
	Inference *PlanInference  `json:"inference,omitempty"`
	GPU       *blueprint.GPU  `json:"gpu,omitempty"`
	Findings  policy.Problems `json:"findings,omitempty"`
	Preflight []Check         `json:"preflight,omitempty"`
	// Refusals are the reasons apply would refuse; empty when it would run.
	Refusals []string `json:"refusals,omitempty"`
	// Profiles say which inference profiles this host can run; AutoWhy
	// why --profile auto chose the one it did.
	Profiles []PlanProfile `json:"profiles,omitempty"`
	AutoWhy  string        `json:"auto_why,omitempty"`
}

// PlanBlueprint identifies the blueprint.
type PlanBlueprint struct {
	Dir         string `json:"dir"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// PlanSandbox is the sandbox that would start.
type PlanSandbox struct {
	Name      string   `json:"name"`
	Command   []string `json:"command"`
	Workspace string   `json:"workspace"`
	EnvKeys   []string `json:"env_keys,omitempty"`
}

// PlanPolicy summarises the effective policy.
type PlanPolicy struct {
	File      string             `json:"file,omitempty"`
	Landlock  string             `json:"landlock"`
	RunAs     string             `json:"run_as"`
	ReadOnly  []string           `json:"read_only"`
	ReadWrite []string           `json:"read_write"`
	Resources *policy.Resources  `json:"resources,omitempty"`
	Network   []PlanNetworkGroup `json:"network"`
}

// PlanNetworkGroup is one network policy in short form.
type PlanNetworkGroup struct {
	Key       string   `json:"key"`
	Endpoints []string `json:"endpoints"`
	Binaries  []string `json:"binaries,omitempty"`
}

// PlanInference is the chosen inference route.
type PlanInference struct {
	Profile           string `json:"profile"`
	ProviderType      string `json:"provider_type"`
	ProviderName      string `json:"provider_name,omitempty"`
	Endpoint          string `json:"endpoint"`
	Model             string `json:"model,omitempty"`
	Plugin            string `json:"plugin"`
	CredentialEnv     string `json:"credential_env,omitempty"`
	CredentialPresent bool   `json:"credential_present"`
}

// MakePlan computes the plan for b. It fails only on a wrong choice (an
// unknown profile); reasons apply would refuse land in Plan.Refusals.
func MakePlan(b *blueprint.Blueprint, opts PlanOptions) (*Plan, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	p := &Plan{
		Blueprint: PlanBlueprint{Dir: b.Dir, Version: b.Version, Description: strings.TrimSpace(b.Description)},
		Findings:  b.Findings,
		Preflight: opts.Preflight,
		GPU:       b.Components.GPU,
	}
	name := opts.Name
	if name == "" {
		name = b.SandboxName()
	}
	p.Sandbox = PlanSandbox{Name: name, Command: []string{"/bin/bash", "-i"}}
	if s := b.Components.Sandbox; s != nil {
		if len(s.Command) > 0 {
			p.Sandbox.Command = s.Command
		}
		if s.Workdir != "" {
			p.Sandbox.Workspace = s.Workdir
		}
		for k := range s.Env {
			p.Sandbox.EnvKeys = append(p.Sandbox.EnvKeys, k)
		}
		sort.Strings(p.Sandbox.EnvKeys)
	}
	if p.Sandbox.Workspace == "" {
		p.Sandbox.Workspace = filepath.Join(opts.Home, "sandboxes", name, "workspace")
	}
	p.Policy = summarize(b)
	p.Profiles = fitProfiles(b, opts.GPUs, opts.GPUErr)
	if opts.Profile == AutoProfile {
		name, why, err := chooseAuto(b, p.Profiles)
		if err != nil {
			return nil, err
		}
		opts.Profile, p.AutoWhy = name, why
	}
	for i := range p.Profiles {
		pp := &p.Profiles[i]
		pp.Chosen = pp.Name == opts.Profile || (opts.Profile == "" && pp.Name == b.DefaultProfileName())
		if pp.Chosen && !pp.Fits {
			p.Preflight = append(p.Preflight, Check{Name: "gpu for profile " + pp.Name, OK: false,
				Detail: pp.Why + ": its local model server may not start here; --profile auto picks one that fits"})
		}
	}
	if g := b.Components.GPU; g != nil && g.Required && (g.Count > 0 || len(g.Devices) > 0) {
		need := gpu.Need{Count: max(g.Count, len(g.Devices)), MinMemoryGiB: g.MinMemoryGiB, MinComputeCapability: g.MinComputeCapability}
		if ok, why := gpu.Fit(opts.GPUs, opts.GPUErr, need); !ok {
			p.Refusals = append(p.Refusals, "components.gpu.required: "+why)
		}
	}

	if len(b.Profiles) > 0 || opts.Profile != "" || (b.Components.Inference != nil && len(b.Components.Inference.Profiles) > 0) {
		pname, prof, ok := b.Profile(opts.Profile)
		if !ok {
			var names []string
			if b.Components.Inference != nil {
				for k := range b.Components.Inference.Profiles {
					names = append(names, k)
				}
			}
			sort.Strings(names)
			if pname == "" {
				return nil, fmt.Errorf("blueprint %s names no default inference profile (default_profile or profiles:) and has several; choose one with --profile: %s", b.Dir, strings.Join(names, ", "))
			}
			return nil, fmt.Errorf("profile %q is not in blueprint %s; choose one of: %s", pname, b.Dir, strings.Join(names, ", "))
		}
		inf := &PlanInference{Profile: pname, ProviderType: prof.ProviderType, ProviderName: prof.ProviderName,
			Endpoint: prof.Endpoint, Model: prof.Model, Plugin: prof.Plugin, CredentialEnv: prof.CredentialEnv}
		if inf.Plugin == "" {
			inf.Plugin = blueprint.KnownProviders[prof.ProviderType]
		}
		if prof.CredentialEnv != "" {
			inf.CredentialPresent = getenv(prof.CredentialEnv) != "" || prof.CredentialDefault != ""
		} else {
			inf.CredentialPresent = true
		}
		if prof.DynamicEndpoint && prof.Endpoint == "" {
			p.Refusals = append(p.Refusals, fmt.Sprintf("profile %q has a dynamic endpoint and none was supplied", pname))
		}
		if !inf.CredentialPresent {
			p.Preflight = append(p.Preflight, Check{Name: "credential " + prof.CredentialEnv, OK: false,
				Detail: fmt.Sprintf("%s is not set: inference calls through profile %q will fail until it is exported on the host (the agent never sees it)", prof.CredentialEnv, pname)})
		}
		if prof.GPU != nil {
			p.GPU = prof.GPU
		}
		p.Inference = inf
	}
	if err := blueprint.CheckGates(b); err != nil {
		p.Refusals = append(p.Refusals, err.Error())
	}
	for _, c := range p.Preflight {
		if c.Fatal && !c.OK {
			p.Refusals = append(p.Refusals, c.Name+": "+c.Detail)
		}
	}
	return p, nil
}

// summarize renders the effective policy in short form.
func summarize(b *blueprint.Blueprint) PlanPolicy {
	pol := policy.Normalize(b.Policy)
	out := PlanPolicy{File: b.PolicyFile, Landlock: pol.Landlock.Compatibility, RunAs: "(invoking user)", Resources: pol.Resources}
	if pr := pol.Process; pr != nil && pr.RunAsUser != "" {
		out.RunAs = pr.RunAsUser
		if pr.RunAsGroup != "" {
			out.RunAs += ":" + pr.RunAsGroup
		}
	}
	if fs := pol.Filesystem; fs != nil {
		out.ReadOnly = fs.ReadOnly
		out.ReadWrite = fs.ReadWrite
		if fs.IncludeWorkdir {
			out.ReadWrite = append([]string{"/sandbox"}, out.ReadWrite...)
		}
	}
	keys := make([]string, 0, len(pol.NetworkPolicies))
	for k := range pol.NetworkPolicies {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		np := pol.NetworkPolicies[k]
		g := PlanNetworkGroup{Key: k}
		for _, e := range np.Endpoints {
			g.Endpoints = append(g.Endpoints, describeEndpoint(e))
		}
		for _, bin := range np.Binaries {
			g.Binaries = append(g.Binaries, bin.Path)
		}
		out.Network = append(out.Network, g)
	}
	return out
}

// describeEndpoint is "host:443,8443 rest enforce (3 rules)".
func describeEndpoint(e *policy.Endpoint) string {
	ports := make([]string, 0, len(e.Ports))
	for _, p := range e.Ports {
		ports = append(ports, strconv.Itoa(p))
	}
	host := e.Host
	if host == "" {
		host = strings.Join(e.AllowedIPs, ",")
	}
	s := fmt.Sprintf("%s:%s %s %s", host, strings.Join(ports, ","), e.Protocol, e.Enforcement)
	switch {
	case e.Access != "":
		s += " access=" + e.Access
	case len(e.Rules) > 0:
		s += fmt.Sprintf(" rules=%d", len(e.Rules))
	}
	if len(e.DenyRules) > 0 {
		s += fmt.Sprintf(" deny_rules=%d", len(e.DenyRules))
	}
	switch {
	case e.Protocol == policy.ProtoTCP:
		s += " tunnel (not inspected)"
	case e.IsTunnel():
		s += " tunnel (tls=" + e.TLS + ", not inspected)"
	}
	return s
}
