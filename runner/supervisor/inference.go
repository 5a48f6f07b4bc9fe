package supervisor

import (
	"context"
	"errors"
	"fmt"

	"github.com/nemoclaw/nemoclaw/runner/egress"
	"github.com/nemoclaw/nemoclaw/runner/inference"
)

// OpInferenceSet switches the sandbox's inference route to another of its
// profiles (Request.Profile), live: calls in flight finish on the old
// route, /v1/models follows at once.
const OpInferenceSet = "inference-set"

// InferenceConfig is a sandbox's inference: its routes (one per blueprint
// profile, credentials read from the supervisor's environment, never
// passed into the sandbox) and the provider of their backends.
type InferenceConfig struct {
	// Routes are the sandbox's routes.
	Routes []inference.Route
	// Profile is the route in force at start.
	Profile string
	// Provider gives each route's backend (the plugin host); nil: every
	// call is answered 503 with Unavailable.
	Provider inference.Provider
	// Unavailable says why there is no provider.
	Unavailable string
	// MissingCredential names the host variable the active profile's
	// credential_env names when it is unset ("" otherwise): the launcher
	// said so already and skips its backend check.
	MissingCredential string
}

// InferenceInfo answers OpInferenceSet: the route now in force.
type InferenceInfo struct {
	Profile  string   `json:"profile"`
	Plugin   string   `json:"plugin,omitempty"`
	Model    string   `json:"model,omitempty"`
	Profiles []string `json:"profiles,omitempty"`
}

// newRouter builds the sandbox's router; its calls are audited through
// the proxy's audit log, which proxy() returns once it exists.
func newRouter(cfg *Config, proxy func() *egress.Proxy) (*inference.Router, error) {
	ic := cfg.Inference
	if ic == nil {
		ic = &InferenceConfig{}
	}
	rc := inference.RouterConfig{Sandbox: cfg.Name, Routes: ic.Routes, Active: ic.Profile, Provider: ic.Provider,
		NoProviderReason: ic.Unavailable, Logger: cfg.Logger,
		Audit: func(e inference.AuditEvent) {
			if p := proxy(); p != nil {
				p.AuditInference(egress.InferenceEvent{Route: e.Route, Plugin: e.Plugin, Model: e.Model, Method: e.Method, Path: e.Path,
					Error: e.Error, Status: e.Status, Stream: e.Stream, PromptTokens: e.Usage.PromptTokens,
					CompletionTokens: e.Usage.CompletionTokens, Latency: e.Latency, TTFB: e.TTFB})
			}
		}}
	if rc.NoProviderReason == "" {
		rc.NoProviderReason = "no inference plugin host runs for this sandbox (see `nemoclaw inference plugins`)"
	}
	rt, err := inference.NewRouter(rc)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	return rt, nil
}

// setInference serves OpInferenceSet.
func (s *Supervisor) setInference(profile string) Response {
	if profile == "" {
		return s.fail(errors.New("control: inference-set: name a profile (--profile P)"))
	}
	if err := s.router.SetRoute(profile); err != nil {
		return s.fail(fmt.Errorf("control: %w", err))
	}
	r, _ := s.router.Active()
	if s.keeps() {
		// Kept at once, like a policy change: `sandbox start` comes back
		// on the route in force.
		if err := writeLaunch(s.res.dir, s.launch()); err != nil {
			s.log.Warn("launch record: the route switch will not survive a restart", "err", err)
		}
	}
	return Response{V: APIVersion, ControlResponse: egress.ControlResponse{OK: true, Sandbox: s.cfg.Name, Generation: s.proxy.Generation()},
		Inference: &InferenceInfo{Profile: r.Profile, Plugin: r.Plugin, Model: r.Config.Model, Profiles: s.router.Profiles()}}
}

// SetInference asks the supervisor to switch the sandbox's inference route.
func (c *Client) SetInference(ctx context.Context, profile string) (*InferenceInfo, error) {
	resp, err := c.Call(ctx, Request{ControlRequest: egress.ControlRequest{Op: OpInferenceSet}, Profile: profile})
	if err != nil {
		return nil, err
	}
	return resp.Inference, nil
}

// serveInference serves the sandbox's inference.local listeners.
func (s *Supervisor) serveInference() {
	hl, tl := s.sb.InferenceListeners()
	if hl != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.proxy.ServeInference(hl, false); err != nil {
				s.log.Warn("inference.local http", "err", err)
			}
		}()
	}
	if tl != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.proxy.ServeInference(tl, true); err != nil {
				s.log.Warn("inference.local https", "err", err)
			}
		}()
	}
}

// launch is the launch record of the sandbox as it runs now: the live
// policy and the inference route in force.
func (s *Supervisor) launch() *Launch {
	l := launchOf(&s.cfg, s.proxy.Policy())
	if l.Inference != nil && s.router != nil {
		if r, ok := s.router.Active(); ok {
			l.Inference.Profile = r.Profile
		}
	}
	return l
}

// NewInferenceConfig is a sandbox's inference from its routes with profile
// in force: each route gets its key again from lookupEnv (the launcher's
// environment, never the sandbox's), so routes kept without keys (a launch
// record) and freshly resolved ones are treated alike. MissingCredential
// names the active route's unset variable. Nil when there are no routes.
func NewInferenceConfig(routes []inference.Route, profile string, lookupEnv func(string) (string, bool)) *InferenceConfig {
	if len(routes) == 0 {
		return nil
	}
	ic := &InferenceConfig{Profile: profile, Routes: make([]inference.Route, len(routes))}
	for i, r := range routes {
		var missing string
		ic.Routes[i], missing = r.Rekeyed(lookupEnv)
		if r.Profile == profile {
			ic.MissingCredential = missing
		}
	}
	return ic
}

// CheckActive asks the active route's backend whether it answers (nil
// when there is nothing to ask: no provider, or a missing key, which the
// caller has said already).
func (ic *InferenceConfig) CheckActive(ctx context.Context) error {
	if ic.Provider == nil || ic.MissingCredential != "" {
		return nil
	}
	for _, r := range ic.Routes {
		if r.Profile != ic.Profile {
			continue
		}
		b, err := ic.Provider.Backend(ctx, r)
		if err != nil {
			return fmt.Errorf("backend %s at %s: %w", r.Plugin, r.Config.Endpoint, err)
		}
		if err := b.Health(ctx); err != nil {
			return fmt.Errorf("backend %s at %s: %w", r.Plugin, r.Config.Endpoint, err)
		}
	}
	return nil
}
