package distcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	"github.com/nemoclaw/nemoclaw/runner/registry"
	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// constructors builds the commands of the table in
// runner/cli/distcli/commands, the one from which the lean nemoclaw makes
// its stubs; TestCommandTable checks that both list the same commands.
var constructors = map[commands.Command]func(app *cli.App) *cobra.Command{
	commands.BlueprintPush:   newBlueprintPushCmd,
	commands.BlueprintPull:   newBlueprintPullCmd,
	commands.BlueprintUpdate: newBlueprintUpdateCmd,
	commands.BlueprintList:   newBlueprintListCmd,
	commands.BlueprintSign:   newBlueprintSignCmd,
	commands.BlueprintVerify: newBlueprintVerifyCmd,
	commands.Key:             newKeyCmd,
	commands.Registry:        newRegistryCmd,
	commands.Trust:           newTrustCmd,
	commands.BlueprintRender: newBlueprintRenderCmd,
}

func init() {
	for _, c := range commands.All { // the table's order is the help's
		if constructors[c] == nil {
			panic("distcli: no constructor for the table's command " + c.Use)
		}
		switch c.Parent {
		case "blueprint":
			cli.RegisterBlueprint(constructors[c])
		default:
			cli.Register(constructors[c])
		}
	}
	cli.SetRemoteSource(resolveRemote)
}

func newBlueprintPushCmd(app *cli.App) *cobra.Command {
	var title, output string
	var force bool
	var rf *cli.RegistryFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintPush.Use,
		Short: commands.BlueprintPush.Short,
		Long: `Pack DIR (which must validate) into a deterministic tar — the same directory
always gives the same digest — and push it to REF (host/repo or host/repo:tag)
as an OCI artifact. The blueprint's version is always pushed as a tag too, so
'pull --version' constraints find it. A version tag that already holds other
content is not moved (exit 3; every lock of that version pins the old digest)
unless --force is given.`,
		Args: cli.ArgsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cli.CheckOutput(output, "text", "json"); err != nil {
				return err
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			p, err := c.Push(cmd.Context(), registry.PushOptions{Dir: args[0], Ref: args[1], Title: title, Force: force})
			if err != nil {
				return distError(err)
			}
			if output == "json" {
				return cli.WriteJSON(app.Out, p)
			}
			printf(app.Out, "%s@%s\n", p.Ref, p.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&title, "title", "", "title annotation (default: the repository's last path element)")
	cmd.Flags().BoolVar(&force, "force", false, "move a version tag that already holds other content")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	rf = cli.AddRegistryFlags(cmd)
	return cmd
}

// pullResult is `blueprint pull --output json`.
type pullResult struct {
	*registry.Fetched
	Lock string `json:"lock,omitempty"`
}

func newBlueprintPullCmd(app *cli.App) *cobra.Command {
	var constraint, lockPath, output string
	var allowDowngrade, noLock bool
	var vf *cli.VerifyFlags
	var rf *cli.RegistryFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintPull.Use,
		Short: commands.BlueprintPull.Short,
		Long: `Resolve REF (host/repo:tag, host/repo@sha256:..., or host/repo with
--version "~> 1.2" / ">= 1.2, < 2"; the highest matching version wins and
pre-releases match only a constraint that names one), verify every digest and
the signature against $NEMOCLAW_HOME/trust/policy.yaml (or --key /
--certificate-identity), unpack it into $NEMOCLAW_HOME/cache/blueprints/ and
record ref, version, digest and signer in nemoclaw.lock.

With a lock entry that answers REF, the locked digest is used; if it is cached
no network is needed. Moving to a newer match is 'blueprint update'.
Refusals (tampered content, bad or missing signature, moved tag, downgrade)
exit with code 3 and change neither the lock nor the cache.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cli.CheckOutput(output, "text", "json"); err != nil {
				return err
			}
			v, err := verification(vf, app.Home)
			if err != nil {
				return err
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			lp := lockPath
			if noLock {
				lp = ""
			}
			f, err := c.Fetch(cmd.Context(), registry.FetchOptions{Ref: args[0], Constraint: constraint, LockPath: lp, AllowDowngrade: allowDowngrade, Verification: v})
			if err != nil {
				return distError(err)
			}
			if output == "json" {
				return cli.WriteJSON(app.Out, pullResult{Fetched: f, Lock: lp})
			}
			printf(app.Out, "%s %s %s\n%s\n", f.Ref, f.Version, f.Digest, f.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&constraint, "version", "", `semver constraint, e.g. "~> 1.2" or ">= 1.2, < 2"`)
	cmd.Flags().StringVar(&lockPath, "lock", registry.DefaultLockFile, "lock file to honour and update")
	cmd.Flags().BoolVar(&noLock, "no-lock", false, "neither read nor write a lock file")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "accept a version lower than the locked one")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	vf = cli.AddVerifyFlags(cmd)
	rf = cli.AddRegistryFlags(cmd)
	return cmd
}

func newBlueprintUpdateCmd(app *cli.App) *cobra.Command {
	var constraint, lockPath string
	var allowDowngrade bool
	var vf *cli.VerifyFlags
	var rf *cli.RegistryFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintUpdate.Use,
		Short: commands.BlueprintUpdate.Short,
		Long: `Re-resolve the lock entry for REF (host/repo), or every entry, against the
registry: the newest version matching the entry's constraint (or --version)
is fetched, verified and locked. Going below the locked version needs
--allow-downgrade.`,
		Args: cli.ArgsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := verification(vf, app.Home)
			if err != nil {
				return err
			}
			lock, err := registry.ReadLock(lockPath)
			if err != nil {
				return err
			}
			var refs []string
			if len(args) == 1 {
				r, err := registry.ParseReference(args[0])
				if err != nil {
					return cli.Usage(err)
				}
				if r.Tag != "" || r.Digest != "" {
					return cli.Usage(fmt.Errorf("update %s: give host/repo (and --version), not a tag or digest; to pin a tag use 'blueprint pull'", args[0]))
				}
				if lock.Find(r.Repo()) == nil {
					return fmt.Errorf("update %s: not in %s; run 'nemoclaw blueprint pull %s' first", r.Repo(), lockPath, r.Repo())
				}
				refs = []string{r.Repo()}
			} else {
				if constraint != "" {
					return cli.Usage(errors.New("--version needs a REF: constraints differ per blueprint"))
				}
				for _, e := range lock.Blueprints {
					refs = append(refs, e.Ref)
				}
				if len(refs) == 0 {
					return fmt.Errorf("update: %s has no blueprints; run 'nemoclaw blueprint pull REF' first", lockPath)
				}
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			for _, ref := range refs {
				f, err := c.Fetch(cmd.Context(), registry.FetchOptions{Ref: ref, Constraint: constraint, LockPath: lockPath, Update: true, AllowDowngrade: allowDowngrade, Verification: v})
				if err != nil {
					return distError(err)
				}
				switch {
				case f.PreviousDigest == "":
					printf(app.Out, "%s %s (unchanged)\n", f.Ref, f.Version)
				default:
					printf(app.Out, "%s %s %s (was %s)\n", f.Ref, f.Version, f.Digest, f.PreviousDigest)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&constraint, "version", "", "new semver constraint for REF")
	cmd.Flags().StringVar(&lockPath, "lock", registry.DefaultLockFile, "lock file to update")
	cmd.Flags().BoolVar(&allowDowngrade, "allow-downgrade", false, "accept a version lower than the locked one")
	vf = cli.AddVerifyFlags(cmd)
	rf = cli.AddRegistryFlags(cmd)
	return cmd
}

// listEntry is one row of `blueprint list`.
type listEntry struct {
	Ref     string `json:"ref"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
	Cached  bool   `json:"cached"`
	Locked  bool   `json:"locked"`
	Signer  string `json:"signer,omitempty"`
}

func newBlueprintListCmd(app *cli.App) *cobra.Command {
	var lockPath, output string
	cmd := &cobra.Command{
		Use:   commands.BlueprintList.Use,
		Short: commands.BlueprintList.Short,
		Args:  cli.ArgsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cli.CheckOutput(output, "text", "json"); err != nil {
				return err
			}
			c, err := newRegistryClient(app, nil)
			if err != nil {
				return err
			}
			cached, err := c.Cached(cmd.Context())
			if err != nil {
				return err
			}
			lock, err := registry.ReadLock(lockPath)
			if err != nil {
				return err
			}
			var rows []listEntry
			locked := map[string]*registry.LockEntry{}
			for i := range lock.Blueprints {
				e := &lock.Blueprints[i]
				locked[e.Ref+"@"+e.Digest] = e
			}
			seen := map[string]bool{}
			for _, cb := range cached {
				key := cb.Ref + "@" + cb.Digest
				row := listEntry{Ref: cb.Ref, Version: cb.Version, Digest: cb.Digest, Cached: true}
				if e := locked[key]; e != nil {
					row.Locked, row.Signer = true, e.Signer
				}
				seen[key] = true
				rows = append(rows, row)
			}
			for _, e := range lock.Blueprints {
				if !seen[e.Ref+"@"+e.Digest] {
					rows = append(rows, listEntry{Ref: e.Ref, Version: e.Version, Digest: e.Digest, Locked: true, Signer: e.Signer})
				}
			}
			if output == "json" {
				if rows == nil {
					rows = []listEntry{}
				}
				return cli.WriteJSON(app.Out, rows)
			}
			tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tVERSION\tDIGEST\tCACHED\tLOCKED\tSIGNER")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Ref, r.Version, r.Digest, yesNo(r.Cached), yesNo(r.Locked), r.Signer)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&lockPath, "lock", registry.DefaultLockFile, "lock file to show")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")
	return cmd
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newBlueprintSignCmd(app *cli.App) *cobra.Command {
	var keyPath, bundleOut string
	var rf *cli.RegistryFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintSign.Use,
		Short: commands.BlueprintSign.Short,
		Long: `Sign the blueprint manifest REF names with PREFIX.key (passphrase from
NEMOCLAW_KEY_PASSWORD, or asked for on a terminal). The Sigstore bundle is
pushed as a referrer of the manifest (registries without the referrers API
get oras' sha256-<hex> tag fallback); --bundle also writes it to a file for
offline verification. Key-based signing needs no network beyond the registry.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyPath == "" {
				return cli.Usage(errors.New("--key PREFIX.key is required"))
			}
			if err := signing.CheckPrivateKeyFile(keyPath); err != nil {
				return cli.Usage(err)
			}
			pass, err := readSecret(app, "NEMOCLAW_KEY_PASSWORD", "passphrase for "+keyPath, false)
			if err != nil {
				return err
			}
			kp, err := signing.LoadPrivateKey(keyPath, pass)
			if err != nil {
				return err
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			s, err := c.Sign(cmd.Context(), registry.SignOptions{Ref: args[0], Key: kp, BundleOut: bundleOut})
			if err != nil {
				return distError(err)
			}
			printf(app.Out, "%s signed by %s (signature %s)\n", s.Subject, s.Signer, s.Referrer)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyPath, "key", "", "private key file written by 'nemoclaw key generate'")
	cmd.Flags().StringVar(&bundleOut, "bundle", "", "also write the Sigstore bundle to this file")
	rf = cli.AddRegistryFlags(cmd)
	return cmd
}

func newBlueprintVerifyCmd(app *cli.App) *cobra.Command {
	var constraint string
	var bundles []string
	var vf *cli.VerifyFlags
	var rf *cli.RegistryFlags
	cmd := &cobra.Command{
		Use:   commands.BlueprintVerify.Use,
		Short: commands.BlueprintVerify.Short,
		Long: `Verify REF's manifest and layer digests and its Sigstore signature against
the given key or keyless identity (or, with neither, the trust policy).
Nothing is written. Exit code 3 when verification fails.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := verification(vf, app.Home)
			if err != nil {
				return err
			}
			if v.InsecureSkipVerify {
				return cli.Usage(errors.New("--insecure-skip-verify makes no sense for verify"))
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			res, err := c.Verify(cmd.Context(), registry.VerifyOptions{Ref: args[0], Constraint: constraint, Verification: v, Bundles: bundles})
			if err != nil {
				return distError(err)
			}
			printf(app.Out, "%s (%s): verified, signed by %s\n", res.Subject, res.Version, res.Signer)
			return nil
		},
	}
	cmd.Flags().StringVar(&constraint, "version", "", "semver constraint, for REF without tag or digest")
	cmd.Flags().StringArrayVar(&bundles, "bundle", nil, "also try this Sigstore bundle file (from 'sign --bundle'); repeatable")
	vf = cli.AddVerifyFlags(cmd)
	rf = cli.AddRegistryFlags(cmd)
	return cmd
}

func newKeyCmd(app *cli.App) *cobra.Command {
	key := &cobra.Command{
		Use:   commands.Key.Use,
		Short: commands.Key.Short,
		Args:  cli.NoArgs,
		RunE:  cli.GroupHelp,
	}
	key.AddCommand(&cobra.Command{
		Use:   "generate PREFIX",
		Short: "Generate an ECDSA P-256 signing key: PREFIX.key (encrypted) and PREFIX.pub",
		Long: `Write PREFIX.key, encrypted with the passphrase from NEMOCLAW_KEY_PASSWORD (or
asked for twice on a terminal) in the format cosign also reads, and
PREFIX.pub. Put PREFIX.pub in a trust policy rule, or pass it to --key.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pass, err := readSecret(app, "NEMOCLAW_KEY_PASSWORD", "passphrase for the new key", true)
			if err != nil {
				return err
			}
			keyPath, pubPath, err := signing.GenerateKey(args[0], pass)
			if err != nil {
				return err
			}
			pub, err := signing.LoadPublicKey(pubPath)
			if err != nil {
				return err
			}
			printf(app.Out, "private key: %s\npublic key:  %s\nfingerprint: %s\n", keyPath, pubPath, signing.Fingerprint(pub))
			return nil
		},
	})
	return key
}

func newRegistryCmd(app *cli.App) *cobra.Command {
	reg := &cobra.Command{
		Use:   commands.Registry.Use,
		Short: commands.Registry.Short,
		Args:  cli.NoArgs,
		RunE:  cli.GroupHelp,
	}
	var user string
	var passwordStdin bool
	var rf *cli.RegistryFlags
	login := &cobra.Command{
		Use:   "login HOST",
		Short: "Check credentials against a registry and store them in $NEMOCLAW_HOME/auth.json",
		Long: `Log in to HOST with basic credentials. They are checked against the registry
and stored in $NEMOCLAW_HOME/auth.json (mode 0600). Docker's config.json
credentials are also used, after nemoclaw's own.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return cli.Usage(errors.New("--username is required"))
			}
			var pass []byte
			var err error
			if passwordStdin {
				pass, err = readLine(app.In)
			} else {
				pass, err = readSecret(app, "NEMOCLAW_REGISTRY_PASSWORD", "password for "+user+"@"+args[0], false)
			}
			if err != nil {
				return err
			}
			c, err := newRegistryClient(app, rf)
			if err != nil {
				return err
			}
			if err := c.Login(cmd.Context(), args[0], user, string(pass)); err != nil {
				return err
			}
			printf(app.Out, "logged in to %s as %s (stored in %s)\n", args[0], user, c.AuthFile())
			return nil
		},
	}
	login.Flags().StringVarP(&user, "username", "u", "", "user name")
	login.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	rf = cli.AddRegistryFlags(login)
	logout := &cobra.Command{
		Use:   "logout HOST",
		Short: "Remove a registry's credentials from $NEMOCLAW_HOME/auth.json",
		Args:  cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newRegistryClient(app, nil)
			if err != nil {
				return err
			}
			if err := c.Logout(context.WithoutCancel(cmd.Context()), args[0]); err != nil {
				return err
			}
			printf(app.Out, "logged out of %s\n", args[0])
			return nil
		},
	}
	reg.AddCommand(login, logout)
	return reg
}

// readLine reads one line (a password piped on stdin).
func readLine(r io.Reader) ([]byte, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, cli.Usage(errors.New("--password-stdin: empty password"))
	}
	return []byte(line), nil
}
