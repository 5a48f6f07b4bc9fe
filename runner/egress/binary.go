package egress

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// peerInfo is the program on the other end of a client connection: the
// executable of the process that owns the socket and those of its ancestors.
// It is advisory: an interpreter or a shared socket defeats it, so binary
// scoping is never the only control.
type peerInfo struct {
	pid   int
	exe   string
	chain []string // exe first, then ancestors' executables
}

// lookupPeer finds the process owning the TCP socket whose local address is
// client (the agent's side of the connection to the proxy). nsPid is a
// process in the sandbox's network and pid namespaces (0: this process).
func lookupPeer(nsPid int, client netip.AddrPort) (*peerInfo, error) {
	base := "/proc/self"
	if nsPid > 0 {
		base = "/proc/" + strconv.Itoa(nsPid)
	}
	inode, err := socketInode(base, client)
	if err != nil {
		return nil, err
	}
	var nsLink string
	if nsPid > 0 {
		nsLink, _ = os.Readlink(base + "/ns/pid")
	}
	want := "socket:[" + inode + "]"
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("peer lookup: %w", err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		pdir := "/proc/" + d.Name()
		if nsLink != "" {
			if l, _ := os.Readlink(pdir + "/ns/pid"); l != nsLink {
				continue
			}
		}
		fds, err := os.ReadDir(pdir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, _ := os.Readlink(pdir + "/fd/" + fd.Name()); l == want {
				return describePid(pid, nsLink), nil
			}
		}
	}
	return nil, fmt.Errorf("peer lookup: no process owns socket inode %s", inode)
}

// describePid reads the executable of pid and its ancestors inside the
// same pid namespace.
func describePid(pid int, nsLink string) *peerInfo {
	pi := &peerInfo{pid: pid}
	for p, n := pid, 0; p > 0 && n < 32; n++ {
		dir := "/proc/" + strconv.Itoa(p)
		if nsLink != "" {
			if l, _ := os.Readlink(dir + "/ns/pid"); l != nsLink {
				break
			}
		}
		if exe, err := os.Readlink(dir + "/exe"); err == nil {
			exe = strings.TrimSuffix(exe, " (deleted)")
			pi.chain = append(pi.chain, exe)
		}
		p = parentPid(dir)
	}
	if len(pi.chain) > 0 {
		pi.exe = pi.chain[0]
	}
	return pi
}

func parentPid(dir string) int {
	b, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// socketInode finds the inode of the TCP socket bound to addr in the
// network namespace of base (/proc/<pid>).
func socketInode(base string, addr netip.AddrPort) (string, error) {
	file, want := base+"/net/tcp", procHex(addr)
	if addr.Addr().Is6() {
		file = base + "/net/tcp6"
	}
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("peer lookup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// TIME_WAIT leftovers of an earlier connection on the same port
		// have inode 0.
		if len(fs) > 9 && fs[1] == want && fs[9] != "0" {
			return fs[9], nil
		}
	}
	return "", fmt.Errorf("peer lookup: socket %s not found in %s", addr, file)
}

// procHex renders addr as /proc/net/tcp does: each 32-bit word of the
// address in host (little-endian) order, then the port in hex.
func procHex(ap netip.AddrPort) string {
	a := ap.Addr()
	var b []byte
	if a.Is4() {
		x := a.As4()
		b = x[:]
	} else {
		x := a.As16()
		b = x[:]
	}
	out := make([]byte, len(b))
	for i := 0; i < len(b); i += 4 {
		out[i], out[i+1], out[i+2], out[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return strings.ToUpper(hex.EncodeToString(out)) + ":" + fmt.Sprintf("%04X", ap.Port())
}
