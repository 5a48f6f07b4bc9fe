package egress

import (
	"bufio"
	"fmt"
	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// TestPeerLookupBounded: with a process holding tens of thousands of
// descriptors, finding the program behind a connection examines at most the
// budget, and still finds a small process (the one that connected). The
// scan in /proc order read every descriptor of the hoarding process first.
// Not parallel: it holds many descriptors of this process.
func TestPeerLookupBounded(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// More descriptors than the budget, so that a scan in /proc order
	// (this process comes before its child) spends it all here.
	hoard := min(int(rl.Max)-1024, 30000)
	if hoard <= peerScanBudget {
		testutil.SkipOrFail(t, fmt.Sprintf("the RLIMIT_NOFILE hard limit %d leaves no room for more than %d descriptors", rl.Max, peerScanBudget))
	}
	old := rl
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// This process hoards descriptors, as an agent can.
	var hoarded []*os.File
	t.Cleanup(func() {
		for _, f := range hoarded {
			f.Close()
		}
	})
	for range hoard {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		hoarded = append(hoarded, f)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestPeerLookupHelper$")
	child.Env = append(os.Environ(), "EGRESS_PEER_HELPER="+l.Addr().String())
	stdin, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := netip.MustParseAddrPort(c.RemoteAddr().String())
	if want := strings.TrimSpace(line); want != strings.Split(c.RemoteAddr().String(), ":")[1] {
		t.Fatalf("accepted %s, child reports port %s", c.RemoteAddr(), want)
	}

	sc := &peerScan{budget: peerScanBudget}
	pi, err := sc.lookup(0, client)
	if err != nil {
		t.Fatalf("lookup: %v (examined %d descriptors)", err, sc.examined)
	}
	if pi.pid != child.Process.Pid {
		t.Fatalf("found pid %d (%s), want the child %d", pi.pid, pi.exe, child.Process.Pid)
	}
	if sc.examined > peerScanBudget {
		t.Fatalf("examined %d descriptors, budget %d", sc.examined, peerScanBudget)
	}

	// The hoarding process itself is not found past the budget: the lookup
	// gives up (binary scoping then refuses) instead of reading them all.
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	sc = &peerScan{budget: 1000}
	if pi, err := sc.lookup(0, netip.MustParseAddrPort(c2.LocalAddr().String())); err == nil && pi.pid == os.Getpid() {
		t.Fatalf("found this process after %d descriptors with a budget of 1000", sc.examined)
	}
	if sc.examined > 1000 {
		t.Fatalf("examined %d descriptors, budget 1000", sc.examined)
	}
}

// TestPeerLookupHelper is the child of TestPeerLookupBounded: it connects,
// prints its port and waits for its stdin to close.
func TestPeerLookupHelper(t *testing.T) {
	addr := os.Getenv("EGRESS_PEER_HELPER")
	if addr == "" {
		return
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		os.Exit(1)
	}
	fmt.Println(strings.Split(c.LocalAddr().String(), ":")[1])
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
