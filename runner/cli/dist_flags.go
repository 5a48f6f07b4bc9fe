package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/state"
)

// The flag definitions of the distribution commands live here, without the
// registry and signing code they feed: `blueprint apply` needs them in the
// lean nemoclaw too, and runner/cli/distcli turns their values into registry
// calls.

// DefaultLockFile is the lock file apply, pull, update and list honour
// unless --lock names another; it equals registry.DefaultLockFile.
const DefaultLockFile = "nemoclaw.lock"

// VerifyFlags are the signature flags shared by pull, update, verify and
// apply: a one-off alternative to the trust policy, or the explicit insecure
// escape hatch. runner/cli/distcli turns them into a registry.Verification.
type VerifyFlags struct {
	// Keys are public key files (--key), repeatable.
	Keys []string
	// Identity and IdentityRegexp are the keyless signer
	// (--certificate-identity[-regexp]).
	Identity, IdentityRegexp string
	// Issuer and IssuerRegexp are its OIDC issuer
	// (--certificate-oidc-issuer[-regexp]).
	Issuer, IssuerRegexp string
	// TrustedRoot is the Sigstore trusted_root.json (--trusted-root).
	TrustedRoot string
	// InsecureSkipVerify accepts unsigned blueprints (--insecure-skip-verify).
	InsecureSkipVerify bool
}

// AddVerifyFlags registers the verification flags on cmd.
func AddVerifyFlags(cmd *cobra.Command) *VerifyFlags {
	f := &VerifyFlags{}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.Keys, "key", nil, "trust this public key file (PREFIX.pub) instead of the trust policy; repeatable")
	fs.StringVar(&f.Identity, "certificate-identity", "", "trust this keyless signer (certificate SAN, e.g. an email) instead of the trust policy")
	fs.StringVar(&f.IdentityRegexp, "certificate-identity-regexp", "", "like --certificate-identity, as a regular expression")
	fs.StringVar(&f.Issuer, "certificate-oidc-issuer", "", "the OIDC issuer of --certificate-identity")
	fs.StringVar(&f.IssuerRegexp, "certificate-oidc-issuer-regexp", "", "like --certificate-oidc-issuer, as a regular expression")
	fs.StringVar(&f.TrustedRoot, "trusted-root", "", "Sigstore trusted_root.json for keyless verification (default $NEMOCLAW_HOME/trust/trusted_root.json)")
	fs.BoolVar(&f.InsecureSkipVerify, "insecure-skip-verify", false, "DANGEROUS: accept unsigned or badly signed blueprints")
	return f
}

// RegistryFlags are the connection flags of every command that talks to a
// registry.
type RegistryFlags struct {
	// PlainHTTP uses plain HTTP for non-loopback registries (--plain-http).
	PlainHTTP bool
}

// AddRegistryFlags registers the registry connection flags on cmd.
func AddRegistryFlags(cmd *cobra.Command) *RegistryFlags {
	f := &RegistryFlags{}
	cmd.Flags().BoolVar(&f.PlainHTTP, "plain-http", false, "use plain HTTP for non-loopback registries too (loopback registries always use it)")
	return f
}

// SourceFlags are what a command that takes a blueprint source (a local
// directory or a registry reference) needs: the lock, the constraint, the
// verification and registry flags. `blueprint apply` uses them.
type SourceFlags struct {
	// Constraint is the semver constraint for a registry reference (--version).
	Constraint string
	// Digest and Signer are set by the RemoteSource: what it fetched and
	// verified, for apply's run record; Pin, the lock entry it left, if
	// it honoured a lock (what a rollback writes back).
	Digest, Signer string
	Pin            *state.Pin
	// LockPath is the lock file to honour and update (--lock).
	LockPath string
	// AllowDowngrade accepts a version below the locked one (--allow-downgrade).
	AllowDowngrade bool
	// Verify are the signature flags.
	Verify *VerifyFlags
	// Registry are the connection flags.
	Registry *RegistryFlags
}

// addSourceFlags registers --version, --lock, --allow-downgrade and the
// verification and registry flags on cmd.
func addSourceFlags(cmd *cobra.Command) *SourceFlags {
	s := &SourceFlags{}
	cmd.Flags().StringVar(&s.Constraint, "version", "", `semver constraint for a registry REF, e.g. "~> 1.2"`)
	cmd.Flags().StringVar(&s.LockPath, "lock", DefaultLockFile, "lock file to honour and update")
	cmd.Flags().BoolVar(&s.AllowDowngrade, "allow-downgrade", false, "accept a version lower than the locked one")
	s.Verify = AddVerifyFlags(cmd)
	s.Registry = AddRegistryFlags(cmd)
	return s
}

// RemoteSource fetches the blueprint a registry reference names — through
// the lock, into the cache, signature-verified (refusals carry exit code
// 3) — and returns its directory.
type RemoteSource func(ctx context.Context, app *App, ref string, s *SourceFlags) (dir string, err error)

// remoteSource is set by runner/cli/distcli; without it a registry
// reference is handed to nemoclaw-dist.
var remoteSource RemoteSource

// SetRemoteSource installs how registry references are resolved in this
// executable. runner/cli/distcli calls it from init(); without it `blueprint
// apply REF` re-runs the whole command line in nemoclaw-dist.
func SetRemoteSource(r RemoteSource) { remoteSource = r }

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
// is, or a registry reference resolved by the RemoteSource. Without one the
// command line is handed to nemoclaw-dist, and resolve returns only on
// failure.
func (s *SourceFlags) resolve(cmd *cobra.Command, app *App, arg string) (string, error) {
	if isLocalSource(arg) {
		if s.Constraint != "" {
			return "", Usage(fmt.Errorf("--version %q applies to registry references, not the local directory %s", s.Constraint, arg))
		}
		return arg, nil
	}
	if remoteSource == nil {
		return "", app.delegate(commandName(cmd) + " " + arg)
	}
	return remoteSource(cmd.Context(), app, arg, s)
}

// AddSourceFlags registers the flags of a command that takes a blueprint
// source (--version, --lock, --allow-downgrade, verification, registry);
// for the commands of runner/cli/distcli.
func AddSourceFlags(cmd *cobra.Command) *SourceFlags { return addSourceFlags(cmd) }
