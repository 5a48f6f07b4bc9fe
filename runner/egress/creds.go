package egress

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// placeholderPrefix starts every credential placeholder, so one cheap
// substring test tells whether a request carries any.
const placeholderPrefix = "nemoclaw-ph-"

// secretSource reads secrets and names placeholders; the Proxy implements it.
type secretSource interface {
	secret(c *policy.Credential) (string, error)
	placeholder(name string) string
}

// credBinding is a credential bound to one endpoint.
type credBinding struct {
	name        string
	placeholder string
	secret      string
	in          []string
}

// envName reports whether s is an environment variable name: a letter or
// _, then letters, digits and _. (Not a regexp: compiling one at package
// initialisation costs every nemoclaw start.)
func envName(s string) bool {
	for i, r := range s {
		letter := r == '_' || ('A' <= r && r <= 'Z') || ('a' <= r && r <= 'z')
		if !letter && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

func compileCredential(c *policy.Credential, s secretSource) (*credBinding, error) {
	if c == nil || !envName(c.Name) {
		return nil, fmt.Errorf("name must be an environment variable name (letters, digits, _)")
	}
	if (c.Env == "") == (c.File == "") {
		return nil, fmt.Errorf("%s: set exactly one of env or file for the secret", c.Name)
	}
	in := c.In
	if len(in) == 0 {
		in = []string{"header", "path"}
	}
	for _, w := range in {
		if w != "header" && w != "path" && w != "query" {
			return nil, fmt.Errorf("%s.in: %q is not header, path or query", c.Name, w)
		}
	}
	sec, err := s.secret(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	return &credBinding{name: c.Name, placeholder: s.placeholder(c.Name), secret: sec, in: in}, nil
}

// secret reads a credential's value from the supervisor's environment or a
// file; the agent never sees it.
func (p *Proxy) secret(c *policy.Credential) (string, error) {
	if c.Env != "" {
		v, ok := p.cfg.LookupEnv(c.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("host environment variable %s is not set; export it before starting the sandbox", c.Env)
		}
		return v, nil
	}
	b, err := os.ReadFile(c.File)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret file %s is empty", c.File)
	}
	return v, nil
}

// placeholder is stable for the proxy's life, so a hot reload keeps the
// values the agent already has in its environment.
func (p *Proxy) placeholder(name string) string {
	m := hmac.New(sha256.New, p.phKey[:])
	m.Write([]byte(name))
	return placeholderPrefix + strings.ToLower(name) + "-" + hex.EncodeToString(m.Sum(nil)[:12])
}

// substitute replaces bound placeholders in r's headers and path (and query
// where allowed) with their secrets, and refuses any placeholder that is not
// bound to the endpoint handling the request. It returns the placeholder's
// credential name on refusal.
func substitute(r *http.Request, escPath *string, bound []*credBinding, known []*credBinding) (refused string, err error) {
	if !requestHasPlaceholder(r, *escPath) {
		return "", nil
	}
	for _, c := range bound {
		inHeader, inPath, inQuery := slices.Contains(c.in, "header"), slices.Contains(c.in, "path"), slices.Contains(c.in, "query")
		if inHeader {
			for k, vs := range r.Header {
				for i, v := range vs {
					if strings.Contains(v, c.placeholder) {
						r.Header[k][i] = strings.ReplaceAll(v, c.placeholder, c.secret)
					}
				}
			}
		}
		if inPath && strings.Contains(*escPath, c.placeholder) {
			*escPath = strings.ReplaceAll(*escPath, c.placeholder, escapePathValue(c.secret))
		}
		if inQuery && strings.Contains(r.URL.RawQuery, c.placeholder) {
			r.URL.RawQuery = strings.ReplaceAll(r.URL.RawQuery, c.placeholder, url.QueryEscape(c.secret))
		}
	}
	if requestHasPlaceholder(r, *escPath) {
		name := "unknown"
		for _, c := range known {
			if requestContains(r, *escPath, c.placeholder) {
				name = c.name
				break
			}
		}
		return name, fmt.Errorf("credential placeholder %s was sent where it is not bound", name)
	}
	return "", nil
}

func requestHasPlaceholder(r *http.Request, escPath string) bool {
	return requestContains(r, escPath, placeholderPrefix)
}

func requestContains(r *http.Request, escPath, s string) bool {
	if strings.Contains(escPath, s) || strings.Contains(r.URL.RawQuery, s) {
		return true
	}
	for _, vs := range r.Header {
		for _, v := range vs {
			if strings.Contains(v, s) {
				return true
			}
		}
	}
	return false
}

func escapePathValue(s string) string {
	return strings.TrimPrefix(escapeSegments([]string{s}, false), "/")
}
