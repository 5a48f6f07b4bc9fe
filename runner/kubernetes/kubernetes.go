// Package kubernetes renders a verified blueprint as Kubernetes objects for
// kubernetes-sigs/agent-sandbox (v1beta1): a SandboxTemplate whose pod runs
// nemoclaw as the supervisor with the agent in its sandbox, a NetworkPolicy
// that lets the pod reach only what the blueprint's policy and inference
// route need, the ConfigMap that carries the blueprint's files, and a
// SandboxWarmPool with a SandboxClaim, or a Sandbox.
//
// Every object is built with the typed APIs (k8s.io/api,
// sigs.k8s.io/agent-sandbox); no string templates. Credentials are Secret
// references, never values. The same policy as on one host applies inside
// the pod: nemoclaw builds its own sandbox there (user, mount, pid and net
// namespaces, Landlock, seccomp, the egress proxy), so the pod is given what
// that needs (hostUsers: false, an unmasked /proc, a seccomp profile that
// permits creating namespaces) and nothing more (no privileged container, no
// capability, no service account token).
package kubernetes

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	sandboxv1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
)

// PodSecurityLevel is the Pod Security Standard the rendered pod meets:
// everything "restricted" asks for except procMount, which must be Unmasked
// for nemoclaw to mount /proc in its sandbox's pid namespace (the runtime's
// masks over /proc make a fresh proc mount fail with EPERM). "baseline"
// allows that for pods in a user namespace (hostUsers: false) since
// Kubernetes 1.35.
const PodSecurityLevel = "baseline"

// Annotation and label keys the rendered objects carry.
const (
	AnnotationDigest = "nemoclaw.dev/blueprint-digest"
	// AnnotationManifest is the OCI manifest digest a registry
	// reference resolved to (absent for a directory).
	AnnotationManifest = "nemoclaw.dev/blueprint-manifest-digest"
	AnnotationSigner   = "nemoclaw.dev/blueprint-signer"
	AnnotationVersion  = "nemoclaw.dev/blueprint-version"
	AnnotationSource   = "nemoclaw.dev/blueprint-source"
	AnnotationProfile  = "nemoclaw.dev/inference-profile"
	AnnotationSecurity = "nemoclaw.dev/pod-security-level"
	// LabelSandbox selects the pods of one rendered sandbox (the
	// NetworkPolicy's podSelector).
	LabelSandbox = "nemoclaw.dev/sandbox"
)

// Paths inside the pod.
const (
	// BlueprintMount is where the blueprint's ConfigMap is mounted.
	BlueprintMount = "/etc/nemoclaw/blueprint"
	// HomeMount is $NEMOCLAW_HOME: run state and the agent's workspace.
	HomeMount = "/var/lib/nemoclaw"
	// SeccompProfile is the Localhost seccomp profile's path below the
	// kubelet's seccomp directory (/var/lib/kubelet/seccomp).
	SeccompProfile = "nemoclaw/supervisor.json"
	// SupervisorUID is the uid (inside the pod's user namespace) nemoclaw
	// runs as: not root, so it builds its sandbox rootless, in a user
	// namespace of its own.
	SupervisorUID = 65532
)

// Config is what Render needs.
type Config struct {
	// Blueprint is the loaded, validated blueprint.
	Blueprint *blueprint.Blueprint
	// Files are the blueprint directory's files (the embedded FS for the
	// default blueprint): they travel in a ConfigMap.
	Files fs.FS
	// Source is what the user named (directory, reference, "embedded:default").
	Source string
	// Signer is the verified signer's identity; "" for an unsigned local
	// directory or the embedded blueprint (which the binary carries).
	Signer string
	// ManifestDigest is the OCI manifest digest a registry reference was
	// fetched and verified at; "" for a directory.
	ManifestDigest string
	// Namespace and Name place the objects; Name defaults to the
	// blueprint's sandbox name.
	Namespace, Name string
	// Image is the container image holding nemoclaw and the agent's tools;
	// default: the blueprint's components.sandbox.image.
	Image string
	// Profile is the inference profile (default: the blueprint's default).
	Profile string
	// WarmPool, when not nil, renders a SandboxWarmPool of that many
	// replicas and a SandboxClaim; nil renders a Sandbox.
	WarmPool *int32
	// RuntimeClass is the pod's runtimeClassName ("" for the node default).
	RuntimeClass string
	// SecretName is the Secret holding the credentials (default NAME-credentials).
	SecretName string
	// Logger receives what was decided; nil discards.
	Logger *slog.Logger
}

// Rendered is the result of Render.
type Rendered struct {
	// Objects are the objects in apply order, each with its header comment.
	Objects []Object
	// Digest is the blueprint tree's digest (sha256 over every file's path,
	// size and content, as state.TreeDigest computes it).
	Digest string
	// Notes say what the output cannot express or what a runtime class
	// drops; they head the YAML output.
	Notes []string
}

// Object is one rendered object and the comment that explains it.
type Object struct {
	Comment string
	Object  runtime.Object
}

// RefusalError is a blueprint the requested target cannot run as asked
// (e.g. hard_requirement Landlock under gVisor). The CLI exits 3 on it.
type RefusalError struct{ Reason string }

func (e *RefusalError) Error() string { return e.Reason }

// Render builds the objects for cfg. Nothing is written: invalid input is
// refused here, before any object exists.
func Render(cfg Config) (*Rendered, error) {
	b := cfg.Blueprint
	if b == nil || b.Policy == nil {
		return nil, errors.New("render: no loaded blueprint")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := cmp.Or(cfg.Name, b.SandboxName())
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 || len(name) > 40 {
		return nil, fmt.Errorf("render: name %q: %s; give --name with at most 40 lower-case letters, digits and '-' (derived object names add up to 23 characters)", name, strings.Join(append(errs, "at most 40 characters"), "; "))
	}
	ns := cmp.Or(cfg.Namespace, "default")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("render: namespace %q: %s", ns, strings.Join(errs, "; "))
	}
	image := cmp.Or(cfg.Image, sandboxImage(b))
	if image == "" {
		return nil, errors.New("render: no image: the blueprint names none (components.sandbox.image); give --image with an image that holds nemoclaw and the agent's tools (docs/kubernetes.md, 'The image')")
	}
	if strings.ContainsAny(image, " \t\n") {
		return nil, fmt.Errorf("render: --image %q contains white space", image)
	}
	if cfg.WarmPool != nil && *cfg.WarmPool < 0 {
		return nil, fmt.Errorf("render: --warm-pool %d: want 0 or more replicas", *cfg.WarmPool)
	}
	if rc := cfg.RuntimeClass; rc != "" {
		if errs := validation.IsDNS1123Subdomain(rc); len(errs) > 0 {
			return nil, fmt.Errorf("render: --runtime-class %q: %s", rc, strings.Join(errs, "; "))
		}
	}
	profile, prof, ok := b.Profile(cfg.Profile)
	if cfg.Profile != "" && !ok {
		return nil, fmt.Errorf("render: inference profile %q is not in the blueprint (it has %s)", cfg.Profile, strings.Join(b.Profiles, ", "))
	}
	r := &Rendered{}
	runtimeNotes, err := runtimeClassNotes(cfg.RuntimeClass, b)
	if err != nil {
		return nil, err
	}
	r.Notes = append(r.Notes, runtimeNotes...)

	files, err := collectFiles(cfg.Files)
	if err != nil {
		return nil, err
	}
	r.Digest = treeDigest(files)
	creds, err := credentials(b, prof)
	if err != nil {
		return nil, err
	}
	secret := cmp.Or(cfg.SecretName, name+"-credentials")
	if errs := validation.IsDNS1123Subdomain(secret); len(errs) > 0 {
		return nil, fmt.Errorf("render: --secret %q: %s", secret, strings.Join(errs, "; "))
	}

	meta := objectMeta{
		name: name, namespace: ns, digest: r.Digest, signer: cfg.Signer,
		version: b.Version, source: cmp.Or(cfg.Source, b.Dir), profile: profile, manifest: cfg.ManifestDigest,
	}
	cm, items, err := blueprintConfigMap(meta, files)
	if err != nil {
		return nil, err
	}
	egress, netNotes := egressRules(b, profile, prof)
	r.Notes = append(r.Notes, netNotes...)
	np := networkPolicy(meta, egress)
	pod := podTemplate(meta, podConfig{
		image: image, configMap: cm.Name, items: items, profile: profile,
		runtimeClass: cfg.RuntimeClass, secret: secret, creds: creds, blueprint: b,
	})
	if len(creds) > 0 {
		r.Notes = append(r.Notes, secretNote(ns, secret, creds))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("Pod Security level: %s (every restricted control but procMount: Unmasked, which nemoclaw needs to mount /proc in its sandbox and baseline allows with hostUsers: false); label the namespace pod-security.kubernetes.io/enforce=%s", PodSecurityLevel, PodSecurityLevel))
	r.Notes = append(r.Notes, fmt.Sprintf("seccomp: the pod uses the Localhost profile %s (RuntimeDefault refuses unshare(CLONE_NEWUSER) to a container without CAP_SYS_ADMIN); install it on every node under /var/lib/kubelet/seccomp/ (nemoclaw blueprint render --write-seccomp-profile FILE writes it)", SeccompProfile))

	tmpl := &extv1.SandboxTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: extv1.GroupVersion.String(), Kind: extv1.SandboxTemplateKind},
		ObjectMeta: meta.object(name),
		Spec: extv1.SandboxTemplateSpec{
			// No Service: the pod serves nothing (ingress is denied);
			// forward_ports are reached with kubectl port-forward.
			SandboxBlueprint: sandboxv1.SandboxBlueprint{PodTemplate: pod, Service: new(false)},
			// The NetworkPolicy is ours (below): it covers the template's
			// pods and a Sandbox's alike, and says why each rule is there.
			// A Managed template with no rules would get the controller's
			// default, which opens every port to the public internet.
			NetworkPolicyManagement: extv1.NetworkPolicyManagementUnmanaged,
			EnvVarsInjectionPolicy:  extv1.EnvVarsInjectionPolicyDisallowed,
		},
	}
	r.Objects = append(r.Objects,
		Object{fmt.Sprintf("The blueprint's files (%s, digest %s), immutable: a new blueprint version is a new ConfigMap.", meta.source, r.Digest), cm},
		Object{"Egress: DNS to kube-dns, and TCP to public addresses on the ports the blueprint's endpoints and inference route use; no private range, no link-local (cloud metadata). The proxy in the pod enforces host names and L7 rules. Ingress: none.", np},
		Object{"The pod: nemoclaw supervises; the agent runs in nemoclaw's sandbox inside it, with the blueprint's policy.", tmpl},
	)
	if cfg.WarmPool != nil {
		pool := &extv1.SandboxWarmPool{
			TypeMeta:   metav1.TypeMeta{APIVersion: extv1.GroupVersion.String(), Kind: extv1.SandboxWarmPoolKind},
			ObjectMeta: meta.object(name),
			Spec: extv1.SandboxWarmPoolSpec{
				Replicas:    cfg.WarmPool,
				TemplateRef: extv1.SandboxTemplateRef{Name: name},
				UpdateStrategy: &extv1.SandboxWarmPoolUpdateStrategy{
					Type: extv1.RecreateSandboxWarmPoolUpdateStrategyType,
				},
			},
		}
		claim := &extv1.SandboxClaim{
			TypeMeta:   metav1.TypeMeta{APIVersion: extv1.GroupVersion.String(), Kind: extv1.SandboxClaimKind},
			ObjectMeta: meta.object(name),
			Spec:       extv1.SandboxClaimSpec{WarmPoolRef: extv1.SandboxWarmPoolRef{Name: name}},
		}
		r.Objects = append(r.Objects,
			Object{fmt.Sprintf("%d pre-started sandbox(es); Recreate replaces unclaimed ones when the template changes (a new blueprint version).", *cfg.WarmPool), pool},
			Object{"One sandbox, taken from the warm pool.", claim},
		)
	} else {
		sb := &sandboxv1.Sandbox{
			TypeMeta:   metav1.TypeMeta{APIVersion: sandboxv1.GroupVersion.String(), Kind: "Sandbox"},
			ObjectMeta: meta.object(name),
			Spec: sandboxv1.SandboxSpec{
				SandboxBlueprint: sandboxv1.SandboxBlueprint{PodTemplate: *pod.DeepCopy(), Service: new(false)},
			},
		}
		r.Objects = append(r.Objects, Object{"One sandbox from the same pod template (--warm-pool K renders a SandboxWarmPool and a SandboxClaim instead).", sb})
	}
	log.Info("rendered blueprint for kubernetes", "name", name, "namespace", ns, "digest", r.Digest, "profile", profile, "objects", len(r.Objects))
	return r, nil
}

func sandboxImage(b *blueprint.Blueprint) string {
	if s := b.Components.Sandbox; s != nil {
		return s.Image
	}
	return ""
}

// objectMeta is what every rendered object's metadata carries.
type objectMeta struct {
	name, namespace, digest, signer, version, source, profile, manifest string
}

func (m objectMeta) labels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "nemoclaw",
		"app.kubernetes.io/instance":   m.name,
		"app.kubernetes.io/managed-by": "nemoclaw",
		LabelSandbox:                   m.name,
	}
}

func (m objectMeta) annotations() map[string]string {
	a := map[string]string{
		AnnotationDigest:   m.digest,
		AnnotationSigner:   cmp.Or(m.signer, "unsigned: "+unsignedWhy(m.source)),
		AnnotationVersion:  m.version,
		AnnotationSource:   m.source,
		AnnotationSecurity: PodSecurityLevel,
	}
	if m.profile != "" {
		a[AnnotationProfile] = m.profile
	}
	if m.manifest != "" {
		a[AnnotationManifest] = m.manifest
	}
	return a
}

func unsignedWhy(source string) string {
	if source == blueprint.EmbeddedDefault {
		return "the blueprint embedded in nemoclaw"
	}
	return "a local directory"
}

func (m objectMeta) object(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: m.namespace, Labels: m.labels(), Annotations: m.annotations()}
}

// file is one blueprint file.
type file struct {
	path string
	data []byte
}

// maxBlueprintBytes keeps the ConfigMap under the API server's 1 MiB
// object limit with room for its metadata.
const maxBlueprintBytes = 900 << 10

// collectFiles reads every regular file of fsys in path order.
func collectFiles(fsys fs.FS) ([]file, error) {
	if fsys == nil {
		return nil, errors.New("render: no blueprint files")
	}
	var files []file
	total := 0
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		total += len(data)
		if total > maxBlueprintBytes {
			return fmt.Errorf("the blueprint's files exceed %d KiB, more than a ConfigMap holds", maxBlueprintBytes>>10)
		}
		files = append(files, file{p, data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("render: read blueprint files: %w", err)
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.path, b.path) })
	return files, nil
}

// treeDigest is state.TreeDigest's digest of the same files: each file's
// slash path, NUL, size, NUL and content, in path order.
func treeDigest(files []file) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.path, len(f.data))
		h.Write(f.data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// blueprintConfigMap is the immutable ConfigMap holding the files, named
// after their digest, and the volume items that lay them out again.
func blueprintConfigMap(m objectMeta, files []file) (*corev1.ConfigMap, []corev1.KeyToPath, error) {
	short := strings.TrimPrefix(m.digest, "sha256:")[:12]
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: m.object(m.name + "-blueprint-" + short),
		Immutable:  new(true),
		Data:       map[string]string{},
		BinaryData: map[string][]byte{},
	}
	var items []corev1.KeyToPath
	for _, f := range files {
		key := strings.ReplaceAll(f.path, "/", "__")
		if errs := validation.IsConfigMapKey(key); len(errs) > 0 {
			return nil, nil, fmt.Errorf("render: blueprint file %s cannot be a ConfigMap key (%s); rename it", f.path, strings.Join(errs, "; "))
		}
		if _, dup := cm.Data[key]; dup {
			return nil, nil, fmt.Errorf("render: blueprint files %s and another map to the same ConfigMap key %s; rename one", f.path, key)
		}
		if _, dup := cm.BinaryData[key]; dup {
			return nil, nil, fmt.Errorf("render: blueprint files %s and another map to the same ConfigMap key %s; rename one", f.path, key)
		}
		if isText(f.data) {
			cm.Data[key] = string(f.data)
		} else {
			cm.BinaryData[key] = f.data
		}
		items = append(items, corev1.KeyToPath{Key: key, Path: path.Clean(f.path)})
	}
	if len(cm.BinaryData) == 0 {
		cm.BinaryData = nil
	}
	return cm, items, nil
}

func isText(b []byte) bool {
	return !slices.Contains(b, 0) && strings.ToValidUTF8(string(b), "\uFFFD") == string(b)
}
