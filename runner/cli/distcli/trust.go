package distcli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nemoclaw/nemoclaw/runner/cli"
	"github.com/nemoclaw/nemoclaw/runner/cli/distcli/commands"
	"github.com/nemoclaw/nemoclaw/runner/signing"
)

// trustPolicyFile is $NEMOCLAW_HOME/trust/policy.yaml.
func trustPolicyFile(app *cli.App) string {
	return filepath.Join(app.Home, "trust", "policy.yaml")
}

func newTrustCmd(app *cli.App) *cobra.Command {
	trust := &cobra.Command{
		Use:   commands.Trust.Use,
		Short: commands.Trust.Short,
		Args:  cli.NoArgs,
		RunE:  cli.GroupHelp,
	}
	var keys []string
	var id signing.Identity
	var trustedRoot string
	add := &cobra.Command{
		Use:   "add PATTERN (--key FILE.pub | --certificate-identity ID --certificate-oidc-issuer URL [--trusted-root FILE])",
		Short: "Trust a key or keyless identity for the repositories PATTERN matches",
		Long: `Add a rule to $NEMOCLAW_HOME/trust/policy.yaml: blueprints from repositories
PATTERN matches ("registry.example.com/team/*": * is one path segment, ** is
anything) must be signed by the key (copied into $NEMOCLAW_HOME/trust/keys/)
or the keyless identity. A rule for the same PATTERN is replaced. The first
matching rule wins.`,
		Args: cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keyless := id.Subject != "" || id.SubjectRegexp != "" || id.Issuer != "" || id.IssuerRegexp != ""
			if len(keys) == 0 && !keyless {
				return cli.Usage(errors.New("trust add: give --key FILE.pub, or --certificate-identity and --certificate-oidc-issuer"))
			}
			r := signing.TrustRule{Name: args[0], Match: []string{args[0]}, Keys: keys}
			if keyless {
				if (id.Subject == "") == (id.SubjectRegexp == "") || (id.Issuer == "") == (id.IssuerRegexp == "") {
					return cli.Usage(errors.New("trust add: keyless trust needs one of --certificate-identity/--certificate-identity-regexp and one of --certificate-oidc-issuer/--certificate-oidc-issuer-regexp"))
				}
				if trustedRoot == "" {
					return cli.Usage(errors.New("trust add: keyless trust needs --trusted-root FILE (a Sigstore trusted_root.json)"))
				}
				abs, err := filepath.Abs(trustedRoot)
				if err != nil {
					return err
				}
				r.Identities, r.TrustedRoot = []signing.Identity{id}, abs
			}
			for _, k := range keys {
				if err := signing.CheckPublicKeyFile(k); err != nil {
					return cli.Usage(fmt.Errorf("trust add: %w", err))
				}
			}
			tp, err := signing.LoadTrustPolicy(trustPolicyFile(app))
			if err != nil {
				return err
			}
			if err := tp.AddRule(r); err != nil {
				return fmt.Errorf("trust add %s: %w", args[0], err)
			}
			if err := tp.Save(); err != nil {
				return err
			}
			printf(app.Out, "trusted for %s: %s (in %s)\n", args[0], describeRule(r), tp.Path())
			return nil
		},
	}
	add.Flags().StringArrayVar(&keys, "key", nil, "public key file (PREFIX.pub) to trust; repeatable")
	add.Flags().StringVar(&id.Subject, "certificate-identity", "", "keyless signer's certificate identity (email, workflow URI)")
	add.Flags().StringVar(&id.SubjectRegexp, "certificate-identity-regexp", "", "regular expression for the certificate identity")
	add.Flags().StringVar(&id.Issuer, "certificate-oidc-issuer", "", "keyless signer's OIDC issuer URL")
	add.Flags().StringVar(&id.IssuerRegexp, "certificate-oidc-issuer-regexp", "", "regular expression for the OIDC issuer")
	add.Flags().StringVar(&trustedRoot, "trusted-root", "", "Sigstore trusted_root.json for keyless signatures")

	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "Show the trust policy's rules",
		Args:  cli.ArgsRange(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cli.CheckOutput(output, "text", "json"); err != nil {
				return err
			}
			tp, err := signing.LoadTrustPolicy(trustPolicyFile(app))
			if err != nil {
				return err
			}
			if output == "json" {
				rules := tp.Rules
				if rules == nil {
					rules = []signing.TrustRule{}
				}
				return cli.WriteJSON(app.Out, rules)
			}
			tw := tabwriter.NewWriter(app.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tMATCH\tTRUSTS")
			for _, r := range tp.Rules {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, strings.Join(r.Match, ","), describeRule(r))
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "text", "output: text or json")

	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a trust rule (its name is the PATTERN it was added with)",
		Args:  cli.ArgsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tp, err := signing.LoadTrustPolicy(trustPolicyFile(app))
			if err != nil {
				return err
			}
			if !tp.RemoveRule(args[0]) {
				return fmt.Errorf("trust remove %s: no rule of that name in %s ('nemoclaw trust list' shows them)", args[0], tp.Path())
			}
			if err := tp.Save(); err != nil {
				return err
			}
			printf(app.Out, "removed %s from %s\n", args[0], tp.Path())
			return nil
		},
	}
	trust.AddCommand(add, list, remove)
	return trust
}

// describeRule says whom a rule trusts.
func describeRule(r signing.TrustRule) string {
	var who []string
	for _, k := range r.Keys {
		who = append(who, "key "+k)
	}
	for _, id := range r.Identities {
		who = append(who, id.String())
	}
	return strings.Join(who, ", ")
}
