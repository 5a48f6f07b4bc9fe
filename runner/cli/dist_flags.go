package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/registry"
	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// verifyFlags are the signature flags shared by pull, update, verify and
// apply: a one-off alternative to the trust policy, or the explicit insecure
// escape hatch.
type verifyFlags struct {
	keys               []string
	identity           string
	identityRegexp     string
	issuer             string
	issuerRegexp       string
	trustedRoot        string
	insecureSkipVerify bool
}

// addVerifyFlags registers the verification flags on cmd.
func addVerifyFlags(cmd *cobra.Command) *verifyFlags {
	f := &verifyFlags{}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.keys, "key", nil, "trust this public key file (PREFIX.pub) instead of the trust policy; repeatable")
	fs.StringVar(&f.identity, "certificate-identity", "", "trust this keyless signer (certificate SAN, e.g. an email) instead of the trust policy")
	fs.StringVar(&f.identityRegexp, "certificate-identity-regexp", "", "like --certificate-identity, as a regular expression")
	fs.StringVar(&f.issuer, "certificate-oidc-issuer", "", "the OIDC issuer of --certificate-identity")
	fs.StringVar(&f.issuerRegexp, "certificate-oidc-issuer-regexp", "", "like --certificate-oidc-issuer, as a regular expression")
	fs.StringVar(&f.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json for keyless verification (default $NEMOCLAW_HOME/trust/trusted_root.json)")
	fs.BoolVar(&f.insecureSkipVerify, "insecure-skip-verify", false, "DANGEROUS: accept unsigned or badly signed blueprints")
	return f
}

// verification turns the flags into a registry.Verification; home is
// $NEMOCLAW_HOME (for the default trusted root).
func (f *verifyFlags) verification(home string) (registry.Verification, error) {
	v := registry.Verification{InsecureSkipVerify: f.insecureSkipVerify}
	keyless := f.identity != "" || f.identityRegexp != "" || f.issuer != "" || f.issuerRegexp != ""
	if f.insecureSkipVerify && (keyless || len(f.keys) > 0) {
		return v, Usage(errors.New("--insecure-skip-verify cannot be combined with --key or --certificate-identity: choose verification or none"))
	}
	if len(f.keys) == 0 && !keyless {
		return v, nil
	}
	spec := &signing.RequirementSpec{Keys: f.keys}
	if keyless {
		if (f.identity == "") == (f.identityRegexp == "") || (f.issuer == "") == (f.issuerRegexp == "") {
			return v, Usage(errors.New("keyless verification needs one of --certificate-identity/--certificate-identity-regexp and one of --certificate-oidc-issuer/--certificate-oidc-issuer-regexp"))
		}
		spec.Identities = []signing.Identity{{Issuer: f.issuer, IssuerRegexp: f.issuerRegexp, Subject: f.identity, SubjectRegexp: f.identityRegexp}}
		spec.TrustedRoot = f.trustedRoot
		if spec.TrustedRoot == "" {
			spec.TrustedRoot = home + "/trust/trusted_root.json"
		}
	}
	v.OneOff = spec
	return v, nil
}

// registryFlags are the connection flags of every command that talks to a
// registry.
type registryFlags struct {
	plainHTTP bool
}

func addRegistryFlags(cmd *cobra.Command) *registryFlags {
	f := &registryFlags{}
	cmd.Flags().BoolVar(&f.plainHTTP, "plain-http", false, "use plain HTTP for non-loopback registries too (loopback registries always use it)")
	return f
}

// newRegistryClient builds the registry client for app; progress goes to
// stderr.
func newRegistryClient(app *App, rf *registryFlags) (*registry.Client, error) {
	plain := false
	if rf != nil {
		plain = rf.plainHTTP
	}
	return registry.New(registry.Config{Home: app.Home, Logger: app.Logger, PlainHTTP: plain, Progress: app.Err})
}

// distError maps verification and integrity refusals to exit code 3.
func distError(err error) error {
	if err != nil && registry.IsRefusal(err) {
		return Refused(err)
	}
	return err
}

// readSecret reads a secret: from env when set, else from a terminal on
// app.In (asking twice when confirm). It never reads a secret from a
// non-terminal stdin by accident.
func readSecret(app *App, env, prompt string, confirm bool) ([]byte, error) {
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	f, ok := app.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, Usage(fmt.Errorf("no passphrase: set %s or run on a terminal", env))
	}
	printf(app.Err, "%s: ", prompt)
	p, err := term.ReadPassword(int(f.Fd()))
	printf(app.Err, "\n")
	if err != nil {
		return nil, err
	}
	if confirm {
		printf(app.Err, "%s (again): ", prompt)
		q, err := term.ReadPassword(int(f.Fd()))
		printf(app.Err, "\n")
		if err != nil {
			return nil, err
		}
		if string(p) != string(q) {
			return nil, Usage(errors.New("the passphrases differ"))
		}
	}
	if strings.TrimSpace(string(p)) == "" {
		return nil, Usage(errors.New("empty passphrase"))
	}
	return p, nil
}

// sourceFlags are what a command that takes a blueprint source (a local
// directory or a registry reference) needs: the lock, the constraint, the
// verification and registry flags. `blueprint apply` uses them.
type sourceFlags struct {
	constraint     string
	lockPath       string
	allowDowngrade bool
	verify         *verifyFlags
	registry       *registryFlags
}

// addSourceFlags registers --version, --lock, --allow-downgrade and the
// verification and registry flags on cmd.
func addSourceFlags(cmd *cobra.Command) *sourceFlags {
	s := &sourceFlags{}
	cmd.Flags().StringVar(&s.constraint, "version", "", `semver constraint for a registry REF, e.g. "~> 1.2"`)
	cmd.Flags().StringVar(&s.lockPath, "lock", registry.DefaultLockFile, "lock file to honour and update")
	cmd.Flags().BoolVar(&s.allowDowngrade, "allow-downgrade", false, "accept a version lower than the locked one")
	s.verify = addVerifyFlags(cmd)
	s.registry = addRegistryFlags(cmd)
	return s
}

// isLocalSource reports whether arg names a local blueprint directory: an
// existing directory, or a path that starts with ".", "/" or "~". Local
// directories are the only unsigned source accepted by default.
func isLocalSource(arg string) bool {
	if strings.HasPrefix(arg, ".") || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "~") {
		return true
	}
	st, err := os.Stat(arg)
	return err == nil && st.IsDir()
}

// resolve returns the blueprint directory for arg: a local directory as it
// is (fetched is nil), or a registry reference resolved through the lock,
// fetched into the cache and verified (refusals carry exit code 3).
func (s *sourceFlags) resolve(cmd *cobra.Command, app *App, arg string) (dir string, fetched *registry.Fetched, err error) {
	if isLocalSource(arg) {
		if s.constraint != "" {
			return "", nil, Usage(fmt.Errorf("--version %q applies to registry references, not the local directory %s", s.constraint, arg))
		}
		return arg, nil, nil
	}
	v, err := s.verify.verification(app.Home)
	if err != nil {
		return "", nil, err
	}
	c, err := newRegistryClient(app, s.registry)
	if err != nil {
		return "", nil, err
	}
	f, err := c.Fetch(cmd.Context(), registry.FetchOptions{Ref: arg, Constraint: s.constraint, LockPath: s.lockPath, AllowDowngrade: s.allowDowngrade, Verification: v})
	if err != nil {
		return "", nil, distError(err)
	}
	return f.Dir, f, nil
}
