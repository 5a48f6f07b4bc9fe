// Package distcli holds nemoclaw's distribution commands — blueprint push,
// pull, update, list, sign and verify, key and registry — and the resolution
// of registry references for `blueprint apply REF`. They need runner/registry
// and runner/signing, whose dependencies (sigstore-go, oras-go, grpc,
// protobuf) cost every process that links them milliseconds of package
// initialisation, so only the nemoclaw-dist executable links this package.
//
// Importing it (for its side effects) registers the commands into runner/cli's
// tree, replacing the stubs with which the lean nemoclaw hands those command
// lines to nemoclaw-dist.
package distcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/term"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/registry"
	"github.com/nemoclaw/nemoclaw/runner/signing"
	"github.com/nemoclaw/nemoclaw/runner/state"
)

// resolveRemote is cli's RemoteSource: ref is resolved through the lock,
// fetched into the cache and verified (refusals carry exit code 3).
func resolveRemote(ctx context.Context, app *cli.App, ref string, s *cli.SourceFlags) (string, error) {
	v, err := verification(s.Verify, app.Home)
	if err != nil {
		return "", err
	}
	c, err := newRegistryClient(app, s.Registry)
	if err != nil {
		return "", err
	}
	f, err := c.Fetch(ctx, registry.FetchOptions{Ref: ref, Constraint: s.Constraint, LockPath: s.LockPath, AllowDowngrade: s.AllowDowngrade, Verification: v})
	if err != nil {
		return "", distError(err)
	}
	app.Logger.Info("blueprint fetched", "ref", f.Ref, "version", f.Version, "digest", f.Digest, "signer", f.Signer, "from_cache", f.FromCache)
	s.Digest, s.Signer = f.Digest, f.Signer
	if s.LockPath != "" {
		// The pin as the lock now holds it: what a rollback to this
		// apply writes back.
		if abs, err := filepath.Abs(s.LockPath); err == nil {
			if l, err := registry.ReadLock(abs); err == nil {
				if e := l.Find(f.Ref); e != nil && e.Digest == f.Digest {
					s.Pin = &state.Pin{LockFile: abs, LockEntry: *e}
				}
			}
		}
	}
	return f.Dir, nil
}

// verification turns the flags into a registry.Verification; home is
// $NEMOCLAW_HOME (for the default trusted root).
func verification(f *cli.VerifyFlags, home string) (registry.Verification, error) {
	v := registry.Verification{InsecureSkipVerify: f.InsecureSkipVerify}
	keyless := f.Identity != "" || f.IdentityRegexp != "" || f.Issuer != "" || f.IssuerRegexp != ""
	if f.InsecureSkipVerify && (keyless || len(f.Keys) > 0) {
		return v, cli.Usage(errors.New("--insecure-skip-verify cannot be combined with --key or --certificate-identity: choose verification or none"))
	}
	if len(f.Keys) == 0 && !keyless {
		return v, nil
	}
	spec := &signing.RequirementSpec{Keys: f.Keys}
	if keyless {
		if (f.Identity == "") == (f.IdentityRegexp == "") || (f.Issuer == "") == (f.IssuerRegexp == "") {
			return v, cli.Usage(errors.New("keyless verification needs one of --certificate-identity/--certificate-identity-regexp and one of --certificate-oidc-issuer/--certificate-oidc-issuer-regexp"))
		}
		spec.Identities = []signing.Identity{{Issuer: f.Issuer, IssuerRegexp: f.IssuerRegexp, Subject: f.Identity, SubjectRegexp: f.IdentityRegexp}}
		spec.TrustedRoot = f.TrustedRoot
		if spec.TrustedRoot == "" {
			spec.TrustedRoot = home + "/trust/trusted_root.json"
		}
	}
	v.OneOff = spec
	return v, nil
}

// newRegistryClient builds the registry client for app; progress goes to
// stderr.
func newRegistryClient(app *cli.App, rf *cli.RegistryFlags) (*registry.Client, error) {
	plain := false
	if rf != nil {
		plain = rf.PlainHTTP
	}
	return registry.New(registry.Config{Home: app.Home, Logger: app.Logger, PlainHTTP: plain, Progress: app.Err})
}

// distError maps verification and integrity refusals to exit code 3.
func distError(err error) error {
	if err != nil && registry.IsRefusal(err) {
		return cli.Refused(err)
	}
	return err
}

// readSecret reads a secret: from env when set, else from a terminal on
// app.In (asking twice when confirm). It never reads a secret from a
// non-terminal stdin by accident.
func readSecret(app *cli.App, env, prompt string, confirm bool) ([]byte, error) {
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	f, ok := app.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, cli.Usage(fmt.Errorf("no passphrase: set %s or run on a terminal", env))
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
			return nil, cli.Usage(errors.New("the passphrases differ"))
		}
	}
	if strings.TrimSpace(string(p)) == "" {
		return nil, cli.Usage(errors.New("empty passphrase"))
	}
	return p, nil
}

// printf writes to w and ignores the error: a closed stdout is not worth
// failing a command over once its work is done.
func printf(w io.Writer, format string, a ...any) {
	_, _ = fmt.Fprintf(w, format, a...)
}
