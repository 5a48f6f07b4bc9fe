// Package registry distributes blueprints through OCI registries: push with
// deterministic packing, pull by tag, digest or semver constraint, a lock
// file that pins digests, a content-addressed OCI layout cache that works
// offline, and Sigstore signatures stored as OCI referrers.
//
// Everything fails closed. Content is checked against its digest before it
// is used, a signature is verified against the trust policy (or one-off
// flags) before anything is unpacked, and the lock and the cache's index are
// written only after every check passed. Refusals are *RefusedError or
// *signing.VerificationError (see IsRefusal).
package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Config configures a Client.
type Config struct {
	// Home is $NEMOCLAW_HOME; the cache lives in Home/cache, the trust
	// policy in Home/trust/policy.yaml, registry logins in Home/auth.json.
	Home string
	// Logger receives debug and warning logs; nil discards them.
	Logger *slog.Logger
	// PlainHTTP talks plain HTTP to every registry. Without it only
	// loopback registries are reached over plain HTTP.
	PlainHTTP bool
	// Credentials looks up registry credentials; nil means nemoclaw's own
	// logins (Home/auth.json) and then docker's config.json.
	Credentials credentials.Store
	// Progress receives human progress lines (stderr in the CLI); nil
	// prints nothing.
	Progress io.Writer
	// HTTPClient is the transport to registries; nil uses a client with
	// connect timeouts and no retries, so a registry that is down fails
	// at once.
	HTTPClient *http.Client
}

// Client pushes, pulls, signs and verifies blueprints.
type Client struct {
	cfg       Config
	log       *slog.Logger
	creds     credentials.Store
	ownCreds  credentials.Store
	authCache auth.Cache
	http      *http.Client
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Home == "" {
		return nil, fmt.Errorf("registry: Config.Home is empty")
	}
	c := &Client{cfg: cfg, log: cfg.Logger, authCache: auth.NewCache(), http: cfg.HTTPClient}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second}).DialContext
		tr.ResponseHeaderTimeout = 60 * time.Second
		c.http = &http.Client{Transport: tr}
	}
	own, err := credentials.NewStore(c.AuthFile(), credentials.StoreOptions{AllowPlaintextPut: true})
	if err != nil {
		return nil, fmt.Errorf("registry: credentials %s: %w", c.AuthFile(), err)
	}
	c.ownCreds = own
	c.creds = cfg.Credentials
	if c.creds == nil {
		docker, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			c.log.Warn("docker config.json unreadable; using nemoclaw logins only", "err", err)
			c.creds = own
		} else {
			c.creds = credentials.NewStoreWithFallbacks(own, docker)
		}
	}
	return c, nil
}

// AuthFile is where `nemoclaw registry login` stores credentials (docker
// config.json format, mode 0600).
func (c *Client) AuthFile() string { return filepath.Join(c.cfg.Home, "auth.json") }

// TrustPolicyFile is the trust policy's path.
func (c *Client) TrustPolicyFile() string {
	return filepath.Join(c.cfg.Home, "trust", "policy.yaml")
}

// plainHTTP decides the scheme for a registry host.
func (c *Client) plainHTTP(host string) bool { return c.cfg.PlainHTTP || IsLoopback(host) }

func (c *Client) authClient() *auth.Client {
	return &auth.Client{
		Client:     c.http,
		Cache:      c.authCache,
		Credential: credentials.Credential(c.creds),
		Header:     http.Header{"User-Agent": {"nemoclaw"}},
	}
}

// repository opens ref's repository on its registry.
func (c *Client) repository(ref Reference) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Repo())
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", ref.Repo(), err)
	}
	repo.PlainHTTP = c.plainHTTP(ref.Registry)
	repo.Client = c.authClient()
	// Adding a referrer through the sha256-<hex> tag fallback replaces the
	// referrers index; oras-go would then delete the old one, which a
	// registry with deletes disabled (Distribution's default) answers with
	// 405 after the signature was pushed. The old index is unreferenced
	// garbage the registry's own GC collects, so leave it, as the oras CLI
	// does.
	repo.SkipReferrersGC = true
	return repo, nil
}

// progressf prints one progress line.
func (c *Client) progressf(format string, a ...any) {
	if c.cfg.Progress != nil {
		_, _ = fmt.Fprintf(c.cfg.Progress, format+"\n", a...)
	}
}

// Login checks user/password against registry host and stores them in
// AuthFile.
func (c *Client) Login(ctx context.Context, host, user, password string) error {
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return fmt.Errorf("login %s: %w", host, err)
	}
	reg.PlainHTTP = c.plainHTTP(host)
	reg.Client = c.authClient()
	if err := os.MkdirAll(c.cfg.Home, 0o700); err != nil {
		return fmt.Errorf("login %s: %w", host, err)
	}
	if err := credentials.Login(ctx, c.ownCreds, reg, auth.Credential{Username: user, Password: password}); err != nil {
		return fmt.Errorf("login %s: %w", host, explain(Reference{Registry: host}, err))
	}
	if err := os.Chmod(c.AuthFile(), 0o600); err != nil {
		return fmt.Errorf("login %s: %w", host, err)
	}
	return nil
}

// Logout removes host's credentials from AuthFile.
func (c *Client) Logout(ctx context.Context, host string) error {
	if err := credentials.Logout(ctx, c.ownCreds, host); err != nil {
		return fmt.Errorf("logout %s: %w", host, err)
	}
	return nil
}
