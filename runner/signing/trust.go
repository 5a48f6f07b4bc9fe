package signing

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/root"
	"go.yaml.in/yaml/v3"

	"github.com/nemoclaw/nemoclaw/runner/internal/strictyaml"
)

// TrustPolicy says which keys or keyless identities are trusted to sign
// blueprints from which registry/repository patterns. It lives in
// $NEMOCLAW_HOME/trust/policy.yaml:
//
//	version: 1
//	rules:
//	  - name: team
//	    match: ["registry.example.com/team/*", "127.0.0.1:*/**"]
//	    keys: [team.pub]            # relative to the policy file
//	    identities:
//	      - issuer: https://token.actions.githubusercontent.com
//	        subject_regexp: ^https://github.com/acme/.*
//	    trusted_root: trusted_root.json
//
// The first rule whose pattern matches wins. In patterns "*" matches within
// one path segment (a host's port too), "**" matches anything, "?" one
// character. A repository no rule matches is refused.
type TrustPolicy struct {
	// Version is the format version; only 1 exists.
	Version int `yaml:"version"`
	// Rules are tried in order.
	Rules []TrustRule `yaml:"rules"`

	path string
}

// TrustRule trusts Keys and Identities for the repositories Match names.
type TrustRule struct {
	// Name is shown in messages.
	Name string `yaml:"name"`
	// Match lists registry/repository patterns.
	Match []string `yaml:"match"`
	// Keys are PEM public key files, relative to the policy file's directory.
	Keys []string `yaml:"keys,omitempty"`
	// Identities are trusted keyless signers.
	Identities []Identity `yaml:"identities,omitempty"`
	// TrustedRoot is a Sigstore trusted_root.json for keyless verification.
	TrustedRoot string `yaml:"trusted_root,omitempty"`

	patterns []*regexp.Regexp
}

// LoadTrustPolicy reads path strictly (unknown keys are errors). A missing
// file is an empty policy: every registry source is then refused unless the
// caller passes one-off key or identity flags.
func LoadTrustPolicy(path string) (*TrustPolicy, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &TrustPolicy{Version: 1, path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust policy %s: %w", path, err)
	}
	return ParseTrustPolicy(path, data)
}

// ParseTrustPolicy decodes a trust policy; path is used in messages and to
// resolve relative key and trusted-root paths.
func ParseTrustPolicy(path string, data []byte) (*TrustPolicy, error) {
	p := &TrustPolicy{path: path}
	// The strict decoder names file:line:col and the valid keys, and refuses
	// YAML anchors and aliases as for every other nemoclaw file.
	if _, err := strictyaml.Decode(path, data, p); err != nil {
		return nil, fmt.Errorf("trust policy: %w", err)
	}
	if p.Version != 1 {
		return nil, fmt.Errorf("trust policy %s: version %d: want version: 1", path, p.Version)
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		if r.Name == "" {
			r.Name = fmt.Sprintf("#%d", i+1)
		}
		if len(r.Match) == 0 {
			return nil, fmt.Errorf("trust policy %s: rule %q: match: needs at least one registry/repository pattern", path, r.Name)
		}
		if len(r.Keys) == 0 && len(r.Identities) == 0 {
			return nil, fmt.Errorf("trust policy %s: rule %q: needs keys or identities (a rule that trusts nobody would refuse everything it matches)", path, r.Name)
		}
		for _, id := range r.Identities {
			if (id.Issuer == "") == (id.IssuerRegexp == "") || (id.Subject == "") == (id.SubjectRegexp == "") {
				return nil, fmt.Errorf("trust policy %s: rule %q: identity %s: set exactly one of issuer/issuer_regexp and one of subject/subject_regexp", path, r.Name, id)
			}
		}
		for _, m := range r.Match {
			re, err := globRegexp(m)
			if err != nil {
				return nil, fmt.Errorf("trust policy %s: rule %q: match %q: %w", path, r.Name, m, err)
			}
			r.patterns = append(r.patterns, re)
		}
	}
	return p, nil
}

// Path is the file the policy was read from.
func (p *TrustPolicy) Path() string { return p.path }

// globRegexp compiles a registry/repository pattern.
func globRegexp(pattern string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*' && i+1 < len(pattern) && pattern[i+1] == '*':
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Match returns the first rule whose pattern matches repository
// ("host[:port]/path"), or nil.
func (p *TrustPolicy) Match(repository string) *TrustRule {
	for i := range p.Rules {
		for _, re := range p.Rules[i].patterns {
			if re.MatchString(repository) {
				return &p.Rules[i]
			}
		}
	}
	return nil
}

// RequirementFor builds the signature requirement for repository from the
// first matching rule. No matching rule is a *VerificationError.
func (p *TrustPolicy) RequirementFor(repository string) (*Requirement, error) {
	r := p.Match(repository)
	if r == nil {
		where := p.path
		if _, err := os.Stat(p.path); err != nil {
			where += " (which does not exist)"
		}
		return nil, &VerificationError{
			Subject:   repository,
			Reason:    "no trust policy rule matches this repository, so no signer is trusted for it",
			DecidedBy: "trust policy " + where,
			Hint: "add a rule with keys or identities whose match covers it, or pass --key PREFIX.pub " +
				"(or --certificate-identity/--certificate-oidc-issuer) for this one command, " +
				"or --insecure-skip-verify to accept it unverified",
		}
	}
	spec := RequirementSpec{Keys: r.Keys, Identities: r.Identities, TrustedRoot: r.TrustedRoot}
	return spec.Build(filepath.Dir(p.path), fmt.Sprintf("trust policy rule %q in %s", r.Name, p.path))
}

// RequirementSpec is a requirement as the user wrote it: file names, not
// loaded keys. Trust rules and one-off command-line flags both build one.
type RequirementSpec struct {
	// Keys are PEM public key files.
	Keys []string
	// Identities are keyless signers.
	Identities []Identity
	// TrustedRoot is a trusted_root.json file; required with Identities.
	TrustedRoot string
}

// Build loads the keys and trusted root; relative paths resolve against
// baseDir. decidedBy names the spec's origin in messages.
func (s RequirementSpec) Build(baseDir, decidedBy string) (*Requirement, error) {
	req := &Requirement{Identities: s.Identities, DecidedBy: decidedBy}
	abs := func(p string) string {
		if filepath.IsAbs(p) || baseDir == "" {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	for _, k := range s.Keys {
		pub, err := LoadPublicKey(abs(k))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", decidedBy, err)
		}
		req.Keys = append(req.Keys, TrustedKey{Name: abs(k), Key: pub})
	}
	if len(s.Identities) > 0 {
		if s.TrustedRoot == "" {
			return nil, fmt.Errorf("%s: keyless identities need a Sigstore trusted_root.json (--trusted-root FILE, or trusted_root: in the rule)", decidedBy)
		}
		tr, err := root.NewTrustedRootFromPath(abs(s.TrustedRoot))
		if err != nil {
			return nil, fmt.Errorf("%s: trusted root %s: %w", decidedBy, abs(s.TrustedRoot), err)
		}
		req.TrustedRoot = tr
	}
	return req, nil
}

// trustKeysDir is where `trust add --key` keeps copies of trusted keys,
// relative to the policy file.
const trustKeysDir = "keys"

// AddRule adds r (replacing a rule of the same name) and, for each key
// file in r.Keys, stores a copy under keys/ beside the policy file so the
// policy does not depend on where the key was. The rule's keys then name
// the copies. Save writes the result.
func (p *TrustPolicy) AddRule(r TrustRule) error {
	if r.Name == "" || len(r.Match) == 0 || (len(r.Keys) == 0 && len(r.Identities) == 0) {
		return errors.New("trust rule: needs a name, a match pattern, and keys or identities")
	}
	dir := filepath.Dir(p.path)
	for i, k := range r.Keys {
		pub, err := LoadPublicKey(k)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(k)
		if err != nil {
			return err
		}
		rel := filepath.Join(trustKeysDir, strings.TrimPrefix(Fingerprint(pub), "sha256:")[:16]+PublicKeySuffix)
		if err := os.MkdirAll(filepath.Join(dir, trustKeysDir), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, rel), data, 0o644); err != nil {
			return err
		}
		r.Keys[i] = rel
	}
	for _, m := range r.Match {
		re, err := globRegexp(m)
		if err != nil {
			return fmt.Errorf("trust rule %q: match %q: %w", r.Name, m, err)
		}
		r.patterns = append(r.patterns, re)
	}
	for i := range p.Rules {
		if p.Rules[i].Name == r.Name {
			p.Rules[i] = r
			return nil
		}
	}
	p.Rules = append(p.Rules, r)
	return nil
}

// RemoveRule removes the rule named name; it reports whether there was one.
func (p *TrustPolicy) RemoveRule(name string) bool {
	for i := range p.Rules {
		if p.Rules[i].Name == name {
			p.Rules = append(p.Rules[:i], p.Rules[i+1:]...)
			return true
		}
	}
	return false
}

// Save writes the policy to its file (comments in a hand-written file are
// not kept), through a temporary file so readers never see half of it.
func (p *TrustPolicy) Save() error {
	p.Version = 1
	var buf bytes.Buffer
	buf.WriteString("# nemoclaw trust policy: changed by 'nemoclaw trust add|remove'; the first matching rule wins.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return fmt.Errorf("trust policy %s: %w", p.path, err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("trust policy %s: %w", p.path, err)
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o755); err != nil {
		return fmt.Errorf("trust policy %s: %w", p.path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".policy.yaml.tmp-*")
	if err != nil {
		return fmt.Errorf("trust policy %s: %w", p.path, err)
	}
	_, err = tmp.Write(buf.Bytes())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("trust policy %s: %w", p.path, err)
	}
	return nil
}

// KeyByFingerprint returns a key file under the policy's keys/ directory
// whose fingerprint ("sha256:<hex>") is fp, or "".
func (p *TrustPolicy) KeyByFingerprint(fp string) string {
	ents, err := os.ReadDir(filepath.Join(filepath.Dir(p.path), trustKeysDir))
	if err != nil {
		return ""
	}
	for _, e := range ents {
		f := filepath.Join(filepath.Dir(p.path), trustKeysDir, e.Name())
		if pub, err := LoadPublicKey(f); err == nil && Fingerprint(pub) == fp {
			return f
		}
	}
	return ""
}
