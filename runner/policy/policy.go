// Package policy is the sandbox policy model: what a sandboxed agent may read,
// write, run as and reach over the network.
//
// The format is a superset of OpenShell's / NemoClaw's sandbox policy
// (version: 1). Fields that upstream defines but nemoclaw does not act on yet
// are decoded and kept, and Unenforced reports them, so an upstream file loads
// unchanged and the user is told exactly what is not enforced.
//
// Static fields (filesystem_policy, landlock, process, resources) are locked
// when a sandbox is created; live fields (network_policies,
// network_middlewares) can be replaced on a running sandbox.
package policy

// Policy is one sandbox policy document.
type Policy struct {
	// Version is the schema version; only 1 exists.
	Version int `yaml:"version" json:"version"`
	// Filesystem lists the paths the agent may read or write (Landlock).
	Filesystem *FilesystemPolicy `yaml:"filesystem_policy,omitempty" json:"filesystem_policy,omitempty"`
	// Landlock says how to behave when the kernel lacks Landlock features.
	Landlock *LandlockPolicy `yaml:"landlock,omitempty" json:"landlock,omitempty"`
	// Process names the user and group the agent runs as.
	Process *ProcessPolicy `yaml:"process,omitempty" json:"process,omitempty"`
	// Resources caps memory, processes and CPU (nemoclaw extension).
	Resources *Resources `yaml:"resources,omitempty" json:"resources,omitempty"`
	// NetworkPolicies are the egress allow rules, keyed by a policy-local name.
	NetworkPolicies map[string]*NetworkPolicy `yaml:"network_policies,omitempty" json:"network_policies,omitempty"`
	// NetworkMiddlewares is OpenShell's middleware section; kept, not enforced.
	NetworkMiddlewares map[string]*NetworkMiddleware `yaml:"network_middlewares,omitempty" json:"network_middlewares,omitempty"`
}

// FilesystemPolicy is the Landlock path allow list.
type FilesystemPolicy struct {
	// IncludeWorkdir adds the sandbox workspace (/sandbox) to ReadWrite.
	IncludeWorkdir bool `yaml:"include_workdir,omitempty" json:"include_workdir,omitempty"`
	// ReadOnly paths may be read and executed.
	ReadOnly []string `yaml:"read_only,omitempty" json:"read_only,omitempty"`
	// ReadWrite paths get every filesystem right the Landlock ABI has.
	ReadWrite []string `yaml:"read_write,omitempty" json:"read_write,omitempty"`
	// AllowHostExecutableWrites lets the agent write the files of a host
	// workspace that tools on the host run code from without being asked
	// to (.git, .envrc, .vscode/...: the sandbox package's
	// HostExecutableNames). By default those that exist are read-only
	// inside, and an absent .git is an empty read-only placeholder, so that the owner's
	// next `git status` or `cd` cannot run what the agent wrote there.
	AllowHostExecutableWrites bool `yaml:"allow_host_executable_writes,omitempty" json:"allow_host_executable_writes,omitempty"`
}

// Landlock compatibility modes.
const (
	// BestEffort degrades to what the kernel supports and says what it dropped.
	BestEffort = "best_effort"
	// HardRequirement refuses to start when any requested right is unsupported.
	HardRequirement = "hard_requirement"
)

// LandlockPolicy tunes Landlock enforcement.
type LandlockPolicy struct {
	// Compatibility is best_effort (default) or hard_requirement. NemoClaw's
	// older "strict" is accepted as a synonym of hard_requirement.
	Compatibility string `yaml:"compatibility,omitempty" json:"compatibility,omitempty"`
	// RestrictConnectToProxy (ABI >= 4) limits TCP connect() to the egress
	// proxy port. Off by default: agents call their own loopback servers.
	RestrictConnectToProxy bool `yaml:"restrict_connect_to_proxy,omitempty" json:"restrict_connect_to_proxy,omitempty"`
}

// HardRequired reports whether missing Landlock features must fail closed.
func (l *LandlockPolicy) HardRequired() bool {
	return l != nil && (l.Compatibility == HardRequirement || l.Compatibility == "strict")
}

// ProcessPolicy is the identity the agent runs as.
type ProcessPolicy struct {
	// RunAsUser is a user name or numeric uid.
	RunAsUser string `yaml:"run_as_user,omitempty" json:"run_as_user,omitempty"`
	// RunAsGroup is a group name or numeric gid.
	RunAsGroup string `yaml:"run_as_group,omitempty" json:"run_as_group,omitempty"`
}

// Resources are the sandbox's resource limits (nemoclaw extension). Empty
// fields mean no limit.
type Resources struct {
	// Memory is a byte quantity such as "512Mi" or "2G".
	Memory string `yaml:"memory,omitempty" json:"memory,omitempty"`
	// Pids is the maximum number of processes and threads.
	Pids int `yaml:"pids,omitempty" json:"pids,omitempty"`
	// CPU is a number of CPUs such as "1.5" or "500m".
	CPU string `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	// OpenFiles is RLIMIT_NOFILE.
	OpenFiles int `yaml:"open_files,omitempty" json:"open_files,omitempty"`
}

// NetworkPolicy is one named group of endpoints, optionally limited to some
// binaries. An empty Binaries list applies to every program in the sandbox.
type NetworkPolicy struct {
	// Name is a human-readable label; defaults to the map key.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Endpoints are the host:port destinations this group allows.
	Endpoints []*Endpoint `yaml:"endpoints" json:"endpoints"`
	// Binaries limits the group to these executables (advisory).
	Binaries []*Binary `yaml:"binaries,omitempty" json:"binaries,omitempty"`
}

// Endpoint protocols.
const (
	ProtoREST      = "rest"
	ProtoWebSocket = "websocket"
	ProtoTCP       = "tcp"
	ProtoGraphQL   = "graphql"
	ProtoSQL       = "sql"
	ProtoJSONRPC   = "json-rpc"
	ProtoMCP       = "mcp"
)

// Enforcement modes.
const (
	Enforce = "enforce"
	Audit   = "audit"
)

// MethodWebSocketText is the rule method for WebSocket text frames
// (upstream's websocket rules); the proxy does not read frames.
const MethodWebSocketText = "WEBSOCKET_TEXT"

// Access presets.
const (
	AccessReadOnly  = "read-only"
	AccessReadWrite = "read-write"
	AccessFull      = "full"
)

// Endpoint is one allowed destination with its optional L7 rules.
type Endpoint struct {
	// Host is an exact name, an IP, or a glob: "*." matches one label and
	// "**." one or more. Empty only together with AllowedIPs.
	Host string `yaml:"host,omitempty" json:"host,omitempty"`
	// Port is a single port; Ports wins when both are set.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Ports lists several ports.
	Ports []int `yaml:"ports,omitempty" json:"ports,omitempty"`
	// Path scopes this endpoint to a path glob on a shared host:port.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Protocol is rest, websocket, tcp (plain tunnel) or an upstream value.
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// TLS is terminate (intercept), passthrough or skip.
	TLS string `yaml:"tls,omitempty" json:"tls,omitempty"`
	// Enforcement is enforce (default) or audit.
	Enforcement string `yaml:"enforcement,omitempty" json:"enforcement,omitempty"`
	// Access is a rules shorthand: read-only, read-write or full.
	Access string `yaml:"access,omitempty" json:"access,omitempty"`
	// Rules are explicit L7 allow rules; exclusive with Access.
	Rules []*Rule `yaml:"rules,omitempty" json:"rules,omitempty"`
	// DenyRules block matching requests even when an allow rule matches.
	DenyRules []*Matcher `yaml:"deny_rules,omitempty" json:"deny_rules,omitempty"`
	// AllowedIPs lets this endpoint resolve to these IPs or CIDRs, which is
	// the only way to reach loopback or private addresses.
	AllowedIPs []string `yaml:"allowed_ips,omitempty" json:"allowed_ips,omitempty"`
	// AllowEncodedSlash keeps %2F in paths instead of refusing it.
	AllowEncodedSlash bool `yaml:"allow_encoded_slash,omitempty" json:"allow_encoded_slash,omitempty"`
	// Credentials bind host-side secrets to placeholders (nemoclaw extension).
	Credentials []*Credential `yaml:"credentials,omitempty" json:"credentials,omitempty"`

	// The fields below are defined upstream and kept; see Unenforced.

	WebsocketCredentialRewrite   bool                         `yaml:"websocket_credential_rewrite,omitempty" json:"websocket_credential_rewrite,omitempty"`
	RequestBodyCredentialRewrite bool                         `yaml:"request_body_credential_rewrite,omitempty" json:"request_body_credential_rewrite,omitempty"`
	PersistedQueries             string                       `yaml:"persisted_queries,omitempty" json:"persisted_queries,omitempty"`
	GraphQLPersistedQueries      map[string]*GraphQLOperation `yaml:"graphql_persisted_queries,omitempty" json:"graphql_persisted_queries,omitempty"`
	GraphQLMaxBodyBytes          int                          `yaml:"graphql_max_body_bytes,omitempty" json:"graphql_max_body_bytes,omitempty"`
	AdvisorProposed              bool                         `yaml:"advisor_proposed,omitempty" json:"advisor_proposed,omitempty"`
	CredentialSigning            string                       `yaml:"credential_signing,omitempty" json:"credential_signing,omitempty"`
	SigningService               string                       `yaml:"signing_service,omitempty" json:"signing_service,omitempty"`
	SigningRegion                string                       `yaml:"signing_region,omitempty" json:"signing_region,omitempty"`
	JSONRPCMaxBodyBytes          int                          `yaml:"json_rpc_max_body_bytes,omitempty" json:"json_rpc_max_body_bytes,omitempty"`
	JSONRPC                      *BodyOptions                 `yaml:"json_rpc,omitempty" json:"json_rpc,omitempty"`
	MCP                          *MCPOptions                  `yaml:"mcp,omitempty" json:"mcp,omitempty"`
	AllowUninspectedCredentials  bool                         `yaml:"allow_uninspected_credentials,omitempty" json:"allow_uninspected_credentials,omitempty"`
	ProviderCredentialed         bool                         `yaml:"provider_credentialed,omitempty" json:"provider_credentialed,omitempty"`
	CredentialBinding            *CredentialBinding           `yaml:"credential_binding,omitempty" json:"credential_binding,omitempty"`
}

// EffectivePorts returns Ports, or Port as a one-element list.
func (e *Endpoint) EffectivePorts() []int {
	if len(e.Ports) > 0 {
		return e.Ports
	}
	if e.Port != 0 {
		return []int{e.Port}
	}
	return nil
}

// IsTunnel reports whether the proxy relays e's connections without reading
// a request: protocol tcp, or tls passthrough/skip.
func (e *Endpoint) IsTunnel() bool {
	return e.Protocol == ProtoTCP || e.TLS == "passthrough" || e.TLS == "skip"
}

// TunnelFullAccess reports access: full on a tunnel endpoint, upstream's way
// of writing a raw L4 tunnel (NemoClaw's "access: full, tls: skip"). It
// asks for every request, which is what the tunnel carries, so it needs no
// rule and narrows nothing: the proxy compiles it as a plain tunnel.
func (e *Endpoint) TunnelFullAccess() bool {
	return e.Access == AccessFull && e.IsTunnel()
}

// EffectiveEnforcement returns the enforcement mode; enforce unless audit is
// asked for (OpenShell defaults to audit, we do not).
func (e *Endpoint) EffectiveEnforcement() string {
	if e.Enforcement == Audit {
		return Audit
	}
	return Enforce
}

// Credential binds a secret held by the supervisor to a placeholder the agent
// sees. The proxy substitutes the secret only on this endpoint.
type Credential struct {
	// Name identifies the credential; the agent's environment variable of this
	// name holds the placeholder.
	Name string `yaml:"name" json:"name"`
	// Env is the host environment variable holding the secret.
	Env string `yaml:"env,omitempty" json:"env,omitempty"`
	// File is a host file holding the secret (trailing newline trimmed).
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// In lists where substitution may happen: header, path, query. Default:
	// header and path.
	In []string `yaml:"in,omitempty" json:"in,omitempty"`
	// Header names the one request header the secret is substituted in when
	// In has header (default Authorization); a placeholder in any other
	// header is refused.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Segment is the 1-based path segment the secret is substituted in when
	// In has path (default 1, as in Telegram's /bot<token>/...).
	Segment int `yaml:"segment,omitempty" json:"segment,omitempty"`
	// Param is the query parameter whose whole value is the placeholder
	// when In has query (required then).
	Param string `yaml:"param,omitempty" json:"param,omitempty"`
	// Cleartext lets the secret go to a plain-http upstream; without it a
	// placeholder on a cleartext request is refused.
	Cleartext bool `yaml:"cleartext,omitempty" json:"cleartext,omitempty"`
}

// Rule is one L7 allow rule.
type Rule struct {
	// Allow is what the rule permits.
	Allow *Matcher `yaml:"allow" json:"allow"`
}

// Matcher selects requests. For REST, Method and Path (glob) and Query are
// used; the remaining fields belong to upstream protocols and are kept.
type Matcher struct {
	// Method is an HTTP method or "*".
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// Path is a glob over the canonical path: "*" one segment, "**" any.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// Query maps a decoded parameter name to a glob or any-of globs.
	Query map[string]*QueryMatcher `yaml:"query,omitempty" json:"query,omitempty"`

	Command       string                   `yaml:"command,omitempty" json:"command,omitempty"`
	OperationType string                   `yaml:"operation_type,omitempty" json:"operation_type,omitempty"`
	OperationName string                   `yaml:"operation_name,omitempty" json:"operation_name,omitempty"`
	Fields        []string                 `yaml:"fields,omitempty" json:"fields,omitempty"`
	Tool          *QueryMatcher            `yaml:"tool,omitempty" json:"tool,omitempty"`
	Params        map[string]*QueryMatcher `yaml:"params,omitempty" json:"params,omitempty"`
}

// QueryMatcher is a glob, written either as a plain string or as
// {glob: G} / {any: [G...]}.
type QueryMatcher struct {
	// Glob is a single pattern.
	Glob string `yaml:"glob,omitempty" json:"glob,omitempty"`
	// Any is a list of alternative patterns.
	Any []string `yaml:"any,omitempty" json:"any,omitempty"`
}

// Patterns returns every pattern of the matcher.
func (q *QueryMatcher) Patterns() []string {
	if q == nil {
		return nil
	}
	if q.Glob != "" {
		return append([]string{q.Glob}, q.Any...)
	}
	return q.Any
}

// Binary is an executable that a NetworkPolicy is limited to.
type Binary struct {
	// Path is the absolute path of the executable; globs are allowed.
	Path string `yaml:"path" json:"path"`
	// Harness is deprecated upstream and ignored.
	Harness bool `yaml:"harness,omitempty" json:"harness,omitempty"`
}

// GraphQLOperation is an upstream GraphQL persisted-query entry (kept only).
type GraphQLOperation struct {
	OperationType string   `yaml:"operation_type,omitempty" json:"operation_type,omitempty"`
	OperationName string   `yaml:"operation_name,omitempty" json:"operation_name,omitempty"`
	Fields        []string `yaml:"fields,omitempty" json:"fields,omitempty"`
}

// BodyOptions bounds request-body inspection (upstream, kept only).
type BodyOptions struct {
	MaxBodyBytes int `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
}

// MCPOptions are upstream MCP inspection options (kept only).
type MCPOptions struct {
	MaxBodyBytes            int   `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	StrictToolNames         *bool `yaml:"strict_tool_names,omitempty" json:"strict_tool_names,omitempty"`
	AllowAllKnownMCPMethods *bool `yaml:"allow_all_known_mcp_methods,omitempty" json:"allow_all_known_mcp_methods,omitempty"`
	// Versions are the allowed MCP revisions.
	Versions []string `yaml:"versions,omitempty" json:"versions,omitempty"`
}

// CredentialBinding is OpenShell's binding of an attached provider's static
// credentials to an endpoint (kept only: nemoclaw has no providers).
type CredentialBinding struct {
	// Provider names the OpenShell provider.
	Provider string `yaml:"provider" json:"provider"`
}

// NetworkMiddleware is an upstream middleware config (kept only).
type NetworkMiddleware struct {
	Name       string              `yaml:"name,omitempty" json:"name,omitempty"`
	Middleware string              `yaml:"middleware,omitempty" json:"middleware,omitempty"`
	Config     map[string]any      `yaml:"config,omitempty" json:"config,omitempty"`
	OnError    string              `yaml:"on_error,omitempty" json:"on_error,omitempty"`
	Endpoints  *MiddlewareSelector `yaml:"endpoints,omitempty" json:"endpoints,omitempty"`
	Order      int                 `yaml:"order,omitempty" json:"order,omitempty"`
}

// MiddlewareSelector picks hosts for a middleware (kept only).
type MiddlewareSelector struct {
	Include []string `yaml:"include,omitempty" json:"include,omitempty"`
	Exclude []string `yaml:"exclude,omitempty" json:"exclude,omitempty"`
}

// Preset is a named bundle of network policies that can be merged into a
// policy, e.g. "pypi" or "telegram".
type Preset struct {
	// Meta names and describes the preset.
	Meta PresetMeta `yaml:"preset" json:"preset"`
	// NetworkPolicies are merged into the target policy; on a key collision
	// the preset wins and the collision is reported.
	NetworkPolicies map[string]*NetworkPolicy `yaml:"network_policies" json:"network_policies"`
}

// PresetMeta is a preset's header.
type PresetMeta struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description"`
}
