package egress

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

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

// credBinding is a credential bound to one endpoint, with the one place in
// a request where its placeholder may be replaced: a header named by
// header, the path segment segment, or the whole value of query param.
type credBinding struct {
	name        string
	placeholder string
	secret      string
	in          []string
	header      string // canonical MIME header name
	segment     int    // 1-based
	param       string
	cleartext   bool
	// forms are the spellings of the secret an upstream may reflect (raw,
	// path-escaped, query-escaped), scrubbed from response headers.
	forms []string
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
	cb := &credBinding{name: c.Name, in: in, header: "Authorization", segment: 1, param: c.Param, cleartext: c.Cleartext}
	if c.Header != "" {
		if !httpguts.ValidHeaderFieldName(c.Header) || policy.IsHopHeader(c.Header) {
			return nil, fmt.Errorf("%s.header: %q is not an end-to-end HTTP header name", c.Name, c.Header)
		}
		cb.header = textproto.CanonicalMIMEHeaderKey(c.Header)
	}
	if c.Segment < 0 {
		return nil, fmt.Errorf("%s.segment: %d is not a path segment number (1 is the first)", c.Name, c.Segment)
	}
	if c.Segment > 0 {
		cb.segment = c.Segment
	}
	if slices.Contains(in, "query") && c.Param == "" {
		return nil, fmt.Errorf("%s: in: query needs param: NAME, the one query parameter whose value is the placeholder", c.Name)
	}
	sec, err := s.secret(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	cb.secret, cb.placeholder = sec, s.placeholder(c.Name)
	cb.forms = []string{sec}
	for _, f := range []string{escapePathValue(sec), url.QueryEscape(sec), url.PathEscape(sec)} {
		if !slices.Contains(cb.forms, f) {
			cb.forms = append(cb.forms, f)
		}
	}
	return cb, nil
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

// checkCredentials decides the placeholders a request carries, before any
// substitution (the request is not changed; denials and audit lines are
// built from what the agent sent, never from a secret). Every placeholder
// must belong to a credential bound to ep, at that credential's declared
// place, and on a cleartext request only to a credential marked cleartext.
// known names a stray placeholder in the refusal.
func checkCredentials(r *http.Request, cp CanonPath, ep *endpoint, known []*credBinding, t target, scheme string) *verdict {
	if len(known) == 0 || !requestContains(r, cp, placeholderPrefix) {
		return nil
	}
	var bound []*credBinding
	if ep != nil {
		bound = ep.creds
	}
	where := strayPlaceholder(r, cp, bound)
	if where != "" {
		name := "unknown"
		for _, c := range known {
			if requestContains(r, cp, c.placeholder) {
				name = c.name
				break
			}
		}
		return &verdict{action: Deny,
			reason:  fmt.Sprintf("credential placeholder %s was sent to %s in the %s, where it is not bound", name, t, where),
			missing: fmt.Sprintf("send %s only to the endpoint whose credentials list it, in the header, path segment or query param named there", name)}
	}
	if scheme != "https" {
		for _, c := range bound {
			if !c.cleartext && requestContains(r, cp, c.placeholder) {
				return &verdict{action: Deny,
					reason:  fmt.Sprintf("credential %s would be sent to %s in cleartext (plain http)", c.name, t),
					missing: fmt.Sprintf("use https (CONNECT with TLS), or set cleartext: true on credential %s if the upstream really is plain http", c.name)}
			}
		}
	}
	return nil
}

// strayPlaceholder names the part of r ("header X", "path", "query") that
// holds a placeholder no bound credential may take there, or "".
func strayPlaceholder(r *http.Request, cp CanonPath, bound []*credBinding) string {
	for k, vs := range r.Header {
		for _, v := range vs {
			if !strings.Contains(v, placeholderPrefix) {
				continue
			}
			for _, c := range bound {
				if slices.Contains(c.in, "header") && c.header == k {
					v = strings.ReplaceAll(v, c.placeholder, "")
				}
			}
			if strings.Contains(v, placeholderPrefix) {
				return "header " + k
			}
		}
	}
	for i, seg := range cp.Segments {
		if !strings.Contains(seg, placeholderPrefix) {
			continue
		}
		for _, c := range bound {
			if slices.Contains(c.in, "path") && c.segment == i+1 {
				seg = strings.ReplaceAll(seg, c.placeholder, "")
			}
		}
		if strings.Contains(seg, placeholderPrefix) {
			return "path"
		}
	}
	if strings.Contains(cp.Escaped, placeholderPrefix) && !segmentsContain(cp, placeholderPrefix) {
		return "path"
	}
	if q := r.URL.RawQuery; strings.Contains(q, placeholderPrefix) || strings.Contains(q, "%") {
		for _, pair := range strings.Split(q, "&") {
			// A placeholder hidden behind %-escapes counts too; only the
			// literal pair param=placeholder is substituted.
			dec, err := url.QueryUnescape(pair)
			if !strings.Contains(pair, placeholderPrefix) && (err != nil || !strings.Contains(dec, placeholderPrefix)) {
				continue
			}
			if !slices.ContainsFunc(bound, func(c *credBinding) bool {
				return slices.Contains(c.in, "query") && pair == c.param+"="+c.placeholder
			}) {
				return "query"
			}
		}
	}
	return ""
}

func segmentsContain(cp CanonPath, s string) bool {
	return slices.ContainsFunc(cp.Segments, func(seg string) bool { return strings.Contains(seg, s) })
}

// requestContains reports whether s occurs in r's headers, path (escaped
// or decoded) or query.
func requestContains(r *http.Request, cp CanonPath, s string) bool {
	if strings.Contains(cp.Escaped, s) || segmentsContain(cp, s) || strings.Contains(r.URL.RawQuery, s) {
		return true
	}
	if q, err := url.QueryUnescape(r.URL.RawQuery); err == nil && strings.Contains(q, s) {
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

// applyCredentials puts the secrets of ep's credentials into the outgoing
// request out, each only at its declared place. It runs on the request as
// it leaves for the upstream (after checkCredentials allowed it), so that
// nothing built earlier (denials, audit lines) can hold a secret. The
// transport calls it right after pointing out.URL at the upstream.
func applyCredentials(out *http.Request, ep *endpoint) {
	if ep == nil || len(ep.creds) == 0 {
		return
	}
	for _, c := range ep.creds {
		if slices.Contains(c.in, "header") {
			for i, v := range out.Header[c.header] {
				out.Header[c.header][i] = strings.ReplaceAll(v, c.placeholder, c.secret)
			}
		}
		if slices.Contains(c.in, "path") {
			esc := out.URL.EscapedPath()
			segs := strings.Split(esc, "/") // segs[0] is "" before the leading /
			if c.segment < len(segs) && strings.Contains(segs[c.segment], c.placeholder) {
				segs[c.segment] = strings.ReplaceAll(segs[c.segment], c.placeholder, escapePathValue(c.secret))
				esc = strings.Join(segs, "/")
				if p, err := url.PathUnescape(esc); err == nil {
					out.URL.Path, out.URL.RawPath = p, esc
				}
			}
		}
		if slices.Contains(c.in, "query") && strings.Contains(out.URL.RawQuery, c.placeholder) {
			pairs := strings.Split(out.URL.RawQuery, "&")
			for i, pair := range pairs {
				if pair == c.param+"="+c.placeholder {
					pairs[i] = c.param + "=" + url.QueryEscape(c.secret)
				}
			}
			out.URL.RawQuery = strings.Join(pairs, "&")
		}
	}
}

// maxScrubBody is the largest error-page body that is scrubbed.
const maxScrubBody = 64 << 10

// scrubResponse replaces every spelling of ep's secrets with the
// placeholder, so the agent never reads a secret back: in every response
// header (Location, CORS echoes, Set-Cookie, anything an upstream
// reflects), and in the body of an error response (status >= 400) of at
// most maxScrubBody bytes with a declared length and no content coding.
// Other bodies and trailers are not scrubbed: see docs/egress.md. The
// transport calls it on each response from an upstream, before relaying.
func scrubResponse(resp *http.Response, ep *endpoint) {
	if ep == nil || len(ep.creds) == 0 {
		return
	}
	for k, vs := range resp.Header {
		for i, v := range vs {
			resp.Header[k][i] = ep.scrub(v)
		}
	}
	if resp.StatusCode < 400 || resp.ContentLength <= 0 || resp.ContentLength > maxScrubBody || resp.Body == nil ||
		(resp.Request != nil && resp.Request.Method == http.MethodHead) {
		return
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, resp.ContentLength))
	if err != nil {
		b = nil // the relay reports the short body as it would have
	}
	s := ep.scrub(string(b))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{strings.NewReader(s), resp.Body}
	if len(s) != len(b) {
		resp.ContentLength = int64(len(s))
		resp.Header.Set("Content-Length", strconv.Itoa(len(s)))
	}
}

// scrub replaces ep's secrets (each spelling) in s with their placeholders.
func (ep *endpoint) scrub(s string) string {
	for _, c := range ep.creds {
		for _, f := range c.forms {
			if strings.Contains(s, f) {
				s = strings.ReplaceAll(s, f, c.placeholder)
			}
		}
	}
	return s
}

func escapePathValue(s string) string {
	return strings.TrimPrefix(escapeSegments([]string{s}, false), "/")
}
