// Command join times Sandbox.Exec of /bin/true into a running sandbox next
// to bubblewrap's cold start and `nemoclaw sandbox run -- /bin/true`, in
// interleaved rounds of one run (this VM's speed drifts). Exec is timed in
// this process, from the call to Wait's return: it is what a supervisor
// holding the sandbox pays per command. With -nemoclaw, `nemoclaw sandbox
// exec NAME -- /bin/true` into a detached sandbox is timed too: what a
// user or an agent's tool runner pays, the CLI's own start and the
// control-socket round trip included.
//
// With -floor too, bench/join/floor (a client linking only the standard
// library that sends the same exec request) is timed beside it: the
// lower bound of any separate client process.
//
//	join [-runs 200] [-rounds 10] [-nemoclaw PATH [-floor PATH]]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/sandbox"
)

func main() {
	sandbox.MaybeInit()
	runs := flag.Int("runs", 200, "runs of each command, over all rounds")
	rounds := flag.Int("rounds", 10, "interleaved rounds")
	nemoclaw := flag.String("nemoclaw", "", "a nemoclaw binary to time `sandbox run -- /bin/true` with")
	floor := flag.String("floor", "", "bench/join/floor's binary, timed beside `nemoclaw sandbox exec`")
	flag.Parse()
	if err := run(*runs, *rounds, *nemoclaw, *floor); err != nil {
		fmt.Fprintln(os.Stderr, "bench/join:", err)
		os.Exit(1)
	}
}

func run(runs, rounds int, nemoclaw, floor string) error {
	home, err := os.MkdirTemp("", "nemoclaw-bench-join-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	pol, err := blueprint.DefaultPolicy()
	if err != nil {
		return err
	}
	sb, err := sandbox.Start(context.Background(), sandbox.Config{Policy: pol, Home: home, Command: []string{"sleep", "3600"}})
	if err != nil {
		return err
	}
	defer sb.Close()
	execTrue := func() error {
		p, err := sb.Exec(context.Background(), sandbox.ExecConfig{Command: []string{"/bin/true"}})
		if err != nil {
			return err
		}
		if code, err := p.Wait(); code != 0 || err != nil {
			return fmt.Errorf("exec /bin/true: exit %d (%v)", code, err)
		}
		return nil
	}
	command := func(argv ...string) func() error {
		return func() error {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = []string{"NEMOCLAW_HOME=" + home, "PATH=/usr/bin:/bin"}
			return cmd.Run()
		}
	}
	cases := []struct {
		name string
		f    func() error
	}{
		{"exec (library)", execTrue},
		{"bwrap", command("bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "/bin/true")},
	}
	if nemoclaw != "" {
		cases = append(cases, struct {
			name string
			f    func() error
		}{"nemoclaw run", command(nemoclaw, "sandbox", "run", "--no-tty", "--", "/bin/true")})
		if err := command(nemoclaw, "sandbox", "run", "--detach", "--name", "bench", "--", "sleep", "3600")(); err != nil {
			return fmt.Errorf("nemoclaw sandbox run --detach: %w", err)
		}
		defer func() { _ = command(nemoclaw, "sandbox", "destroy", "--force", "bench")() }()
		cases = append(cases, struct {
			name string
			f    func() error
		}{"exec (CLI)", command(nemoclaw, "sandbox", "exec", "bench", "--", "/bin/true")})
		if floor != "" {
			cases = append(cases, struct {
				name string
				f    func() error
			}{"exec (floor)", command(floor, filepath.Join(home, "sandboxes", "bench", "control.sock"), "/bin/true")})
		}
	}
	times := make([][]time.Duration, len(cases))
	per := (runs + rounds - 1) / rounds
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			if r == 0 { // warm-up
				for k := 0; k < 5; k++ {
					if err := c.f(); err != nil {
						return fmt.Errorf("%s: %w", c.name, err)
					}
				}
			}
			for k := 0; k < per; k++ {
				t0 := time.Now()
				if err := c.f(); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
				times[i] = append(times[i], time.Since(t0))
			}
		}
	}
	med := make([]float64, len(cases))
	fmt.Printf("/bin/true: median of %d runs in %d interleaved rounds, same run\n", per*rounds, rounds)
	fmt.Printf("%-16s %10s %10s\n", "", "median ms", "p90 ms")
	for i, c := range cases {
		d := times[i]
		sort.Slice(d, func(a, b int) bool { return d[a] < d[b] })
		med[i] = float64(d[len(d)/2].Microseconds()) / 1000
		fmt.Printf("%-16s %10.3f %10.3f\n", c.name, med[i], float64(d[len(d)*9/10].Microseconds())/1000)
	}
	fmt.Printf("\nexec / bwrap = %.2fx  (goal <= 0.50x)\n", med[0]/med[1])
	if len(cases) > 2 {
		fmt.Printf("exec / nemoclaw sandbox run = %.2fx\n", med[0]/med[2])
		fmt.Printf("exec (CLI) / bwrap = %.2fx  (goal <= 0.50x)\n", med[3]/med[1])
	}
	if len(cases) > 4 {
		fmt.Printf("exec (floor) / bwrap = %.2fx; exec (CLI) / exec (floor) = %.2fx\n", med[4]/med[1], med[3]/med[4])
	}
	return nil
}
