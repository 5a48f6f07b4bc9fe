package sandbox

import "time"

// initArg is argv[1] of the hidden init mode.
const initArg = "__sandbox-init"

// statusFD is the init's end of the status socketpair (fd 3 is the
// program pipe); nsinit.c uses the same numbers.
const statusFD = 4

// spec is everything the init needs, planned by the launcher; compile turns
// it into the init's program. Host paths are absolute paths as the launcher
// sees them.
type spec struct {
	// Tools is the host directory bound read-only at ToolsPath ("": none).
	Tools string `json:"tools,omitempty"`
	// HostTop names the host's top-level entries to bind into the
	// sandbox's root; nil binds them all.
	HostTop map[string]bool `json:"host_top,omitempty"`
	Name    string          `json:"name"`
	// Workspace is the host directory bound at /sandbox; "" mounts a
	// private tmpfs there instead.
	Workspace string `json:"workspace"`
	// WorkspaceUID and WorkspaceGID own Workspace on the host: as root,
	// its mount maps them to the agent's ids. WorkspaceDev and
	// WorkspaceIno identify it: the init binds that directory or none.
	WorkspaceUID int    `json:"workspace_uid,omitempty"`
	WorkspaceGID int    `json:"workspace_gid,omitempty"`
	WorkspaceDev uint64 `json:"workspace_dev,omitempty"`
	WorkspaceIno uint64 `json:"workspace_ino,omitempty"`
	// WorkspaceUIDMap and WorkspaceGIDMap are the uid_map and gid_map
	// lines of the workspace's idmapped mount ("" binds it as it is).
	WorkspaceUIDMap string     `json:"workspace_uid_map,omitempty"`
	WorkspaceGIDMap string     `json:"workspace_gid_map,omitempty"`
	Binds           []bindSpec `json:"binds,omitempty"`
	Argv            []string   `json:"argv"`
	Env             []string   `json:"env"`
	Dir             string     `json:"dir"`
	// SetIDs is true when the init runs as real root and must switch the
	// agent to UID/GID; rootless inits already are the mapped id.
	SetIDs bool `json:"set_ids"`
	UID    int  `json:"uid"`
	GID    int  `json:"gid"`
	TTY    bool `json:"tty"`
	// Tmpfs bounds the private tmpfs mounts (planTmpfs).
	Tmpfs       tmpfsLimits `json:"tmpfs"`
	MemfdNoexec bool        `json:"memfd_noexec"`
	// Hide are where nemoclaw's own state would show inside the sandbox,
	// each hidden under an empty read-only tmpfs: hiddenState.
	Hide []accessBind `json:"hide,omitempty"`
	// Protect are the sandbox paths bound read-only onto themselves after
	// AccessBinds: the files host tools run code from (protectWorkspace).
	Protect []string `json:"protect,omitempty"`
	// AccessBinds set mount read-only flags where Landlock cannot: see
	// accessBinds.
	AccessBinds []accessBind `json:"access_binds,omitempty"`
	// StopTimeoutMs is Config.StopTimeout for the init (-1: no limit).
	StopTimeoutMs int64        `json:"stop_timeout_ms"`
	Landlock      landlockPlan `json:"landlock"`
	Seccomp       []byte       `json:"seccomp"`
	Rlimits       []rlimitSpec `json:"rlimits,omitempty"`
	Network       netSpec      `json:"network"`
	// Devices are the passed-through devices (devices.go).
	Devices *devicesSpec `json:"devices,omitempty"`
}

// bindSpec places host file From (if any) then Data read-only at Dst
// inside the sandbox.
type bindSpec struct {
	From string `json:"from,omitempty"`
	Data []byte `json:"data"`
	Dst  string `json:"dst"`
	// later is File.Later, resolved into Data by fill.
	later func() ([]byte, error)
}

// netSpec lists the listeners the init creates inside the network namespace.
type netSpec struct {
	ProxyPort int  `json:"proxy_port,omitempty"` // 0: no proxy listener
	DNS       bool `json:"dns,omitempty"`
	// Inference: TCP listeners on InferenceAddr:80 and :443.
	Inference bool `json:"inference,omitempty"`
}

// rlimitSpec is one setrlimit call.
type rlimitSpec struct {
	Resource int    `json:"resource"`
	Name     string `json:"name"`
	Value    uint64 `json:"value"`
}

// statusMsg is one message on the status socket, init to launcher.
type statusMsg struct {
	// Error is set when a setup step failed; the init exits after sending it.
	Error *stepError `json:"error,omitempty"`
	// Ready is set once the agent runs; listener fds ride along (SCM_RIGHTS)
	// in the order Listeners names them.
	Ready     bool     `json:"ready,omitempty"`
	Listeners []string `json:"listeners,omitempty"`
	Notes     []string `json:"notes,omitempty"`
	// Exit is set when the agent has exited and the sandbox is torn down.
	Exit *exitStatus `json:"exit,omitempty"`
	// Join answers a join request: the process runs (Pid) or did not
	// start (Error). Joined reports a joined process's exit. See join.go.
	Join   *joinReply  `json:"join,omitempty"`
	Joined *joinedExit `json:"joined,omitempty"`
}

// exitStatus is how the agent ended.
type exitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
	// Stopped: the init killed the sandbox because the agent outlived
	// its stop timeout after SIGTERM.
	Stopped bool `json:"stopped,omitempty"`
}

// stopTimeoutMs is Config.StopTimeout in the init's terms: milliseconds,
// -1 for no limit.
func stopTimeoutMs(d time.Duration) int64 {
	switch {
	case d == 0:
		d = DefaultStopTimeout
	case d < 0:
		return -1
	}
	return d.Milliseconds()
}

// Listener names in statusMsg.Listeners.
const (
	lnProxy  = "proxy-tcp"
	lnDNSUDP = "dns-udp"
	lnDNSTCP = "dns-tcp"
)

// The inference.local listeners' names in statusMsg.Listeners.
const (
	lnInfHTTP  = "inference-http"
	lnInfHTTPS = "inference-https"
)
