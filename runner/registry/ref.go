package registry

import (
	"fmt"
	"net"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// Reference is a parsed blueprint reference: host/repo, host/repo:tag or
// host/repo@sha256:….
type Reference struct {
	// Registry is the host[:port].
	Registry string
	// Repository is the path inside the registry.
	Repository string
	// Tag is set for host/repo:tag.
	Tag string
	// Digest is set for host/repo@sha256:….
	Digest string
}

// ParseReference parses s. A reference with both a tag and a digest keeps
// only the digest (the tag is informational, as in docker).
func ParseReference(s string) (Reference, error) {
	r, err := registry.ParseReference(s)
	if err != nil {
		return Reference{}, fmt.Errorf("reference %q: %w (want host/repo, host/repo:tag or host/repo@sha256:...)", s, err)
	}
	out := Reference{Registry: r.Registry, Repository: r.Repository}
	if r.Reference != "" {
		if _, err := r.Digest(); err == nil {
			out.Digest = r.Reference
		} else {
			out.Tag = r.Reference
		}
	}
	return out, nil
}

// Repo is "host/repo", the key of lock entries and trust policy matching.
func (r Reference) Repo() string { return r.Registry + "/" + r.Repository }

// String is the reference in its canonical form.
func (r Reference) String() string {
	switch {
	case r.Digest != "":
		return r.Repo() + "@" + r.Digest
	case r.Tag != "":
		return r.Repo() + ":" + r.Tag
	}
	return r.Repo()
}

// IsLoopback reports whether a registry host[:port] is on this machine
// (localhost, 127.0.0.0/8, ::1): the only registries reached over plain HTTP
// without --plain-http.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
