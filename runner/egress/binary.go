package egress

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
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

// peerScanBudget bounds the descriptors one lookup examines. A sandbox
// can hold hundreds of thousands of descriptors (a full scan cost a second
// of supervisor CPU per lookup); past the budget the lookup fails, and
// binary-scoped endpoints then refuse (unknown binary).
const peerScanBudget = 16384

// maxSocketLines bounds the lines of /proc/PID/net/tcp one lookup reads.
const maxSocketLines = 1 << 17

// maxPeerProcs bounds the processes one lookup considers.
const maxPeerProcs = 4096

// peerScan is one lookup's budget and what it spent.
type peerScan struct {
	budget   int
	examined int
}

// lookupPeer finds the process owning the TCP socket whose local address is
// client (the agent's side of the connection to the proxy). nsPid is a
// process in the sandbox's network and pid namespaces (0: this process).
func lookupPeer(nsPid int, client netip.AddrPort) (*peerInfo, error) {
	return (&peerScan{budget: peerScanBudget}).lookup(nsPid, client)
}

// lookup scans the candidate processes' descriptor tables, those with the
// fewest descriptors first: the programs that open connections hold tens of
// descriptors, and a process hoarding descriptors is reached last, within
// the budget.
func (sc *peerScan) lookup(nsPid int, client netip.AddrPort) (*peerInfo, error) {
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
	type cand struct{ pid, fds int }
	var cands []cand
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if len(cands) == maxPeerProcs {
			break
		}
		pdir := "/proc/" + d.Name()
		if nsLink != "" {
			if l, _ := os.Readlink(pdir + "/ns/pid"); l != nsLink {
				continue
			}
		}
		cands = append(cands, cand{pid, fdCount(pdir)})
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.fds - b.fds })
	for _, c := range cands {
		found, err := sc.scanFDs("/proc/"+strconv.Itoa(c.pid)+"/fd", want)
		if found {
			return describePid(c.pid, nsLink), nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("peer lookup: no process owns socket inode %s", inode)
}

// scanFDs reports whether a descriptor in dir is want, spending the budget.
func (sc *peerScan) scanFDs(dir, want string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, nil // gone, or not ours to read
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if sc.examined >= sc.budget {
				return false, fmt.Errorf("peer lookup: gave up after %d descriptors (a process in the sandbox holds more); binary-scoped endpoints refuse this connection", sc.examined)
			}
			sc.examined++
			if l, _ := os.Readlink(dir + "/" + n); l == want {
				return true, nil
			}
		}
		if err != nil {
			return false, nil
		}
	}
}

// fdCount is how many descriptors a process holds: since Linux 6.2 the
// size of /proc/PID/fd, counted by the kernel without listing them; on
// older kernels (size 0) the FDSize line of its status (the table's size,
// inherited across fork, so a weaker order).
func fdCount(pdir string) int {
	if fi, err := os.Stat(pdir + "/fd"); err == nil && fi.Size() > 0 {
		return int(fi.Size())
	}
	b, err := os.ReadFile(pdir + "/status")
	if err != nil {
		return math.MaxInt32
	}
	i := bytes.Index(b, []byte("\nFDSize:"))
	if i < 0 {
		return math.MaxInt32
	}
	rest := b[i+len("\nFDSize:"):]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(rest)))
	if err != nil {
		return math.MaxInt32
	}
	return n
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
	key := []byte(" " + want + " ")
	for n := 0; sc.Scan(); n++ {
		if n > maxSocketLines {
			return "", fmt.Errorf("peer lookup: gave up after %d sockets in %s (the sandbox holds more)", maxSocketLines, file)
		}
		if !bytes.Contains(sc.Bytes(), key) {
			continue
		}
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
