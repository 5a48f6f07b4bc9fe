package kubernetes

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// Formats Write accepts.
const (
	FormatYAML = "yaml"
	FormatJSON = "json"
)

// Write prints r as a multi-document YAML stream (each object preceded by
// its comment, the notes at the top) or as one JSON v1 List; both are what
// `kubectl apply -f` reads. sigs.k8s.io/yaml marshals Kubernetes objects
// through their JSON tags, as the API machinery itself does.
func Write(w io.Writer, r *Rendered, format string) error {
	switch format {
	case FormatJSON:
		items := make([]runtime.Object, 0, len(r.Objects))
		for _, o := range r.Objects {
			items = append(items, o.Object)
		}
		list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	case FormatYAML:
		var b strings.Builder
		b.WriteString("# Rendered by nemoclaw from blueprint " + firstAnnotation(r, AnnotationSource) + "\n")
		b.WriteString("# blueprint digest " + r.Digest + ", signer: " + firstAnnotation(r, AnnotationSigner) + "\n#\n")
		for _, n := range r.Notes {
			comment(&b, "- "+n)
		}
		for _, o := range r.Objects {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				return fmt.Errorf("marshal %T: %w", o.Object, err)
			}
			b.WriteString("---\n")
			comment(&b, o.Comment)
			b.Write(y)
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	return fmt.Errorf("output format %q: want %s or %s", format, FormatYAML, FormatJSON)
}

// comment writes text as YAML comment lines of at most about 100 columns.
func comment(b *strings.Builder, text string) {
	line := "#"
	indent := " "
	if strings.HasPrefix(text, "- ") {
		indent = "   "
	}
	for i, word := range strings.Fields(text) {
		if i > 0 && len(line)+1+len(word) > 100 {
			b.WriteString(line + "\n")
			line = "#" + indent[:len(indent)-1]
		}
		line += " " + word
	}
	b.WriteString(line + "\n")
}

func firstAnnotation(r *Rendered, key string) string {
	for _, o := range r.Objects {
		if m, ok := o.Object.(interface{ GetAnnotations() map[string]string }); ok {
			if v := m.GetAnnotations()[key]; v != "" {
				return v
			}
		}
	}
	return ""
}

// SeccompProfileJSON is the Localhost seccomp profile the pod names
// (SeccompProfile), in the OCI/kubelet profile format. RuntimeDefault
// refuses unshare and clone with namespace flags to a container without
// CAP_SYS_ADMIN, and nemoclaw needs them (and mount, pivot_root, setns)
// to build its sandbox. This profile is a deny-list (RuntimeDefault is an
// allow-list): it allows every other system call and refuses with EPERM
// what no supervisor needs and what reaches the node's kernel state: module and kexec loading, bpf,
// perf, ptrace and cross-process memory, keyrings, io_uring, userfaultfd,
// clock and swap changes, open_by_handle_at. The agent gets nemoclaw's
// own, stricter filter on top (runner/sandbox/seccomp.go).
//
//go:embed seccomp/supervisor.json
var SeccompProfileJSON []byte
