package sandbox

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// landlockPlan is the ruleset the init enforces, already trimmed to the
// kernel's ABI by planLandlock.
type landlockPlan struct {
	ABI        int        `json:"abi"`
	HandledFS  uint64     `json:"handled_fs"`
	HandledNet uint64     `json:"handled_net,omitempty"`
	Scoped     uint64     `json:"scoped,omitempty"`
	Rules      []pathRule `json:"rules,omitempty"`
	Ports      []portRule `json:"ports,omitempty"`
}

// pathRule grants Access beneath Path (a path inside the sandbox).
type pathRule struct {
	Path   string `json:"path"`
	Access uint64 `json:"access"`
	// Anchor is the agent-writable tree Path lies in (anchorOf): the init
	// follows no symlink below it.
	Anchor string `json:"anchor,omitempty"`
}

// portRule grants Access (connect) to a TCP port.
type portRule struct {
	Port   uint64 `json:"port"`
	Access uint64 `json:"access"`
}

const (
	// fsReadOnly is what read_only paths get: read and execute.
	fsReadOnly = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	// fsFileOnly are the rights that apply to a non-directory; the kernel
	// rejects directory rights on a file rule.
	fsFileOnly = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	// landlockFullABI is the ABI at which every protection nemoclaw applies
	// is available (abstract UNIX socket and signal scoping came last).
	landlockFullABI = 6
)

// fsRightsForABI returns every filesystem right Landlock ABI abi handles.
func fsRightsForABI(abi int) uint64 {
	switch {
	case abi <= 0:
		return 0
	case abi == 1:
		return 1<<13 - 1
	case abi == 2:
		return 1<<14 - 1
	case abi <= 4:
		return 1<<15 - 1
	case abi <= 8:
		return 1<<16 - 1
	default:
		return 1<<17 - 1
	}
}

// devImplicit are nodes of the sandbox's own minimal /dev that every program
// needs; they are the sandbox's private tmpfs/devpts or harmless host nodes.
var devImplicit = []pathRule{
	{Path: "/dev/null", Access: ^uint64(0)},
	{Path: "/dev/zero", Access: ^uint64(0)},
	{Path: "/dev/full", Access: ^uint64(0)},
	{Path: "/dev/tty", Access: ^uint64(0)},
	{Path: "/dev/pts", Access: ^uint64(0)},
	{Path: "/dev/ptmx", Access: ^uint64(0)},
	{Path: "/dev/shm", Access: ^uint64(0)},
	{Path: "/dev/random", Access: fsReadOnly},
	{Path: "/dev/urandom", Access: fsReadOnly},
}

// planLandlock turns the policy's filesystem_policy and landlock sections
// into a ruleset for a kernel with Landlock ABI abi. It returns notes that
// say what best_effort dropped, and a refusal when hard_requirement cannot
// be met. files are paths bind-mounted read-only by the launcher; they are
// made readable.
func planLandlock(p *policy.Policy, abi int, nc NetworkConfig, files []string) (landlockPlan, []string, error) {
	hard := p.Landlock.HardRequired()
	restrictNet := p.Landlock != nil && p.Landlock.RestrictConnectToProxy
	need, needWhy := landlockFullABI, "abstract UNIX socket and signal scoping"
	if restrictNet && need < 4 {
		need, needWhy = 4, "TCP connect rules"
	}
	var notes []string
	if abi < need {
		if hard {
			return landlockPlan{}, nil, &StepError{
				Step:    "landlock: abi",
				Err:     fmt.Errorf("the kernel has Landlock ABI %d; landlock.compatibility: hard_requirement needs ABI %d for %s", abi, need, needWhy),
				Hint:    "run on a kernel with Landlock ABI >= " + fmt.Sprint(need) + " (Linux 6.12+), or set landlock.compatibility: best_effort to accept weaker confinement",
				Refused: true,
			}
		}
		switch {
		case abi <= 0:
			notes = append(notes, "landlock: unavailable in this kernel (best_effort): filesystem access is limited only by mounts and file permissions")
		default:
			if abi < 2 {
				notes = append(notes, "landlock: ABI 1 has no refer right (best_effort): every cross-directory rename and link is denied")
			}
			if abi < 3 {
				notes = append(notes, "landlock: truncate is not controlled before ABI 3 (best_effort): files outside read_write can be truncated if file permissions allow")
			}
			if abi < 5 {
				notes = append(notes, "landlock: ioctl on devices is not controlled before ABI 5 (best_effort)")
			}
			if abi < 6 {
				notes = append(notes, "landlock: abstract UNIX socket and signal scoping need ABI 6 (best_effort): dropped; the network and pid namespaces still isolate both")
			}
			if restrictNet && abi < 4 {
				notes = append(notes, "landlock: restrict_connect_to_proxy needs ABI 4 (best_effort): dropped; the empty network namespace still blocks direct egress")
			}
		}
	}
	if abi <= 0 {
		return landlockPlan{}, notes, nil
	}
	handled := fsRightsForABI(abi)
	plan := landlockPlan{ABI: abi, HandledFS: handled}
	if abi >= 6 {
		plan.Scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
	}
	if restrictNet && abi >= 4 {
		plan.HandledNet = unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		port := nc.ProxyPort
		if port == 0 {
			port = DefaultProxyPort
		}
		plan.Ports = append(plan.Ports, portRule{Port: uint64(port), Access: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP})
		if nc.DNS {
			plan.Ports = append(plan.Ports, portRule{Port: 53, Access: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP})
		}
		if nc.Inference {
			// inference.local's listeners; the netns has only lo, so
			// these ports reach nothing outside the sandbox.
			plan.Ports = append(plan.Ports,
				portRule{Port: 80, Access: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP},
				portRule{Port: 443, Access: unix.LANDLOCK_ACCESS_NET_CONNECT_TCP})
		}
	}
	rights := map[string]uint64{}
	add := func(p string, access uint64) {
		p = path.Clean(p)
		rights[p] |= access & handled
	}
	if fs := p.Filesystem; fs != nil {
		for _, r := range fs.ReadOnly {
			add(r, fsReadOnly)
		}
		for _, r := range fs.ReadWrite {
			add(r, handled)
		}
		if fs.IncludeWorkdir {
			add(Workdir, handled)
		}
	}
	for _, r := range devImplicit {
		add(r.Path, r.Access)
	}
	for _, f := range files {
		add(f, fsReadOnly)
	}
	paths := make([]string, 0, len(rights))
	for p := range rights {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	roots := writableRoots(p.Filesystem)
	for _, p := range paths {
		plan.Rules = append(plan.Rules, pathRule{Path: p, Access: rights[p], Anchor: anchorOf(roots, p)})
	}
	return plan, notes, nil
}

// writableRoots are the trees of the sandbox the agent may have written in
// before the init makes its rules, in an earlier run on the same host
// directory: the workspace (always: a kept or --workdir workspace outlives
// any one policy) and the policy's read_write host paths. A symlink the
// agent planted in one of them must not move a rule, bind or mask that
// names a path inside it. /tmp, /run and /dev are made afresh for each
// sandbox: nothing is planted there before the rules are made.
func writableRoots(fs *policy.FilesystemPolicy) []string {
	roots := []string{Workdir}
	if fs != nil {
		for _, r := range fs.ReadWrite {
			if r = path.Clean(r); r != "/" { // "/" is refused by policy validation
				if _, kind := mountOf(r); kind == mountHost {
					roots = append(roots, r)
				}
			}
		}
	}
	return roots
}

// anchorOf returns the outermost of roots that p lies strictly beneath, or
// "" for none. The init opens the anchor as the host (or the sandbox's own
// mounts) lay it out, and the rest of p below it with
// openat2(RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS): a symlink there
// fails the start (nsinit.c: open_policy_path).
func anchorOf(roots []string, p string) string {
	anchor := ""
	for _, r := range roots {
		if strings.HasPrefix(p, r+"/") && (anchor == "" || len(r) < len(anchor)) {
			anchor = r
		}
	}
	return anchor
}

// accessBind binds a path onto itself (or, FromHost, the host's own path
// onto it) to set what Landlock cannot: its mount's read-only flag.
type accessBind struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only"`
	// Pin binds Path onto itself with its flags as they are: a mount point
	// cannot be renamed or removed (EBUSY), which holds a read_only path's
	// parents in place.
	Pin bool `json:"pin,omitempty"`
	// FromHost binds the host's Path, with the host's mount flags (plus
	// nosuid, nodev), over the read-only bind of its host directory: a
	// read_write host path.
	FromHost bool `json:"from_host,omitempty"`
	// Hide mounts an empty read-only tmpfs over Path.
	Hide bool `json:"hide,omitempty"`
	// Anchor: see pathRule.
	Anchor string `json:"anchor,omitempty"`
}

// Kinds of opBindAccess; keep in step with nsinit.c's BIND_*.
const (
	bindFlags    = 0
	bindPin      = 1
	bindFromHost = 2
	bindHide     = 3
)

// kind is the bind's opBindAccess kind.
func (b accessBind) kind() int {
	switch {
	case b.Hide:
		return bindHide
	case b.FromHost:
		return bindFromHost
	case b.Pin:
		return bindPin
	}
	return bindFlags
}

// ownMounts are the sandbox's own writable mounts, each bound or mounted
// by compileMounts; every other path of the policy is either the host's
// (bound read-only, nosuid, nodev) or the kernel's (/proc, /dev).
var ownMounts = []string{Workdir, "/tmp", "/run", "/dev/shm"}

// Kinds of mount compileMounts leaves a path in.
const (
	mountOwn    = iota // writable: ownMounts
	mountHost          // the host's directory, bound read-only
	mountKernel        // /proc and the rest of /dev, which no bind touches
)

// mountOf returns the root of the mount compileMounts leaves p in, and its kind.
func mountOf(p string) (string, int) {
	for _, m := range ownMounts {
		if p == m || strings.HasPrefix(p, m+"/") {
			return m, mountOwn
		}
	}
	top, _, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if top == "proc" || top == "dev" || top == "" {
		return "", mountKernel
	}
	return "/" + top, mountHost
}

// accessBinds is what filesystem_policy asks for that Landlock cannot
// express, in the order the init makes them (parents first).
//
//   - Landlock's rights add up along a path, so a read_only path inside a
//     read_write one (NemoClaw's /sandbox/.openclaw in /sandbox) would be
//     writable: its agent could rewrite the configuration meant to confine
//     it (NVIDIA/NemoClaw#514, #3387). And Landlock does not check chmod,
//     chown, utimes or setxattr at all. A read_only path on a writable
//     mount is therefore bound read-only onto itself.
//   - Each of its parents up to that mount's root is pinned (bound onto
//     itself): otherwise the agent renames a parent away and builds its
//     own tree in its place (mv cfg cfg.orig; mkdir -p cfg/gateway).
//   - The host's directories are bound read-only (compileMounts), so a
//     read_write host path is bound again from the host, writable; a
//     read_write path inside a read_only bind, read-write again.
//
// Both lists are sandbox paths.
func accessBinds(fs *policy.FilesystemPolicy) []accessBind {
	if fs == nil {
		return nil
	}
	rw := map[string]bool{}
	for _, r := range fs.ReadOnly {
		rw[path.Clean(r)] = false
	}
	for _, r := range fs.ReadWrite {
		rw[path.Clean(r)] = true
	}
	if fs.IncludeWorkdir {
		rw[Workdir] = true
	}
	if _, ok := rw[Workdir]; !ok {
		// In no rule, the workspace is still the host's directory whose
		// metadata a rootless agent could change: read-only, like the
		// host's other directories.
		rw[Workdir] = false
	}
	paths := make([]string, 0, len(rw))
	for p := range rw {
		paths = append(paths, p)
	}
	sort.Strings(paths) // a parent sorts before its children
	roots := writableRoots(fs)
	var binds []accessBind
	add := func(b accessBind) {
		b.Anchor = anchorOf(roots, b.Path)
		binds = append(binds, b)
	}
	// mountRO holds the read-only state each bound path leaves its
	// subtree in; pinned, the parents already held.
	mountRO, pinned := map[string]bool{}, map[string]bool{}
	for _, p := range paths {
		root, kind := mountOf(p)
		if kind == mountKernel {
			continue
		}
		ro := kind == mountHost
		// The nearest bound ancestor decides (the mount's root too, a
		// read_write host directory), else the mount p lies in.
		for a := path.Dir(p); len(a) >= len(root); a = path.Dir(a) {
			if v, ok := mountRO[a]; ok {
				ro, root = v, a
				break
			}
		}
		switch {
		case !rw[p] && !ro:
			for _, a := range parentsBelow(p, root) {
				if !pinned[a] {
					pinned[a] = true
					add(accessBind{Path: a, Pin: true})
				}
			}
			add(accessBind{Path: p, ReadOnly: true})
			mountRO[p] = true
		case rw[p] && ro:
			add(accessBind{Path: p, FromHost: kind == mountHost})
			mountRO[p] = false
		}
	}
	return binds
}

// parentsBelow returns p's ancestors that lie strictly beneath root (one
// of them), outermost first: the directories to pin so that p stays put.
func parentsBelow(p, root string) []string {
	var chain []string
	for a := path.Dir(p); len(a) > len(root); a = path.Dir(a) {
		chain = append(chain, a)
	}
	slices.Reverse(chain)
	return chain
}
