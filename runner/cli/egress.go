package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

// sandboxFlagHooks let hooks add flags to `sandbox run`.
var sandboxFlagHooks []func(fs *pflag.FlagSet)

// egressFlags are the egress flags of `sandbox run` (one run per process).
var egressFlags struct {
	approvals bool
	timeout   time.Duration
}

func init() {
	sandboxHooks = append(sandboxHooks, func() SandboxHook { return &egressHook{} })
	sandboxFlagHooks = append(sandboxFlagHooks, func(fs *pflag.FlagSet) {
		fs.BoolVar(&egressFlags.approvals, "approvals", false,
			"hold requests to destinations outside the policy until an operator decides in `nemoclaw policy approvals NAME` (default: refuse at once and list them for approval)")
		fs.DurationVar(&egressFlags.timeout, "approval-timeout", 2*time.Minute, "how long --approvals holds a request")
	})
}

// Paths inside the sandbox where the proxy's trust material appears.
const (
	sandboxCABundle = "/run/nemoclaw/ca-bundle.pem"
	sandboxCACert   = "/run/nemoclaw/ca.pem"
	sandboxProxyURL = "http://127.0.0.1:3128"
)

// egressHook attaches the egress proxy to a sandbox run: every connection
// the agent makes leaves through it, its DNS is answered by it, and the
// control socket lets `nemoclaw policy ...` steer it live.
type egressHook struct {
	proxy   *egress.Proxy
	audit   *os.File
	sockDir string
	ctl     net.Listener // closed by Close too: ServeControl may not have registered it yet
	wg      sync.WaitGroup

	// The CA being made by Warm for sandbox caName; caDone closes when ready.
	caName string
	caDone chan struct{}
	ca     *egress.CA
	caErr  error
}

// Warm starts making the sandbox's interception CA (two key generations
// and a signature) while the caller loads the policy.
func (h *egressHook) Warm(name string) {
	h.caName, h.caDone = name, make(chan struct{})
	go func() {
		defer close(h.caDone)
		h.ca, h.caErr = egress.NewCA(name)
	}()
}

// sandboxDir is $NEMOCLAW_HOME/sandboxes/<name>.
func sandboxDir(app *App, name string) string { return filepath.Join(app.Home, "sandboxes", name) }

// Prepare builds the proxy (CA, policy, audit log) and adds the sandbox's
// proxy environment, resolv.conf and CA files to cfg.
func (h *egressHook) Prepare(app *App, cfg *sandbox.Config) error {
	if cfg.Name == "" {
		cfg.Name = randomName()
	}
	var ca *egress.CA
	if h.caDone != nil && h.caName == cfg.Name {
		<-h.caDone
		if h.caErr != nil {
			return fmt.Errorf("sandbox: %w", h.caErr)
		}
		ca = h.ca
	}
	dir := sandboxDir(app, cfg.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sandbox: egress: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "audit.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sandbox: egress: audit log: %w", err)
	}
	p, err := egress.New(egress.Config{
		Sandbox:         cfg.Name,
		Policy:          cfg.Policy,
		Logger:          app.Logger,
		AuditLog:        f,
		Approvals:       egressFlags.approvals,
		ApprovalTimeout: egressFlags.timeout,
		ApprovalsFile:   filepath.Join(dir, "approvals.json"),
		CA:              ca,
	})
	if err != nil {
		f.Close()
		return Refused(fmt.Errorf("sandbox: %w\n  what to do: fix the network_policies entry named above (check it with `nemoclaw policy validate FILE`)", err))
	}
	h.proxy, h.audit, h.sockDir = p, f, dir
	cfg.Network.Proxy, cfg.Network.DNS, cfg.Network.ProxyPort = true, true, sandbox.DefaultProxyPort
	cfg.Env = append(cfg.Env, p.Env(sandboxProxyURL, sandboxCABundle, sandboxCACert)...)
	cfg.Files = append(cfg.Files,
		sandbox.File{Path: "/etc/resolv.conf", Data: []byte("# nemoclaw: DNS answers only names the sandbox policy allows\nnameserver 127.0.0.1\noptions edns0 trust-ad\n")},
		sandbox.File{Path: sandboxCABundle, Data: p.CABundle()},
		sandbox.File{Path: sandboxCACert, Data: p.CACertPEM()},
	)
	return nil
}

// Attach serves the sandbox's proxy and DNS listeners and the control socket.
func (h *egressHook) Attach(app *App, sb *sandbox.Sandbox) error {
	if h.proxy == nil {
		return nil
	}
	h.proxy.SetNetnsPid(sb.Pid())
	if l := sb.ProxyListener(); l != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.proxy.Serve(l); err != nil {
				app.Logger.Warn("egress proxy", "err", err)
			}
		}()
	}
	if pc, l := sb.DNSPacketConn(), sb.DNSListener(); pc != nil || l != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.proxy.ServeDNS(pc, l); err != nil {
				app.Logger.Warn("egress dns", "err", err)
			}
		}()
	}
	ctl, err := egress.ListenControl(filepath.Join(h.sockDir, "control.sock"))
	if err != nil {
		return fmt.Errorf("sandbox: egress: %w", err)
	}
	h.ctl = ctl
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		if err := h.proxy.ServeControl(ctl); err != nil {
			app.Logger.Warn("egress control", "err", err)
		}
	}()
	return nil
}

// Close stops the proxy, writes the audit summaries and removes the socket.
func (h *egressHook) Close() error {
	if h.proxy == nil {
		return nil
	}
	err := h.proxy.Close()
	if h.ctl != nil {
		_ = h.ctl.Close()
	}
	h.wg.Wait()
	if cerr := h.audit.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(filepath.Join(h.sockDir, "control.sock"))
	return err
}
