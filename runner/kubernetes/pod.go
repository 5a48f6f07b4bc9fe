package kubernetes

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	sandboxv1 "sigs.k8s.io/agent-sandbox/api/v1beta1"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// SupervisorContainer is the name of the pod's one container.
const SupervisorContainer = "supervisor"

// credential is one secret the supervisor needs: an environment variable
// (inference credential_env, an endpoint credential's env) or a file (an
// endpoint credential's file), both filled from the Secret by reference.
type credential struct {
	key      string // the Secret's key
	env      string // environment variable of the supervisor, or ""
	file     string // absolute path of the file, or ""
	optional bool   // a default exists (credential_default)
	why      string
}

// credentials lists the secrets of the blueprint's policy and of the
// chosen inference profile, and refuses any the agent could read.
func credentials(b *blueprint.Blueprint, prof *blueprint.InferenceProfile) ([]credential, error) {
	seen := map[string]bool{}
	var out []credential
	add := func(c credential) error {
		if seen[c.key] {
			return nil
		}
		if errs := validation.IsConfigMapKey(c.key); len(errs) > 0 {
			return fmt.Errorf("render: credential %s (%s) cannot be a Secret key: %s", c.key, c.why, strings.Join(errs, "; "))
		}
		seen[c.key] = true
		out = append(out, c)
		return nil
	}
	if prof != nil && prof.CredentialEnv != "" {
		if err := add(credential{key: prof.CredentialEnv, env: prof.CredentialEnv, optional: prof.CredentialDefault != "", why: "inference credential_env"}); err != nil {
			return nil, err
		}
	}
	for k, e := range endpoints(b.Policy) {
		for _, c := range e.Credentials {
			why := fmt.Sprintf("network policy %s, credential %s", k, c.Name)
			switch {
			case c.Env != "":
				if err := add(credential{key: c.Env, env: c.Env, why: why}); err != nil {
					return nil, err
				}
			case c.File != "":
				f := path.Clean(c.File)
				if !path.IsAbs(f) {
					return nil, fmt.Errorf("render: %s: file %q must be absolute to be mounted in the pod", why, c.File)
				}
				if p, ok := agentReadable(b.Policy, f); ok {
					return nil, fmt.Errorf("render: %s: file %s would be readable by the agent (the policy's filesystem_policy allows %s); keep credential files outside every read_only and read_write path", why, f, p)
				}
				if err := add(credential{key: "file." + strings.ToLower(c.Name), file: f, why: why}); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// agentReadable reports whether the policy lets the agent read p, and the
// allowing path.
func agentReadable(p *policy.Policy, f string) (string, bool) {
	if p.Filesystem == nil {
		return "", false
	}
	allowed := append(append([]string{}, p.Filesystem.ReadOnly...), p.Filesystem.ReadWrite...)
	if p.Filesystem.IncludeWorkdir {
		allowed = append(allowed, "/sandbox")
	}
	for _, a := range allowed {
		a = path.Clean(a)
		if a == "/" || f == a || strings.HasPrefix(f, a+"/") {
			return a, true
		}
	}
	return "", false
}

// secretNote tells the platform team which Secret to create.
func secretNote(ns, secret string, creds []credential) string {
	var keys []string
	for _, c := range creds {
		k := c.key
		if c.optional {
			k += " (optional)"
		}
		keys = append(keys, k)
	}
	return fmt.Sprintf("credentials come from Secret %s/%s by reference, into the supervisor only (the agent's environment is built by nemoclaw and holds none): create it with key(s) %s, e.g. kubectl -n %s create secret generic %s --from-literal=KEY=VALUE",
		ns, secret, strings.Join(keys, ", "), ns, secret)
}

// podConfig is what the pod template needs besides the metadata.
type podConfig struct {
	image, configMap, profile, runtimeClass, secret string
	items                                           []corev1.KeyToPath
	creds                                           []credential
	blueprint                                       *blueprint.Blueprint
}

// podTemplate is the sandbox's pod: one container, nemoclaw as the
// supervisor, applying the blueprint from its ConfigMap.
func podTemplate(m objectMeta, c podConfig) sandboxv1.PodTemplate {
	args := []string{"blueprint", "apply", BlueprintMount, "--name", m.name}
	if c.profile != "" {
		args = append(args, "--profile", c.profile)
	}
	env := []corev1.EnvVar{{Name: "NEMOCLAW_HOME", Value: HomeMount}}
	mounts := []corev1.VolumeMount{
		{Name: "blueprint", MountPath: BlueprintMount, ReadOnly: true},
		{Name: "home", MountPath: HomeMount},
		{Name: "tmp", MountPath: "/tmp"},
	}
	volumes := []corev1.Volume{
		{Name: "blueprint", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: c.configMap}, Items: c.items, DefaultMode: new(int32(0o444)),
		}}},
		{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	var fileItems []corev1.KeyToPath
	for _, cr := range c.creds {
		if cr.env != "" {
			env = append(env, corev1.EnvVar{Name: cr.env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: c.secret}, Key: cr.key, Optional: new(cr.optional),
			}}})
			continue
		}
		fileItems = append(fileItems, corev1.KeyToPath{Key: cr.key, Path: cr.key})
		mounts = append(mounts, corev1.VolumeMount{Name: "credentials", MountPath: cr.file, SubPath: cr.key, ReadOnly: true})
	}
	if len(fileItems) > 0 {
		volumes = append(volumes, corev1.Volume{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: c.secret, Items: fileItems, DefaultMode: new(int32(0o440)),
		}}})
	}
	uid := int64(SupervisorUID)
	pod := corev1.PodSpec{
		// A user namespace of the pod's own: uid 0 in the pod is nobody on
		// the node, and nemoclaw may create the nested user namespace its
		// sandbox needs.
		HostUsers:                    new(false),
		AutomountServiceAccountToken: new(false),
		EnableServiceLinks:           new(false),
		RestartPolicy:                corev1.RestartPolicyNever,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: new(true),
			RunAsUser:    &uid,
			RunAsGroup:   &uid,
			FSGroup:      &uid,
			SeccompProfile: &corev1.SeccompProfile{
				Type:             corev1.SeccompProfileTypeLocalhost,
				LocalhostProfile: new(SeccompProfile),
			},
		},
		Containers: []corev1.Container{{
			Name:    SupervisorContainer,
			Image:   c.image,
			Command: []string{"nemoclaw"},
			Args:    args,
			Env:     env,
			// The agent's terminal: `kubectl attach -it` reaches it.
			Stdin:        true,
			TTY:          true,
			VolumeMounts: mounts,
			Resources:    resources(c.blueprint),
			SecurityContext: &corev1.SecurityContext{
				Privileged:               new(false),
				AllowPrivilegeEscalation: new(false),
				ReadOnlyRootFilesystem:   new(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				// nemoclaw mounts a fresh /proc in its sandbox's pid
				// namespace; the runtime's masks over /proc forbid that.
				ProcMount: new(corev1.UnmaskedProcMount),
			},
		}},
		Volumes: volumes,
	}
	if c.runtimeClass != "" {
		pod.RuntimeClassName = new(c.runtimeClass)
	}
	return sandboxv1.PodTemplate{
		ObjectMeta: sandboxv1.PodMetadata{Labels: m.labels(), Annotations: m.annotations()},
		Spec:       pod,
	}
}

// resources are the policy's memory and CPU caps as the container's limits
// (and requests, so the scheduler places what the sandbox may use), and the
// blueprint's GPU count as nvidia.com/gpu.
func resources(b *blueprint.Blueprint) corev1.ResourceRequirements {
	rr := corev1.ResourceRequirements{}
	set := func(name corev1.ResourceName, q resource.Quantity) {
		if rr.Limits == nil {
			rr.Limits, rr.Requests = corev1.ResourceList{}, corev1.ResourceList{}
		}
		rr.Limits[name], rr.Requests[name] = q, q
	}
	if r := b.Policy.Resources; r != nil {
		if q, err := resource.ParseQuantity(r.Memory); r.Memory != "" && err == nil {
			set(corev1.ResourceMemory, q)
		}
		if q, err := resource.ParseQuantity(r.CPU); r.CPU != "" && err == nil {
			set(corev1.ResourceCPU, q)
		}
	}
	if g := b.Components.GPU; g != nil && g.Count > 0 {
		set("nvidia.com/gpu", *resource.NewQuantity(int64(g.Count), resource.DecimalSI))
	}
	return rr
}
