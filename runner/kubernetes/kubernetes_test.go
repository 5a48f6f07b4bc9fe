package kubernetes

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	sandboxv1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/nemoclaw/nemoclaw/blueprints"
	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/state"
)

// load returns a Config for the testdata blueprint dir ("" for the
// embedded default).
func load(t *testing.T, dir string) Config {
	t.Helper()
	if dir == "" {
		b, err := blueprint.Default()
		if err != nil {
			t.Fatal(err)
		}
		sub, err := fs.Sub(blueprints.FS, blueprints.DefaultDir)
		if err != nil {
			t.Fatal(err)
		}
		return Config{Blueprint: b, Files: sub, Image: "registry.example.com/nemoclaw/agent:1"}
	}
	dir = filepath.Join("testdata", dir)
	b, err := blueprint.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Blueprint: b, Files: os.DirFS(dir)}
}

func find[T any](t *testing.T, r *Rendered) T {
	t.Helper()
	for _, o := range r.Objects {
		if v, ok := o.Object.(T); ok {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T among the rendered objects", zero)
	return zero
}

// TestRenderPod checks the pod's security settings: what nemoclaw needs to
// build its sandbox (user namespace, unmasked /proc, the Localhost seccomp
// profile) and nothing more.
func TestRenderPod(t *testing.T) {
	r, err := Render(load(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := find[*extv1.SandboxTemplate](t, r)
	pod := tmpl.Spec.PodTemplate.Spec
	if pod.HostUsers == nil || *pod.HostUsers {
		t.Error("hostUsers is not false")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the service account token is mounted")
	}
	if sp := pod.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeLocalhost || *sp.LocalhostProfile != SeccompProfile {
		t.Errorf("seccomp profile %+v", sp)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("containers %d, init containers %d: want one supervisor", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("privileged or privilege escalation allowed")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("capabilities %+v", sc.Capabilities)
	}
	if sc.ProcMount == nil || *sc.ProcMount != corev1.UnmaskedProcMount {
		t.Error("procMount is not Unmasked: nemoclaw cannot mount /proc in its sandbox")
	}
	if want := []string{"blueprint", "apply", BlueprintMount, "--name", "agent", "--profile", "nvidia"}; !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	for _, e := range c.Env {
		if e.Value != "" && e.Name != "NEMOCLAW_HOME" {
			t.Errorf("env %s has a literal value", e.Name)
		}
	}
	if e := c.Env[1]; e.Name != "NVIDIA_API_KEY" || e.ValueFrom.SecretKeyRef.Name != "agent-credentials" || e.ValueFrom.SecretKeyRef.Key != "NVIDIA_API_KEY" {
		t.Errorf("credential env %+v", e)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	if got := tmpl.Spec.NetworkPolicyManagement; got != extv1.NetworkPolicyManagementUnmanaged {
		t.Errorf("networkPolicyManagement %q: the controller's default would open every public port", got)
	}
	// The Sandbox runs the same pod; its labels are the NetworkPolicy's selector.
	sb := find[*sandboxv1.Sandbox](t, r)
	if sb.Spec.PodTemplate.ObjectMeta.Labels[LabelSandbox] != "agent" {
		t.Error("the Sandbox's pod lacks the NetworkPolicy's label")
	}
	if tmpl.Annotations[AnnotationDigest] != r.Digest || !strings.HasPrefix(r.Digest, "sha256:") {
		t.Errorf("digest annotation %q, digest %q", tmpl.Annotations[AnnotationDigest], r.Digest)
	}
}

// TestRenderNetworkPolicy sorts every kind of destination: names get the
// public-only rule on their ports, IP literals and allowed_ips exact rules,
// loopback and inference.local none; no rule ever opens the metadata range.
func TestRenderNetworkPolicy(t *testing.T) {
	r, err := Render(load(t, "reach"))
	if err != nil {
		t.Fatal(err)
	}
	np := find[*networkingv1.NetworkPolicy](t, r)
	if len(np.Spec.Ingress) != 0 || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Error("ingress is not denied")
	}
	type rule struct {
		cidr  string
		ports string
	}
	var got []rule
	for _, e := range np.Spec.Egress {
		var ports []string
		for _, p := range e.Ports {
			ports = append(ports, p.Port.String()+"/"+string(*p.Protocol))
		}
		for _, to := range e.To {
			if to.IPBlock == nil {
				got = append(got, rule{"kube-dns", strings.Join(ports, ",")})
				continue
			}
			got = append(got, rule{to.IPBlock.CIDR, strings.Join(ports, ",")})
			p := netip.MustParsePrefix(to.IPBlock.CIDR)
			for _, bad := range []string{"169.254.169.254", "fd00:ec2::254", "10.9.9.9", "192.168.1.1", "172.16.0.1", "100.64.0.1"} {
				a := netip.MustParseAddr(bad)
				if !p.Contains(a) {
					continue
				}
				excepted := false
				for _, ex := range to.IPBlock.Except {
					excepted = excepted || netip.MustParsePrefix(ex).Contains(a)
				}
				if !excepted && to.IPBlock.CIDR != "10.1.0.0/16" && to.IPBlock.CIDR != "10.0.0.5/32" {
					t.Errorf("rule %s opens %s", to.IPBlock.CIDR, bad)
				}
			}
		}
	}
	want := []rule{
		{"kube-dns", "53/UDP,53/TCP"},
		{"0.0.0.0/0", "22/TCP,443/TCP,8000/TCP,8443/TCP"},
		{"::/0", "22/TCP,443/TCP,8000/TCP,8443/TCP"},
		{"10.0.0.5/32", "5432/TCP"}, // network policies in key order
		{"10.1.0.0/16", "5432/TCP"},
		{"203.0.113.7/32", "8080/TCP"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("egress rules\n got %v\nwant %v", got, want)
	}
	notes := strings.Join(r.Notes, "\n")
	for _, w := range []string{"127.0.0.1 is the pod's own loopback", "nim-service.local looks cluster-internal", "cannot be narrowed by IP", "pypi.org:443"} {
		if !strings.Contains(notes, w) {
			t.Errorf("notes lack %q:\n%s", w, notes)
		}
	}
	if strings.Contains(notes, "inference.local") {
		t.Errorf("inference.local is the supervisor's own: no rule, no note:\n%s", notes)
	}
	// The resources and the GPU.
	c := find[*extv1.SandboxTemplate](t, r).Spec.PodTemplate.Spec.Containers[0]
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "2Gi" {
		t.Errorf("memory limit %s", q.String())
	}
	if q := c.Resources.Limits["nvidia.com/gpu"]; q.String() != "1" {
		t.Errorf("gpu limit %s", q.String())
	}
}

// TestRenderNoSecretValues: the process environment holds the credentials'
// values (as a developer's shell would); they never reach the output, only
// references to the Secret.
func TestRenderNoSecretValues(t *testing.T) {
	const remote, bot = "sk-remote-value-9f8e7d", "123456:telegram-bot-value"
	t.Setenv("REMOTE_API_KEY", remote)
	t.Setenv("TELEGRAM_BOT_TOKEN", bot)
	r, err := Render(load(t, "reach"))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{FormatYAML, FormatJSON} {
		var out bytes.Buffer
		if err := Write(&out, r, format); err != nil {
			t.Fatal(err)
		}
		if s := out.String(); strings.Contains(s, remote) || strings.Contains(s, bot) {
			t.Errorf("%s output holds a secret value", format)
		}
	}
	env := find[*extv1.SandboxTemplate](t, r).Spec.PodTemplate.Spec.Containers[0].Env
	var refs []string
	for _, e := range env[1:] {
		refs = append(refs, e.Name+"="+e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key)
	}
	if want := []string{"REMOTE_API_KEY=reach-credentials/REMOTE_API_KEY", "TELEGRAM_BOT_TOKEN=reach-credentials/TELEGRAM_BOT_TOKEN"}; !slices.Equal(refs, want) {
		t.Errorf("secret references %v, want %v", refs, want)
	}
}

// TestRenderRefusals: invalid input and what the target cannot honour are
// refused before any object exists, each naming what to change.
func TestRenderRefusals(t *testing.T) {
	neg := int32(-1)
	tests := []struct {
		name, dir string
		mod       func(*Config)
		want      string
		refusal   bool
	}{
		{"gvisor with hard_requirement", "hard", func(c *Config) { c.RuntimeClass = "gvisor"; c.Image = "x" }, "implements no Landlock", true},
		{"runsc with hard_requirement", "hard", func(c *Config) { c.RuntimeClass = "runsc"; c.Image = "x" }, "hard_requirement", true},
		{"no image", "hard", func(c *Config) {}, "give --image", false},
		{"bad name", "", func(c *Config) { c.Name = "Agent_1" }, "give --name", false},
		{"long name", "", func(c *Config) { c.Name = strings.Repeat("a", 41) }, "at most 40", false},
		{"bad namespace", "", func(c *Config) { c.Namespace = "kube system" }, "namespace", false},
		{"unknown profile", "", func(c *Config) { c.Profile = "nope" }, `profile "nope" is not in the blueprint`, false},
		{"negative warm pool", "", func(c *Config) { c.WarmPool = &neg }, "--warm-pool -1", false},
		{"image with a space", "", func(c *Config) { c.Image = "a b" }, "white space", false},
		{"credential file the agent reads", "credfile", func(c *Config) { c.Image = "x" }, "readable by the agent", false},
		{"bad runtime class", "", func(c *Config) { c.RuntimeClass = "Bad Class" }, "--runtime-class", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := load(t, tt.dir)
			tt.mod(&cfg)
			r, err := Render(cfg)
			if err == nil {
				t.Fatalf("rendered %d objects, want a refusal", len(r.Objects))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
			var re *RefusalError
			if errors.As(err, &re) != tt.refusal {
				t.Errorf("RefusalError %v, want %v", errors.As(err, &re), tt.refusal)
			}
		})
	}
}

// TestRenderRuntimeClass: what gVisor drops for a best_effort blueprint,
// and what Kata changes.
func TestRenderRuntimeClass(t *testing.T) {
	for _, tt := range []struct{ class, want string }{
		{"gvisor", "best_effort drops the filesystem allow-list"},
		{"kata-qemu", "guest kernel"},
		{"my-runtime", "not one nemoclaw knows"},
	} {
		cfg := load(t, "")
		cfg.RuntimeClass = tt.class
		r, err := Render(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(r.Notes, "\n"), tt.want) {
			t.Errorf("%s: notes lack %q: %q", tt.class, tt.want, r.Notes)
		}
		if rc := find[*extv1.SandboxTemplate](t, r).Spec.PodTemplate.Spec.RuntimeClassName; rc == nil || *rc != tt.class {
			t.Errorf("%s: runtimeClassName %v", tt.class, rc)
		}
	}
}

// TestRenderWarmPool renders a pool and a claim in place of the Sandbox.
func TestRenderWarmPool(t *testing.T) {
	cfg := load(t, "")
	n := int32(3)
	cfg.WarmPool, cfg.Name, cfg.Namespace = &n, "coder", "agents"
	r, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range r.Objects {
		kinds = append(kinds, o.Object.GetObjectKind().GroupVersionKind().Kind)
	}
	if want := []string{"ConfigMap", "NetworkPolicy", "SandboxTemplate", "SandboxWarmPool", "SandboxClaim"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	pool := find[*extv1.SandboxWarmPool](t, r)
	claim := find[*extv1.SandboxClaim](t, r)
	if *pool.Spec.Replicas != 3 || pool.Spec.TemplateRef.Name != "coder" || claim.Spec.WarmPoolRef.Name != "coder" || claim.Namespace != "agents" {
		t.Errorf("pool %+v claim %+v", pool.Spec, claim.Spec)
	}
}

// TestRenderDigest: the digest in the annotations is the one apply records
// for the same directory (state.TreeDigest), and the ConfigMap holds every
// file under a name derived from it.
func TestRenderDigest(t *testing.T) {
	for _, dir := range []string{"reach", "hard"} {
		cfg := load(t, dir)
		cfg.Image = "x"
		r, err := Render(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want, err := state.TreeDigest(filepath.Join("testdata", dir))
		if err != nil {
			t.Fatal(err)
		}
		if r.Digest != want {
			t.Errorf("%s: digest %s, apply records %s", dir, r.Digest, want)
		}
		cm := find[*corev1.ConfigMap](t, r)
		if !strings.HasSuffix(cm.Name, state.ShortDigest(want)) || cm.Immutable == nil || !*cm.Immutable {
			t.Errorf("%s: ConfigMap %s (immutable %v)", dir, cm.Name, cm.Immutable)
		}
		if cm.Data["policies__sandbox.yaml"] == "" {
			t.Errorf("%s: ConfigMap lacks the policy: %v", dir, cm.Data)
		}
	}
}

// TestWriteRoundTrip: the YAML stream and the JSON List decode back into
// the same typed objects, and the YAML's comments state the Pod Security
// level.
func TestWriteRoundTrip(t *testing.T) {
	r, err := Render(load(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Write(&out, r, FormatYAML); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "# - Pod Security level: baseline") {
		t.Errorf("no Pod Security comment:\n%.600s", out.String())
	}
	docs := strings.Split(out.String(), "\n---\n")[1:]
	if len(docs) != len(r.Objects) {
		t.Fatalf("%d documents for %d objects", len(docs), len(r.Objects))
	}
	tmpl := &extv1.SandboxTemplate{}
	if err := yaml.UnmarshalStrict([]byte(docs[2]), tmpl); err != nil {
		t.Fatal(err)
	}
	want := find[*extv1.SandboxTemplate](t, r)
	a, _ := json.Marshal(tmpl)
	b, _ := json.Marshal(want)
	if !bytes.Equal(a, b) {
		t.Errorf("SandboxTemplate does not round-trip:\n%s\n%s", a, b)
	}
	out.Reset()
	if err := Write(&out, r, FormatJSON); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string            `json:"kind"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || list.Kind != "List" || len(list.Items) != len(r.Objects) {
		t.Fatalf("JSON list: %v %s %d", err, list.Kind, len(list.Items))
	}
	if err := Write(&out, r, "toml"); err == nil {
		t.Error("format toml accepted")
	}
}

// TestSeccompProfile: the shipped profile parses, allows what nemoclaw
// needs to build its sandbox and refuses what reaches the node's kernel.
func TestSeccompProfile(t *testing.T) {
	names, err := profileDenied()
	if err != nil {
		t.Fatal(err)
	}
	denied := map[string]bool{}
	for _, n := range names {
		denied[n] = true
	}
	for _, need := range []string{"unshare", "clone", "clone3", "setns", "mount", "umount2", "pivot_root", "seccomp", "landlock_create_ruleset", "landlock_restrict_self", "memfd_create"} {
		if denied[need] {
			t.Errorf("%s is denied: nemoclaw needs it to build its sandbox", need)
		}
	}
	for _, bad := range []string{"kexec_load", "init_module", "finit_module", "bpf", "perf_event_open", "ptrace", "open_by_handle_at", "keyctl", "io_uring_setup", "userfaultfd"} {
		if !denied[bad] {
			t.Errorf("%s is allowed", bad)
		}
	}
}

// TestRenderCredentialFile: a credential file outside the agent's paths is
// mounted read-only from the Secret at the path the policy names, into the
// supervisor only; one under /sandbox (the workspace) is refused.
func TestRenderCredentialFile(t *testing.T) {
	cfg := load(t, "credfile-ok")
	cfg.Image = "x"
	r, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := find[*extv1.SandboxTemplate](t, r).Spec.PodTemplate.Spec
	var mount *corev1.VolumeMount
	for i, m := range pod.Containers[0].VolumeMounts {
		if m.Name == "credentials" {
			mount = &pod.Containers[0].VolumeMounts[i]
		}
	}
	if mount == nil || mount.MountPath != "/run/nemoclaw/api/token" || mount.SubPath != "file.api_token" || !mount.ReadOnly {
		t.Fatalf("credential mount %+v", mount)
	}
	v := pod.Volumes[len(pod.Volumes)-1]
	if v.Secret == nil || v.Secret.SecretName != "credfile-ok-credentials" || v.Secret.Items[0].Key != "file.api_token" {
		t.Errorf("credential volume %+v", v)
	}
	cfg.Blueprint.Policy.NetworkPolicies["api"].Endpoints[0].Credentials[0].File = "/sandbox/.token"
	if _, err := Render(cfg); err == nil || !strings.Contains(err.Error(), "readable by the agent") {
		t.Errorf("a credential file in the workspace: %v", err)
	}
}
