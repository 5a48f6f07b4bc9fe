package blueprint

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/hashicorp/go-version"

	"github.com/nemoclaw/nemoclaw/blueprints"
	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
	"github.com/nemoclaw/nemoclaw/runner/policy"
	runnerversion "github.com/nemoclaw/nemoclaw/runner/version"
	"github.com/nemoclaw/nemoclaw/schema"
)

// EmbeddedDefault is the Dir of the built-in default blueprint.
const EmbeddedDefault = "embedded:default"

// KnownProviders are the provider types that have a built-in backend.
var KnownProviders = map[string]string{
	"nvidia": "nemoclaw-inference-nvidia",
	"nim":    "nemoclaw-inference-nvidia",
	"openai": "nemoclaw-inference-vllm",
	"vllm":   "nemoclaw-inference-vllm",
	"ollama": "nemoclaw-inference-ollama",
}

// Load reads and validates the blueprint directory dir.
func Load(dir string) (*Blueprint, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load blueprint %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load blueprint %s: not a directory; give the directory that holds %s", dir, FileName)
	}
	return LoadFS(os.DirFS(dir), dir)
}

// Default returns the embedded default blueprint.
func Default() (*Blueprint, error) {
	sub, err := fs.Sub(blueprints.FS, blueprints.DefaultDir)
	if err != nil {
		return nil, fmt.Errorf("embedded default blueprint: %w", err)
	}
	return LoadFS(sub, EmbeddedDefault)
}

// EmbeddedOpenClaw is the Dir of the built-in OpenClaw blueprint.
const EmbeddedOpenClaw = "embedded:openclaw"

// OpenClaw returns the embedded OpenClaw blueprint (what `nemoclaw
// onboard` applies).
func OpenClaw() (*Blueprint, error) {
	sub, err := fs.Sub(blueprints.FS, blueprints.OpenClawDir)
	if err != nil {
		return nil, fmt.Errorf("embedded openclaw blueprint: %w", err)
	}
	return LoadFS(sub, EmbeddedOpenClaw)
}

// DefaultPolicy returns the effective policy of the embedded default
// blueprint, a fresh copy on each call. It comes from a generated Go
// literal (default_policy_gen.go) rather than the YAML: every ad-hoc
// `sandbox run` starts here. TestDefaultPolicyLiteral keeps the two equal.
func DefaultPolicy() (*policy.Policy, error) {
	return defaultPolicy(), nil
}

//go:generate go test -run ^TestDefaultPolicyLiteral$ -update .

// LoadFS loads a blueprint from fsys; label is how files are named in
// errors (the directory path, or "embedded:default").
func LoadFS(fsys fs.FS, label string) (*Blueprint, error) {
	l := &loader{fsys: fsys, label: label}
	return l.load()
}

type loader struct {
	fsys  fs.FS
	label string
	errs  policy.Problems
	warns policy.Problems
}

// name renders a file inside the blueprint for messages.
func (l *loader) name(file string) string {
	if strings.HasPrefix(l.label, "embedded:") {
		return l.label + "/" + file
	}
	return path.Join(filepathToSlash(l.label), file)
}

func filepathToSlash(s string) string { return strings.ReplaceAll(s, "\\", "/") }

func (l *loader) load() (*Blueprint, error) {
	data, err := fs.ReadFile(l.fsys, FileName)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("load blueprint %s: no %s there; a blueprint directory holds %s and its policies", l.label, FileName, FileName)
		}
		return nil, fmt.Errorf("load blueprint %s: %w", l.label, err)
	}
	var b Blueprint
	file := l.name(FileName)
	doc, err := strictyaml.Decode(file, data, &b)
	if err != nil {
		return nil, err
	}
	if err := policy.SchemaCheck(doc, schema.Blueprint); err != nil {
		return nil, err
	}
	b.Dir = l.label
	l.check(&b, doc)
	l.presets(&b)
	l.policy(&b, doc)
	l.otherPolicies(&b)
	l.tiers(&b)
	if len(b.Presets) > 0 && b.Policy != nil {
		var sel []*policy.Preset
		for i, n := range b.Presets {
			pr, ok := b.Available[n]
			if !ok {
				l.errs = append(l.errs, doc.Problem([]string{"presets", fmt.Sprint(i)}, "preset %q is not in %s; available: %s", n, PresetsDir, strings.Join(sortedNames(b.Available), ", ")))
				continue
			}
			sel = append(sel, pr)
		}
		merged, cs := policy.Merge(b.Policy, sel...)
		for _, c := range cs {
			l.warns = append(l.warns, doc.Problem([]string{"presets"}, "%s", c))
		}
		b.Policy = merged
	}
	if err := l.errs.Err(); err != nil {
		return nil, err
	}
	l.warns.Sort()
	b.Findings = l.warns
	return &b, nil
}

// check applies the semantic rules beyond the schema.
func (l *loader) check(b *Blueprint, doc *strictyaml.Doc) {
	errf := func(p []string, f string, a ...any) { l.errs = append(l.errs, doc.Problem(p, f, a...)) }
	warnf := func(p []string, f string, a ...any) { l.warns = append(l.warns, doc.Problem(p, f, a...)) }

	for _, g := range []struct{ field, val string }{
		{"version", b.Version}, {"min_runner_version", b.MinRunnerVersion},
		{"min_openshell_version", b.MinOpenShellVersion}, {"max_openshell_version", b.MaxOpenShellVersion},
		{"min_openclaw_version", b.MinOpenClawVersion},
	} {
		if g.val == "" {
			continue
		}
		if _, err := version.NewSemver(g.val); err != nil {
			errf([]string{g.field}, "%q is not a semantic version (e.g. 1.2.3)", g.val)
		}
	}
	if b.MinOpenShellVersion != "" || b.MaxOpenShellVersion != "" {
		field := "min_openshell_version"
		if b.MinOpenShellVersion == "" {
			field = "max_openshell_version"
		}
		warnf([]string{field}, "OpenShell version gates (min_openshell_version %q, max_openshell_version %q) are reported, not checked: nemoclaw replaces OpenShell", b.MinOpenShellVersion, b.MaxOpenShellVersion)
	}
	if b.MinOpenClawVersion != "" {
		warnf([]string{"min_openclaw_version"}, "min_openclaw_version %s is reported, not checked: nemoclaw does not inspect the agent's version", b.MinOpenClawVersion)
	}
	if b.Digest != "" {
		warnf([]string{"digest"}, "digest is kept but not used: nemoclaw verifies the OCI manifest digest and signature instead")
	}

	var profiles map[string]*InferenceProfile
	if b.Components.Inference != nil {
		profiles = b.Components.Inference.Profiles
	}
	declared := map[string]bool{}
	for i, p := range b.Profiles {
		declared[p] = true
		if _, ok := profiles[p]; !ok {
			errf([]string{"profiles", fmt.Sprint(i)}, "profile %q is declared but components.inference.profiles has no %q; defined: %s", p, p, strings.Join(sortedKeys(profiles), ", "))
		}
	}
	for _, name := range sortedKeys(profiles) {
		if len(b.Profiles) > 0 && !declared[name] {
			warnf([]string{"components", "inference", "profiles", name}, "profile %q is defined but not listed in profiles", name)
		}
		l.profile(name, profiles[name], doc, errf, warnf)
	}
	if g := b.Components.GPU; g != nil && g.Count > 0 && len(g.Devices) > 0 {
		errf([]string{"components", "gpu", "devices"}, "gpu: give count or devices, not both (devices names the GPUs; count takes that many free ones)")
	}
	if b.DefaultProfile != "" {
		if _, ok := profiles[b.DefaultProfile]; !ok {
			errf([]string{"default_profile"}, "default_profile %q is not defined; defined: %s", b.DefaultProfile, strings.Join(sortedKeys(profiles), ", "))
		}
	}
	if s := b.Components.Sandbox; s != nil {
		if s.Image != "" {
			warnf([]string{"components", "sandbox", "image"}, "image %q is kept but not used: nemoclaw runs the agent on the host's root, read-only behind Landlock, instead of a container image", s.Image)
		}
		if len(s.ForwardPorts) > 0 {
			warnf([]string{"components", "sandbox", "forward_ports"}, "forward_ports are kept but not forwarded yet: the agent's ports are reachable only inside the sandbox")
		}
		if len(s.ResourceProfiles) > 0 {
			warnf([]string{"components", "sandbox", "resource_profiles"}, "resource_profiles are kept but not applied; set resources in the sandbox policy for enforced limits")
		}
		if s.Workdir != "" && !strings.HasPrefix(s.Workdir, "/") {
			errf([]string{"components", "sandbox", "workdir"}, "workdir %q must be an absolute host path", s.Workdir)
		}
	}
	if r := b.Components.Router; r != nil {
		warnf([]string{"components", "router"}, "router is kept but not used: nemoclaw routes inference per sandbox through inference.local")
	}
	if b.OpenShellTarget != nil {
		warnf([]string{"openshell_target"}, "openshell_target is kept but not used: nemoclaw runs the sandbox itself and connects to no OpenShell gateway")
	}
	if b.OpenShellTarget != nil && (b.MinOpenShellVersion == "" || b.MaxOpenShellVersion == "") {
		errf([]string{"openshell_target"}, "openshell_target needs min_openshell_version and max_openshell_version (NemoClaw's schema requires both with it); add them or drop openshell_target")
	}
	if b.Components.Identity != nil {
		warnf([]string{"components", "identity"}, "components.identity is kept but not used: nemoclaw does not broker runtime identities; give the agent's credentials through the policy's credentials")
	}
}

// profile checks one inference profile.
func (l *loader) profile(name string, p *InferenceProfile, doc *strictyaml.Doc, errf, warnf func([]string, string, ...any)) {
	pp := []string{"components", "inference", "profiles", name}
	if p == nil {
		errf(pp, "profile %q is empty; give it provider_type and endpoint", name)
		return
	}
	if p.ProviderType == "" {
		errf(pp, "profile %q has no provider_type; use nvidia, openai, ollama or vllm", name)
	} else if _, ok := KnownProviders[p.ProviderType]; !ok && p.Plugin == "" {
		errf(append(pp, "provider_type"), "provider_type %q has no built-in backend (nvidia, nim, openai, vllm, ollama); set plugin to a custom backend binary", p.ProviderType)
	}
	switch {
	case p.Endpoint == "" && !p.DynamicEndpoint:
		errf(pp, "profile %q has no endpoint; set endpoint to the service's base URL or dynamic_endpoint: true", name)
	case p.Endpoint != "":
		u, err := url.Parse(p.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errf(append(pp, "endpoint"), "endpoint %q is not an http(s) URL such as https://integrate.api.nvidia.com/v1", p.Endpoint)
		} else if u.User != nil {
			errf(append(pp, "endpoint"), "endpoint must not embed credentials; use credential_env")
		}
	}
	if p.DynamicEndpoint && p.Endpoint == "" {
		warnf(pp, "profile %q has a dynamic endpoint: it must be supplied at apply time", name)
	}
	for a := range p.Aliases {
		if strings.TrimSpace(a) == "" || a != strings.TrimSpace(a) {
			errf(append(pp, "aliases"), "alias %q is empty or has surrounding spaces; name the model the agent asks for", a)
		}
	}
}

// presets loads every preset under policies/presets.
func (l *loader) presets(b *Blueprint) {
	b.Available = map[string]*policy.Preset{}
	entries, err := fs.ReadDir(l.fsys, PresetsDir)
	if err != nil {
		return // no presets directory is fine
	}
	for _, e := range entries {
		if e.IsDir() || !isYAML(e.Name()) {
			continue
		}
		file := PresetsDir + "/" + e.Name()
		data, err := fs.ReadFile(l.fsys, file)
		if err != nil {
			l.errs = append(l.errs, &policy.Problem{File: l.name(file), Message: err.Error()})
			continue
		}
		pr, warns, err := policy.ParsePreset(l.name(file), data)
		l.warns = append(l.warns, warns...)
		if err != nil {
			l.errs = append(l.errs, strictyaml.AsProblems(err)...)
			continue
		}
		if prev, dup := b.Available[pr.Meta.Name]; dup {
			l.errs = append(l.errs, &policy.Problem{File: l.name(file), Message: fmt.Sprintf("preset name %q is also used by another preset (%s)", pr.Meta.Name, prev.Meta.Description)})
			continue
		}
		b.Available[pr.Meta.Name] = pr
	}
}

// policy resolves and loads the base policy, then applies the additions.
func (l *loader) policy(b *Blueprint, doc *strictyaml.Doc) {
	ref := b.Components.Policy
	base := ""
	if ref != nil {
		base = ref.Base
	}
	file, note := l.resolveBase(base)
	if file == "" {
		msg := "the blueprint has no sandbox policy: set components.policy.base to a policy file in the blueprint directory"
		if base != "" {
			msg = fmt.Sprintf("policy base %q is not in the blueprint directory, and no policy file under policies/ stands in for it (%s for a path in OpenShell's image, or a single policy file); add the file or fix the path", base, imageHint(base))
		}
		l.errs = append(l.errs, doc.Problem([]string{"components", "policy", "base"}, "%s", msg))
		return
	}
	if note != "" {
		l.warns = append(l.warns, doc.Problem([]string{"components", "policy", "base"}, "%s", note))
	}
	data, err := fs.ReadFile(l.fsys, file)
	if err != nil {
		l.errs = append(l.errs, &policy.Problem{File: l.name(file), Message: err.Error()})
		return
	}
	p, warns, err := policy.Check(l.name(file), data)
	l.warns = append(l.warns, warns...)
	if err != nil {
		l.errs = append(l.errs, strictyaml.AsProblems(err)...)
		return
	}
	b.PolicyFile = l.name(file)
	if ref != nil && len(ref.Additions) > 0 {
		add := &policy.Preset{Meta: policy.PresetMeta{Name: "components.policy.additions"}, NetworkPolicies: ref.Additions}
		merged, cs := policy.Merge(p, add)
		for _, c := range cs {
			l.warns = append(l.warns, doc.Problem([]string{"components", "policy", "additions", c.Key}, "addition %q replaces the base policy's network policy of the same key", c.Key))
		}
		errs, warns := policy.CheckNetworkPolicies(doc, ref.Additions, []string{"components", "policy", "additions"})
		l.errs = append(l.errs, errs...)
		l.warns = append(l.warns, warns...)
		p = merged
	}
	b.Policy = p
}

// resolveBase finds the base policy file. NemoClaw's blueprint names a path
// inside OpenShell's sandbox image ("sandboxes/openclaw/policy.yaml") that the
// blueprint directory does not hold; NemoClaw ships that policy beside the
// blueprint as policies/<agent>-sandbox.yaml, which stands in for it, and
// nothing else does. For any other missing base (or none), the single policy
// file under policies/ stands in. Either substitution is reported.
func (l *loader) resolveBase(base string) (file, note string) {
	if base != "" {
		clean := path.Clean(strings.TrimPrefix(base, "./"))
		if !fs.ValidPath(clean) {
			return "", ""
		}
		if isFile(l.fsys, clean) {
			return clean, ""
		}
		// A missing file in a directory the blueprint has is a typo, not a
		// path into OpenShell's image: no stand-in for it.
		if top, _, nested := strings.Cut(clean, "/"); nested {
			if st, err := fs.Stat(l.fsys, top); err == nil && st.IsDir() {
				return "", ""
			}
		}
		// Only the agent's own policy stands in for an image path: with it
		// missing, the one file left may be the permissive "shields down"
		// policy, which must never become the base by elimination.
		if own, ok := imagePolicyFile(clean); ok {
			if !isFile(l.fsys, own) {
				return "", ""
			}
			return own, fmt.Sprintf("policy base %q is a path inside OpenShell's sandbox image; using %s, the copy NemoClaw ships beside the blueprint", base, own)
		}
	}
	cands := l.policyFiles()
	if len(cands) != 1 {
		return "", ""
	}
	if base == "" {
		return cands[0], fmt.Sprintf("components.policy.base is not set; using %s", cands[0])
	}
	return cands[0], fmt.Sprintf("policy base %q is not in the blueprint directory (NemoClaw resolves it inside OpenShell's image); using %s", base, cands[0])
}

// imagePolicyFile maps a policy path in OpenShell's sandbox image,
// sandboxes/AGENT/policy.yaml, to NemoClaw's name for that policy beside its
// blueprint, policies/AGENT-sandbox.yaml.
func imagePolicyFile(clean string) (string, bool) {
	parts := strings.Split(clean, "/")
	if len(parts) != 3 || parts[0] != "sandboxes" || parts[2] != "policy.yaml" || parts[1] == "" || strings.HasPrefix(parts[1], ".") {
		return "", false
	}
	return PoliciesDir + "/" + parts[1] + "-sandbox.yaml", true
}

// imageHint says which file would stand in for base, for the refusal.
func imageHint(base string) string {
	if own, ok := imagePolicyFile(path.Clean(strings.TrimPrefix(base, "./"))); ok {
		return own
	}
	return "policies/AGENT-sandbox.yaml"
}

// policyFiles lists the policy files directly under policies/: every YAML
// file but the tiers file.
func (l *loader) policyFiles() []string {
	entries, err := fs.ReadDir(l.fsys, PoliciesDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		name := PoliciesDir + "/" + e.Name()
		if !e.IsDir() && isYAML(e.Name()) && name != TiersFile {
			out = append(out, name)
		}
	}
	return out
}

// otherPolicies validates the policy files under policies/ besides the base
// (NemoClaw's permissive "shields down" policy): a blueprint ships them, so
// they must load, but only the base is applied.
func (l *loader) otherPolicies(b *Blueprint) {
	for _, file := range l.policyFiles() {
		if l.name(file) == b.PolicyFile {
			continue
		}
		data, err := fs.ReadFile(l.fsys, file)
		if err != nil {
			l.errs = append(l.errs, &policy.Problem{File: l.name(file), Message: err.Error()})
			continue
		}
		_, warns, err := policy.Check(l.name(file), data)
		l.warns = append(l.warns, warns...)
		if err != nil {
			l.errs = append(l.errs, strictyaml.AsProblems(err)...)
			continue
		}
		b.OtherPolicies = append(b.OtherPolicies, l.name(file))
		l.warns = append(l.warns, &policy.Problem{File: l.name(file), Message: fmt.Sprintf("a second policy beside the base: validated, not applied; to run under it, apply it to a sandbox with 'nemoclaw policy set SANDBOX %s'", l.name(file))})
	}
}

// tiers loads NemoClaw's policy tiers. A tier naming a preset the blueprint
// does not ship is a warning, not an error: upstream's tiers name presets
// (brave) that live outside the blueprint directory, and tiers are reported,
// never applied, so a missing preset widens nothing.
func (l *loader) tiers(b *Blueprint) {
	data, err := fs.ReadFile(l.fsys, TiersFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	file := l.name(TiersFile)
	if err != nil {
		l.errs = append(l.errs, &policy.Problem{File: file, Message: err.Error()})
		return
	}
	t, warns, err := policy.ParseTiers(file, data)
	l.warns = append(l.warns, warns...)
	if err != nil {
		l.errs = append(l.errs, strictyaml.AsProblems(err)...)
		return
	}
	b.Tiers = t
	doc, err := strictyaml.Parse(file, data)
	if err != nil { // ParseTiers read it already
		l.errs = append(l.errs, strictyaml.AsProblems(err)...)
		return
	}
	for i, tier := range t.Tiers {
		var names []string
		for j, pr := range tier.Presets {
			names = append(names, pr.String())
			if _, ok := b.Available[pr.Name]; !ok {
				l.warns = append(l.warns, doc.Problem([]string{"tiers", fmt.Sprint(i), "presets", fmt.Sprint(j), "name"}, "tier %q names preset %q, which is not in %s; the tier could not be applied as written (available: %s)", tier.Name, pr.Name, PresetsDir, strings.Join(sortedNames(b.Available), ", ")))
			}
		}
		if len(names) == 0 {
			names = []string{"none"}
		}
		l.warns = append(l.warns, doc.Problem([]string{"tiers", fmt.Sprint(i)}, "tier %q is kept and reported, not applied: presets %s; select presets with the blueprint's presets", tier.Name, strings.Join(names, ", ")))
	}
}

func isFile(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && !st.IsDir()
}

func isYAML(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// CheckGates refuses a blueprint whose min_runner_version is above this
// nemoclaw's version (runner/version, the one `nemoclaw version` prints).
func CheckGates(b *Blueprint) error {
	if b.MinRunnerVersion == "" {
		return nil
	}
	want, err := version.NewSemver(b.MinRunnerVersion)
	if err != nil {
		return fmt.Errorf("min_runner_version %q: %w", b.MinRunnerVersion, err)
	}
	have, err := runnerversion.Semver()
	if err != nil {
		return fmt.Errorf("check min_runner_version %s: %w", b.MinRunnerVersion, err)
	}
	if have.LessThan(want) {
		return &GateError{Field: "min_runner_version", Want: b.MinRunnerVersion, Have: runnerversion.String()}
	}
	return nil
}

// GateError is a version gate the running nemoclaw does not meet.
type GateError struct {
	Field, Want, Have string
}

// Error implements error.
func (e *GateError) Error() string {
	return fmt.Sprintf("blueprint needs nemoclaw >= %s (%s) but this is %s; upgrade nemoclaw or use an older blueprint version", e.Want, e.Field, e.Have)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedNames(m map[string]*policy.Preset) []string { return sortedKeys(m) }
