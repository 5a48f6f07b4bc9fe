package egress

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPath is the class of path canonicalisation refusals; the proxy answers
// them with 403 because an ambiguous path is a way around path rules.
var ErrPath = errors.New("ambiguous request path")

// CanonPath is a request path in the one form that rules are matched against
// and that is forwarded upstream, so that the upstream sees exactly what the
// policy judged.
type CanonPath struct {
	// Segments are the decoded path segments, without empty and dot segments.
	Segments []string
	// TrailingSlash is set when the path ends in "/" (and is not "/").
	TrailingSlash bool
	// SlashSegments is set when a segment holds an encoded slash
	// (allow_encoded_slash): the path as an upstream that decodes %2F reads
	// it. Deny rules are matched against it too.
	SlashSegments []string
	// Escaped is the path to forward: the original when canonicalisation
	// changed nothing structural, else the canonical form re-escaped.
	Escaped string
}

// String is the decoded canonical path, e.g. "/v1/models".
func (c CanonPath) String() string {
	s := "/" + strings.Join(c.Segments, "/")
	if c.TrailingSlash && len(c.Segments) > 0 {
		s += "/"
	}
	return s
}

// Canonicalize turns the raw (still percent-encoded) path of a request into
// its canonical form: ";params" stripped from each segment, each segment
// percent-decoded once, empty ("//") and "." segments dropped, ".." resolved.
// It refuses what upstream servers disagree about: ".." above the root,
// double encoding, encoded "/" (unless allowEncodedSlash), backslashes, NUL
// and control characters, and malformed escapes.
func Canonicalize(raw string, allowEncodedSlash bool) (CanonPath, error) {
	if raw == "" || raw == "*" {
		return CanonPath{Escaped: "/"}, nil
	}
	if raw[0] != '/' {
		return CanonPath{}, fmt.Errorf("%w: path %q does not start with /", ErrPath, clip(raw))
	}
	var (
		segs    = make([]string, 0, 8)
		changed bool
		slashed bool
	)
	rest := raw[1:]
	for {
		seg := rest
		i := strings.IndexByte(rest, '/')
		if i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		}
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			seg = seg[:j]
			changed = true
		}
		dec, err := decodeSegment(seg, allowEncodedSlash)
		if err != nil {
			return CanonPath{}, err
		}
		switch dec {
		case "":
			if i >= 0 {
				changed = true // "//" in the middle of the path
			}
		case ".":
			changed = true
		case "..":
			changed = true
			if len(segs) == 0 {
				return CanonPath{}, fmt.Errorf("%w: %q climbs above the root", ErrPath, clip(raw))
			}
			segs = segs[:len(segs)-1]
		default:
			if allowEncodedSlash && strings.IndexByte(dec, '/') >= 0 {
				for _, sub := range strings.Split(dec, "/") {
					if sub == "." || sub == ".." {
						return CanonPath{}, fmt.Errorf("%w: dot segment behind an encoded slash (%%2F.. or ..%%2F)", ErrPath)
					}
				}
				slashed = true
			}
			segs = append(segs, dec)
		}
		if i < 0 {
			break
		}
	}
	c := CanonPath{Segments: segs, TrailingSlash: strings.HasSuffix(raw, "/") && raw != "/"}
	if slashed {
		c.SlashSegments = []string{}
		for _, s := range segs {
			for _, sub := range strings.Split(s, "/") {
				if sub != "" {
					c.SlashSegments = append(c.SlashSegments, sub)
				}
			}
		}
	}
	if changed {
		c.Escaped = escapeSegments(segs, c.TrailingSlash)
	} else {
		c.Escaped = raw
	}
	return c, nil
}

// decodeSegment percent-decodes one segment and refuses the forms that
// servers interpret differently.
func decodeSegment(s string, allowEncodedSlash bool) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
				return "", fmt.Errorf("%w: control character or backslash in path", ErrPath)
			}
		}
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return "", fmt.Errorf("%w: malformed percent-escape", ErrPath)
			}
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			if c == '/' && !allowEncodedSlash {
				return "", fmt.Errorf("%w: encoded slash (%%2F) in path; set allow_encoded_slash on the endpoint if the API needs it", ErrPath)
			}
		}
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "", fmt.Errorf("%w: control character or backslash in path", ErrPath)
		}
		b.WriteByte(c)
	}
	d := b.String()
	// A decoded segment that still holds a valid escape was double-encoded:
	// a server that decodes twice would see something the rules never did.
	for i := 0; i+2 < len(d); i++ {
		if d[i] == '%' && ishex(d[i+1]) && ishex(d[i+2]) {
			return "", fmt.Errorf("%w: double percent-encoding in path", ErrPath)
		}
	}
	return d, nil
}

// escapeSegments re-encodes canonical segments for the wire.
func escapeSegments(segs []string, trailing bool) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		for i := 0; i < len(s); i++ {
			c := s[i]
			if isPathChar(c) {
				b.WriteByte(c)
			} else {
				b.WriteByte('%')
				b.WriteByte("0123456789ABCDEF"[c>>4])
				b.WriteByte("0123456789ABCDEF"[c&15])
			}
		}
	}
	if len(segs) == 0 || trailing {
		b.WriteByte('/')
	}
	return b.String()
}

// isPathChar reports whether c may appear unescaped in a path segment
// (RFC 3986 pchar minus ';', which servers treat as a parameter separator).
func isPathChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,=:@", c) >= 0
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// clip shortens user input echoed into errors and logs.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
