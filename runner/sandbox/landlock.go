package sandbox

import (
	"fmt"
	"path"
	"sort"

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
	for _, p := range paths {
		plan.Rules = append(plan.Rules, pathRule{Path: p, Access: rights[p]})
	}
	return plan, notes, nil
}

// accessBind re-binds a path onto itself to set its mount's read-only
// flag: the access a Landlock rule cannot give.
type accessBind struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"read_only"`
}

// accessBinds is what filesystem_policy asks for that Landlock cannot
// express. Landlock's rights add up along a path, so a read_only path
// inside a read_write one (NemoClaw's /sandbox/.openclaw in /sandbox) would
// be writable: its agent could rewrite the configuration meant to confine
// it (NVIDIA/NemoClaw#514, #3387). Such a path is bound read-only onto
// itself instead, and a read_write path inside one of those read-write
// again. Parents come before children; both lists are sandbox paths.
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
	paths := make([]string, 0, len(rw))
	for p := range rw {
		paths = append(paths, p)
	}
	sort.Strings(paths) // a parent sorts before its children
	var binds []accessBind
	// mountRO holds the read-only state each bound path leaves its
	// subtree in.
	mountRO := map[string]bool{}
	for _, p := range paths {
		// ro: the nearest bound ancestor's state (mounts start writable);
		// writable: Landlock grants write here through an ancestor.
		ro, bound, writable := false, false, false
		for a := path.Dir(p); ; a = path.Dir(a) {
			if v, ok := mountRO[a]; ok && !bound {
				ro, bound = v, true
			}
			writable = writable || rw[a]
			if a == "/" {
				break
			}
		}
		switch {
		case !rw[p] && writable && !ro:
			binds = append(binds, accessBind{Path: p, ReadOnly: true})
			mountRO[p] = true
		case rw[p] && ro:
			binds = append(binds, accessBind{Path: p})
			mountRO[p] = false
		}
	}
	return binds
}
