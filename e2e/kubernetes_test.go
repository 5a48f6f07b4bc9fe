package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
)

// The Kubernetes tests run `nemoclaw blueprint render --target kubernetes`
// against a real control plane started on 127.0.0.1: etcd, kube-apiserver
// (RBAC on, Pod Security admission, certificates and tokens made here) and
// kubectl, built from the Go module proxy by kube-tools.sh, plus the
// agent-sandbox CRDs and controller from the module this repository
// renders with. There is no kubelet and no scheduler: pods stay Pending,
// while validation, admission and the controller's reconciliation are real.

// kubeTools returns the directory holding the control plane's binaries,
// running kube-tools.sh, which builds them once per machine (make
// e2e-tools runs it first, outside the suite's timeout) and is a no-op
// afterwards.
func kubeTools(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("bash", "kube-tools.sh")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		testutil.SkipOrFail(t, fmt.Sprintf("Building the Kubernetes control plane from the Go module proxy (e2e/kube-tools.sh) failed (%v): %s", err, lastLines(errb.String(), 5)))
	}
	dir := strings.TrimSpace(lastLines(out.String(), 1))
	if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err != nil {
		t.Fatalf("kube-tools.sh printed %q, which holds no kube-apiserver: %v", dir, err)
	}
	return dir
}

// TestKubeToolsBuilt builds (or finds cached) the control plane; `make
// e2e-tools` runs it on its own with a timeout that covers a cold build.
func TestKubeToolsBuilt(t *testing.T) {
	dir := kubeTools(t)
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "agent-sandbox-controller"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Error(err)
		}
	}
}

// cluster is one control plane of the test.
type cluster struct {
	t          *testing.T
	tools, dir string
	server     string
	kubeconfig string // the admin's (system:masters, by client certificate)
	caPEM      []byte
}

// on returns c for subtest t: its helpers fail t, not the parent.
func (c *cluster) on(t *testing.T) *cluster {
	cc := *c
	cc.t = t
	return &cc
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pki makes the cluster's CA, the API server's serving certificate, the
// admin's client certificate and the service-account signing key.
func (c *cluster) pki() {
	t := c.t
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(c.dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(name, "EC PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "nemoclaw-e2e-ca"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write("ca.crt", "CERTIFICATE", caDER)
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	issue := func(name string, tmpl *x509.Certificate) {
		k := key()
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(name+".crt", "CERTIFICATE", der)
		writeKey(name+".key", k)
	}
	issue("apiserver", &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost", "kubernetes.default.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	issue("admin", &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "nemoclaw-e2e-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	sa := key()
	writeKey("sa.key", sa)
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	write("sa.pub", "PUBLIC KEY", pub)
}

// start runs bin with args in the background, its output in dir/NAME.log,
// until the test ends.
func (c *cluster) start(name string, args ...string) {
	c.t.Helper()
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(c.tools, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if c.t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			c.t.Logf("%s log (end):\n%s", name, lastLines(string(b), 25))
		}
	})
}

// startCluster starts etcd and kube-apiserver and waits until the API
// server is ready.
func startCluster(t *testing.T) *cluster {
	c := &cluster{t: t, tools: kubeTools(t), dir: t.TempDir()}
	c.pki()
	etcdClient, etcdPeer, api := freePort(t), freePort(t), freePort(t)
	c.start("etcd", "--data-dir", filepath.Join(c.dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("default=http://127.0.0.1:%d", etcdPeer),
		"--listen-metrics-urls", "", "--log-level", "warn")
	p := func(n string) string { return filepath.Join(c.dir, n) }
	c.start("kube-apiserver",
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClient),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", api),
		"--cert-dir="+p("certs"), "--tls-cert-file="+p("apiserver.crt"), "--tls-private-key-file="+p("apiserver.key"),
		"--client-ca-file="+p("ca.crt"), "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p("sa.pub"), "--service-account-signing-key-file="+p("sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24", "--enable-priority-and-fairness=false", "--profiling=false",
		"--endpoint-reconciler-type=none")
	c.server = fmt.Sprintf("https://127.0.0.1:%d", api)
	c.kubeconfig = p("admin.kubeconfig")
	c.writeKubeconfig(c.kubeconfig, map[string]any{"client-certificate": p("admin.crt"), "client-key": p("admin.key")})

	cert, err := tls.LoadX509KeyPair(p("admin.crt"), p("admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := hc.Get(c.server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver at %s not ready after 3 minutes (last: %v)", c.server, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return c
}

// writeKubeconfig writes a kubeconfig for the cluster with user's credentials.
func (c *cluster) writeKubeconfig(path string, user map[string]any) {
	cfg := map[string]any{
		"apiVersion": "v1", "kind": "Config", "current-context": "e2e",
		"clusters": []any{map[string]any{"name": "e2e", "cluster": map[string]any{"server": c.server, "certificate-authority": filepath.Join(c.dir, "ca.crt")}}},
		"users":    []any{map[string]any{"name": "e2e", "user": user}},
		"contexts": []any{map[string]any{"name": "e2e", "context": map[string]any{"cluster": "e2e", "user": "e2e"}}},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// kubectl runs the real kubectl as the admin, stdin given.
func (c *cluster) kubectl(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.tools, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), "HOME="+c.dir)
	return runCmd(c.t, cmd)
}

// mustKubectl runs kubectl and fails the test unless it exits 0.
func (c *cluster) mustKubectl(stdin string, args ...string) string {
	c.t.Helper()
	out, errs, code := c.kubectl(stdin, args...)
	if code != 0 {
		c.t.Fatalf("kubectl %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// namespace creates ns labelled to enforce the Pod Security level, with
// its default service account (there is no controller-manager to make it).
func (c *cluster) namespace(ns, level string) {
	c.t.Helper()
	c.mustKubectl(fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q,"labels":{"pod-security.kubernetes.io/enforce":%q,"pod-security.kubernetes.io/enforce-version":"latest"}}}`, ns, level),
		"apply", "--server-side", "-f", "-")
	c.mustKubectl("", "-n", ns, "create", "serviceaccount", "default")
}

// agentSandboxDir is the sigs.k8s.io/agent-sandbox module this repository
// renders with (its CRDs and RBAC come from there).
func agentSandboxDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/agent-sandbox").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("go list -m sigs.k8s.io/agent-sandbox: %v", err)
	}
	return dir
}

// installCRDs applies agent-sandbox's CRDs with conversion strategy None
// (no conversion webhook runs here) and waits until they are served.
func (c *cluster) installCRDs() {
	c.t.Helper()
	files, err := filepath.Glob(filepath.Join(agentSandboxDir(c.t), "k8s", "crds", "*.yaml"))
	if err != nil || len(files) != 4 {
		c.t.Fatalf("agent-sandbox CRDs: %v %v", files, err)
	}
	var docs []string
	var names []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			c.t.Fatal(err)
		}
		var crd map[string]any
		if err := yaml.Unmarshal(b, &crd); err != nil {
			c.t.Fatalf("%s: %v", f, err)
		}
		crd["spec"].(map[string]any)["conversion"] = map[string]any{"strategy": "None"}
		j, err := json.Marshal(crd)
		if err != nil {
			c.t.Fatal(err)
		}
		docs = append(docs, string(j))
		names = append(names, "crd/"+crd["metadata"].(map[string]any)["name"].(string))
	}
	c.mustKubectl(`{"apiVersion":"v1","kind":"List","items":[`+strings.Join(docs, ",")+`]}`, "apply", "--server-side", "-f", "-")
	c.mustKubectl("", append([]string{"wait", "--for", "condition=Established", "--timeout", "120s"}, names...)...)
}

// render runs nemoclaw blueprint render and returns its stdout.
func render(t *testing.T, args ...string) string {
	t.Helper()
	return newUser(t).must(append([]string{"blueprint", "render", "--target", "kubernetes"}, args...)...)
}

// renderedObject returns the rendered document of kind from a YAML stream,
// as JSON.
func renderedObject(t *testing.T, stream, kind string) map[string]any {
	t.Helper()
	for _, doc := range strings.Split(stream, "\n---\n") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if m["kind"] == kind {
			return m
		}
	}
	t.Fatalf("no %s in the rendered objects", kind)
	return nil
}

// subset reports the first place where want is not contained in got: maps
// by key, lists element by element, scalars by value. The API server adds
// defaults (and the controller labels); it must not drop or change what
// we rendered.
func subset(want, got any, at string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %v", at, got)
		}
		for k, v := range w {
			if d := subset(v, g[k], at+"."+k); d != "" {
				return d
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %d elements, got %v", at, len(w), got)
		}
		for i := range w {
			if d := subset(w[i], g[i], fmt.Sprintf("%s[%d]", at, i)); d != "" {
				return d
			}
		}
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: want %v, got %v", at, want, got)
		}
	}
	return ""
}

// getJSON fetches an object as decoded JSON.
func (c *cluster) getJSON(args ...string) map[string]any {
	c.t.Helper()
	out := c.mustKubectl("", append([]string{"get", "-o", "json"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

// nemoclawBlueprint is NemoClaw's own blueprint (a copy kept in
// runner/blueprint's testdata), as an absolute path: nemoclaw runs in the
// user's project directory.
func nemoclawBlueprint(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "runner", "blueprint", "testdata", "nemoclaw-blueprint"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// openclawBlueprint is an OpenClaw blueprint: NemoClaw's OpenClaw sandbox
// policy with the gateway as the agent command.
func openclawBlueprint(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "runner", "blueprint", "testdata", "nemoclaw-blueprint", "policies", "openclaw-sandbox.yaml")
	pol, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "openclaw-sandbox.yaml"), pol, 0o644); err != nil {
		t.Fatal(err)
	}
	bp := `version: "1.0.0"
profiles: [nvidia]
components:
  sandbox:
    name: openclaw
    image: registry.example.com/agents/openclaw:2026.3
    command: ["openclaw", "gateway"]
    forward_ports: [18789]
  inference:
    profiles:
      nvidia:
        provider_type: nvidia
        endpoint: "https://integrate.api.nvidia.com/v1"
        model: "nvidia/nemotron-3-super-120b-a12b"
        credential_env: NVIDIA_API_KEY
  policy:
    base: policies/openclaw-sandbox.yaml
`
	if err := os.WriteFile(filepath.Join(dir, "blueprint.yaml"), []byte(bp), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKubernetesRender applies what render prints for the embedded
// default blueprint, NemoClaw's blueprint and an OpenClaw blueprint to a
// real API server with server-side apply; checks that nothing we rendered
// was pruned or changed; that a namespace enforcing the Pod Security level
// we claim admits the pod and one enforcing the next stricter refuses it
// for the one reason we state; and that invalid input is refused before
// any object is written.
func TestKubernetesRender(t *testing.T) {
	c := startCluster(t)
	c.installCRDs()
	c.namespace("agents", "baseline")
	c.namespace("strict", "restricted")
	// The platform's Kata runtime class (RuntimeClass admission refuses a
	// pod naming one that does not exist).
	c.mustKubectl(`{"apiVersion":"node.k8s.io/v1","kind":"RuntimeClass","metadata":{"name":"kata"},"handler":"kata"}`, "apply", "--server-side", "-f", "-")

	cases := []struct {
		name, kind string
		args       []string
	}{
		{"agent", "Sandbox", []string{"--namespace", "agents", "--image", "registry.example.com/nemoclaw/agent:0.1"}},
		{"nemoclaw", "SandboxClaim", []string{nemoclawBlueprint(t), "--namespace", "agents", "--name", "nemoclaw", "--warm-pool", "2", "--profile", "ncp"}},
		{"openclaw", "Sandbox", []string{openclawBlueprint(t), "--namespace", "agents", "--runtime-class", "kata"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			out := render(t, tc.args...)
			c.mustKubectl(out, "apply", "--server-side", "--field-manager", "nemoclaw", "-f", "-")
			want := renderedObject(t, out, "SandboxTemplate")
			got := c.getJSON("-n", "agents", "sandboxtemplate", tc.name)
			if d := subset(want["spec"], got["spec"], "spec"); d != "" {
				t.Errorf("the stored SandboxTemplate differs from the rendered one (pruned by the CRD schema?): %s", d)
			}
			if d := subset(want["metadata"].(map[string]any)["annotations"], got["metadata"].(map[string]any)["annotations"], "annotations"); d != "" {
				t.Error(d)
			}
			np := renderedObject(t, out, "NetworkPolicy")
			if d := subset(np["spec"], c.getJSON("-n", "agents", "networkpolicy", tc.name+"-egress")["spec"], "spec"); d != "" {
				t.Errorf("NetworkPolicy: %s", d)
			}
			last := renderedObject(t, out, tc.kind)
			if d := subset(last["spec"], c.getJSON("-n", "agents", strings.ToLower(tc.kind), tc.name)["spec"], "spec"); d != "" {
				t.Errorf("%s: %s", tc.kind, d)
			}

			// The pod itself, as the controller will create it: admitted
			// at baseline, refused at restricted for procMount only.
			tmpl := want["spec"].(map[string]any)["podTemplate"].(map[string]any)
			pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": tc.name + "-direct", "labels": tmpl["metadata"].(map[string]any)["labels"]}, "spec": tmpl["spec"]}
			pj, _ := json.Marshal(pod)
			c.mustKubectl(string(pj), "-n", "agents", "apply", "--server-side", "-f", "-")
			stored := c.getJSON("-n", "agents", "pod", tc.name+"-direct")
			if d := subset(tmpl["spec"], stored["spec"], "pod.spec"); d != "" {
				t.Errorf("the admitted pod differs from the rendered one: %s", d)
			}
			_, errs, code := c.kubectl(string(pj), "-n", "strict", "apply", "--server-side", "-f", "-")
			if code == 0 || !strings.Contains(errs, "violates PodSecurity \"restricted:latest\"") || !strings.Contains(errs, "procMount") {
				t.Errorf("restricted namespace: exit %d, want a refusal naming procMount: %s", code, errs)
			} else if strings.Contains(errs, "allowPrivilegeEscalation") || strings.Contains(errs, "capabilities") || strings.Contains(errs, "seccompProfile") || strings.Contains(errs, "runAsNonRoot") {
				t.Errorf("restricted refuses more than procMount: %s", errs)
			}
		})
	}

	t.Run("refused before any object", func(t *testing.T) {
		c := c.on(t)
		c.namespace("refused", "baseline")
		hard := filepath.Join(t.TempDir(), "hard")
		if err := os.MkdirAll(filepath.Join(hard, "policies"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(hard, "blueprint.yaml"), []byte("version: \"1.0.0\"\ncomponents:\n  sandbox: {name: hard}\n  policy: {base: policies/p.yaml}\n"), 0o644)
		os.WriteFile(filepath.Join(hard, "policies", "p.yaml"), []byte("version: 1\nlandlock: {compatibility: hard_requirement}\n"), 0o644)
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, "blueprint.yaml"), []byte("version: \"1.0.0\"\nunknown_field: 1\n"), 0o644)
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{hard, "--runtime-class", "gvisor", "--image", "x"}, 3, "implements no Landlock"},
			{[]string{bad, "--image", "x"}, 1, "unknown_field"},
			{[]string{"--image", "x", "--name", "Not_A_Name"}, 2, "--name"},
			{[]string{"--image", "x", "--warm-pool", "-1"}, 2, "--warm-pool"},
			{[]string{"--target", "nomad"}, 2, "the only target is kubernetes"},
		} {
			out, errs, code := newUser(t).run("", append([]string{"blueprint", "render", "--target", "kubernetes", "--namespace", "refused"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.want) || out != "" {
				t.Errorf("render %v: exit %d (want %d), stderr %q (want %q), stdout %d bytes (want none)", tc.args, code, tc.code, errs, tc.want, len(out))
			}
		}
		// What was printed (nothing) leaves the namespace empty.
		for _, kind := range []string{"sandboxtemplates", "sandboxes", "sandboxwarmpools", "sandboxclaims", "networkpolicies", "configmaps"} {
			if got := c.mustKubectl("", "-n", "refused", "get", kind, "-o", "name"); strings.TrimSpace(got) != "" {
				t.Errorf("%s in the refused namespace: %s", kind, got)
			}
		}
		// The API server's own schema refuses a hand-edited object too.
		out := render(t, "--namespace", "refused", "--image", "x", "--warm-pool", "1")
		tampered := strings.Replace(out, "replicas: 1", "replicas: -1", 1)
		if _, errs, code := c.kubectl(tampered, "apply", "--server-side", "-f", "-"); code == 0 || !strings.Contains(errs, "replicas") {
			t.Errorf("a warm pool of -1 replicas was accepted: exit %d %s", code, errs)
		}
	})
}

// startController runs the agent-sandbox controller (with its extensions:
// templates, warm pools, claims) as its own service account, with the
// ClusterRoles the module ships and a token from the TokenRequest API.
func (c *cluster) startController() {
	c.t.Helper()
	rbac := filepath.Join(agentSandboxDir(c.t), "k8s")
	for _, f := range []string{"rbac.generated.yaml", "extensions-rbac.generated.yaml"} {
		b, err := os.ReadFile(filepath.Join(rbac, f))
		if err != nil {
			c.t.Fatal(err)
		}
		c.mustKubectl(string(b), "apply", "--server-side", "-f", "-")
	}
	c.mustKubectl(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"agent-sandbox-system"}}`, "apply", "--server-side", "-f", "-")
	c.mustKubectl("", "-n", "agent-sandbox-system", "create", "serviceaccount", "agent-sandbox-controller")
	for _, role := range []string{"agent-sandbox-controller", "agent-sandbox-controller-extensions"} {
		c.mustKubectl("", "create", "clusterrolebinding", role, "--clusterrole", role, "--serviceaccount", "agent-sandbox-system:agent-sandbox-controller")
	}
	token := strings.TrimSpace(c.mustKubectl("", "-n", "agent-sandbox-system", "create", "token", "agent-sandbox-controller", "--duration", "2h"))
	kc := filepath.Join(c.dir, "controller.kubeconfig")
	c.writeKubeconfig(kc, map[string]any{"token": token})
	c.start("agent-sandbox-controller", "--kubeconfig", kc, "--extensions", "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0")
}

// waitPods waits for the pods labelled selector in ns and returns them.
func (c *cluster) waitPods(ns, selector string, n int) []any {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		items, _ := c.getJSON("-n", ns, "pods", "-l", selector)["items"].([]any)
		if len(items) >= n {
			return items
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no %d pod(s) %s in %s after 2 minutes: the controller did not reconcile", n, selector, ns)
		}
		time.Sleep(time.Second)
	}
}

// TestKubernetesController runs the agent-sandbox controller against the
// test's API server: it reconciles the rendered Sandbox, and the rendered
// SandboxWarmPool, into Pods whose spec is what we rendered (admitted by
// Pod Security at the level we claim), and leaves the network policy to
// ours (Unmanaged: no permissive default policy appears).
func TestKubernetesController(t *testing.T) {
	c := startCluster(t)
	c.installCRDs()
	c.namespace("agents", "baseline")
	c.startController()

	for _, tc := range []struct {
		name string
		args []string
		kind string
	}{
		{"agent", []string{"--namespace", "agents", "--image", "registry.example.com/nemoclaw/agent:0.1"}, "Sandbox"},
		{"nemoclaw", []string{nemoclawBlueprint(t), "--namespace", "agents", "--name", "nemoclaw", "--warm-pool", "1"}, "SandboxTemplate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.on(t)
			out := render(t, tc.args...)
			c.mustKubectl(out, "apply", "--server-side", "--field-manager", "nemoclaw", "-f", "-")
			tmpl := renderedObject(t, out, tc.kind)["spec"].(map[string]any)["podTemplate"].(map[string]any)
			pod := c.waitPods("agents", "nemoclaw.dev/sandbox="+tc.name, 1)[0].(map[string]any)
			if d := subset(tmpl["spec"], pod["spec"], "pod.spec"); d != "" {
				t.Errorf("the controller's pod differs from the rendered one: %s", d)
			}
			if d := subset(tmpl["metadata"], pod["metadata"], "pod.metadata"); d != "" {
				t.Errorf("the controller's pod lacks our labels or annotations: %s", d)
			}
		})
	}
	// The template controller has seen the templates once it has labelled
	// them; with Unmanaged it must not have made its default policy.
	deadline := time.Now().Add(time.Minute)
	for {
		labels, _ := c.getJSON("-n", "agents", "sandboxtemplate", "nemoclaw")["metadata"].(map[string]any)["labels"].(map[string]any)
		if labels["agents.x-k8s.io/sandbox-template-ref-hash"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the controller never reconciled SandboxTemplate nemoclaw")
		}
		time.Sleep(time.Second)
	}
	if got := strings.Fields(c.mustKubectl("", "-n", "agents", "get", "networkpolicies", "-o", "name")); !reflect.DeepEqual(got, []string{"networkpolicy.networking.k8s.io/agent-egress", "networkpolicy.networking.k8s.io/nemoclaw-egress"}) {
		t.Errorf("network policies %v: want only the rendered ones", got)
	}

	// Roll the pinned blueprint forward as docs/kubernetes.md says: render
	// the new version with the same command line and apply it. The
	// garbage collector (kube-controller-manager) removes what the
	// controller lets go; the warm pool replaces its unclaimed pod with
	// one that mounts the new version's ConfigMap.
	c.start("kube-controller-manager", "--kubeconfig", c.kubeconfig, "--controllers=garbage-collector-controller",
		"--leader-elect=false", "--secure-port=0")
	next := filepath.Join(t.TempDir(), "nemoclaw-0.2.0")
	if out, err := exec.Command("cp", "-r", nemoclawBlueprint(t), next).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	bp, err := os.ReadFile(filepath.Join(next, "blueprint.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(next, "blueprint.yaml"), bytes.Replace(bp, []byte(`version: "0.1.0"`), []byte(`version: "0.2.0"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	out := render(t, next, "--namespace", "agents", "--name", "nemoclaw", "--warm-pool", "1")
	cm := renderedObject(t, out, "ConfigMap")["metadata"].(map[string]any)["name"].(string)
	c.mustKubectl(out, "apply", "--server-side", "--field-manager", "nemoclaw", "-f", "-")
	deadline = time.Now().Add(2 * time.Minute)
	for {
		// The claim's sandbox is the claim's now: it keeps the version
		// it started with until the claim ends.
		claimed := c.mustKubectl("", "-n", "agents", "get", "sandboxclaim", "nemoclaw", "-o", "jsonpath={.status.sandbox.name}")
		var volumes []string
		for _, p := range c.waitPods("agents", "nemoclaw.dev/sandbox=nemoclaw", 1) {
			if p.(map[string]any)["metadata"].(map[string]any)["name"] == claimed {
				continue
			}
			for _, v := range p.(map[string]any)["spec"].(map[string]any)["volumes"].([]any) {
				if ref, ok := v.(map[string]any)["configMap"].(map[string]any); ok {
					volumes = append(volumes, ref["name"].(string))
				}
			}
		}
		if reflect.DeepEqual(volumes, []string{cm}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after rolling forward, the warm pool's pods (the claim has %q) mount %v, want only %s\n%s", claimed, volumes, cm,
				c.mustKubectl("", "-n", "agents", "get", "sandboxes,pods", "-o", "custom-columns=KIND:.kind,NAME:.metadata.name,DELETING:.metadata.deletionTimestamp,OWNER:.metadata.ownerReferences[0].name,FINALIZERS:.metadata.finalizers"))
		}
		time.Sleep(time.Second)
	}
}

// TestKubernetesRenderSigned renders a signed blueprint by registry
// reference: it is fetched and verified first, and its signer and manifest
// digest are pinned in the annotations; an unsigned one is refused (exit
// 3) with nothing printed. No cluster is needed to check what is printed.
func TestKubernetesRenderSigned(t *testing.T) {
	r := startDistRegistry(t)
	u := newUser(t)
	u.login(r)
	key := filepath.Join(u.home, "publisher")
	u.must("key", "generate", key)
	u.trust(r, key+".pub")
	ref := strings.TrimSpace(u.must("blueprint", "push", blueprintVersion(t, "1.0.0", ""), r.addr+"/team/coder"))
	manifest := ref[strings.LastIndex(ref, "@")+1:]

	u.refused("signature", "blueprint", "render", r.addr+"/team/coder:1.0.0", "--target", "kubernetes", "--image", "x")
	if out, _, _ := u.run("", "blueprint", "render", r.addr+"/team/coder:1.0.0", "--target", "kubernetes", "--image", "x"); out != "" {
		t.Errorf("an unsigned blueprint was refused, but render printed:\n%s", out)
	}
	u.must("blueprint", "sign", ref, "--key", key+".key")
	out := u.must("blueprint", "render", r.addr+"/team/coder:1.0.0", "--target", "kubernetes", "--image", "x")
	ann := renderedObject(t, out, "SandboxTemplate")["metadata"].(map[string]any)["annotations"].(map[string]any)
	if ann["nemoclaw.dev/blueprint-manifest-digest"] != manifest {
		t.Errorf("manifest digest annotation %v, pushed %s", ann["nemoclaw.dev/blueprint-manifest-digest"], manifest)
	}
	if signer, _ := ann["nemoclaw.dev/blueprint-signer"].(string); !strings.HasPrefix(signer, "key ") {
		t.Errorf("signer annotation %q: want the verified key", signer)
	}
	if src := ann["nemoclaw.dev/blueprint-source"]; src != r.addr+"/team/coder:1.0.0" {
		t.Errorf("source annotation %v", src)
	}
}
