package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/internal/testutil"
	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// earlyHelperEnv makes TestMain run an earlyScenario instead of the tests:
// in a copy of this test binary whose command line holds "sandbox run", so
// that nsinit.c's constructor pre-spawns an init and Start takes the early
// path (the mounts handed over before the rest is planned).
const earlyHelperEnv = "NEMOCLAW_TEST_EARLY_SCENARIO"

// TestPrespawnedStart checks the early hand-over end to end: a sandbox
// started on the pre-spawned init runs; and a plan that fails after the
// init already has its mounts kills and reaps that init and reports the
// step, leaving no process behind.
func TestPrespawnedStart(t *testing.T) {
	needKernel(t)
	for _, scenario := range []string{"runs", "plan fails after the hand-over", "exec joins"} {
		t.Run(scenario, func(t *testing.T) {
			// "sandbox run" on the command line is what makes the
			// constructor pre-spawn (TestMain runs the scenario).
			cmd := exec.Command(os.Args[0], "sandbox", "run")
			cmd.Env = append(os.Environ(), earlyHelperEnv+"="+scenario)
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("helper: %v\n%s", err, out)
			}
		})
	}
}

// earlyScenario runs one of TestPrespawnedStart's scenarios in the helper
// process (from TestMain); "ok" on stdout means it held.
func earlyScenario(scenario string) error {
	// Locked: the init is reaped, and logged, in the background.
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer devnull.Close()
	home, err := os.MkdirTemp("", "nemoclaw-early-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	cfg := Config{Policy: testPolicy(), Home: home, Logger: log, Command: []string{"true"},
		Stdin: devnull, Stdout: devnull, Stderr: devnull} // files: the pre-spawned init takes them
	switch scenario {
	case "runs":
		sb, err := Start(context.Background(), cfg)
		if err != nil {
			return err
		}
		defer sb.Close()
		if code, err := sb.Wait(); code != 0 || err != nil {
			return fmt.Errorf("exit %d %v", code, err)
		}
		if !strings.Contains(logs.String(), "init=pre-spawned") {
			return fmt.Errorf("the run did not use the pre-spawned init:\n%s", logs.String())
		}
	case "plan fails after the hand-over":
		// Landlock is planned after the mounts are handed over: a
		// hard requirement the kernel cannot meet fails there.
		kernelLandlockABI = func() int { return 1 }
		defer func() { kernelLandlockABI = landlockABI }()
		cfg.Policy.Landlock = &policy.LandlockPolicy{Compatibility: policy.HardRequirement}
		_, err := Start(context.Background(), cfg)
		var se *StepError
		if !errors.As(err, &se) || !strings.HasPrefix(se.Step, "landlock") {
			return fmt.Errorf("want a landlock step error, got %v", err)
		}
		// The pre-spawned init was used (then killed and reaped): no
		// child of this process is left, not even a zombie.
		if kids, err := children(); err != nil || len(kids) != 0 {
			return fmt.Errorf("children left behind: %v (%v)", kids, err)
		}
		if sock, proc, ok := takePrespawned(os.Geteuid() != 0); ok {
			proc.abandon(sock)
			return errors.New("the pre-spawned init was still there: the early path was not exercised")
		}
	case "exec joins":
		// The CLI's init is the pre-spawned one: Exec works on it too.
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		defer r.Close()
		cfg.Command, cfg.Stdin = []string{"cat"}, r // until w closes
		sb, err := Start(context.Background(), cfg)
		if err != nil {
			return err
		}
		defer sb.Close()
		var out strings.Builder
		p, err := sb.Exec(context.Background(), ExecConfig{Command: []string{"sh", "-c", "echo joined; exit 4"}, Stdout: &out})
		if err != nil {
			return err
		}
		if code, err := p.Wait(); code != 4 || err != nil || out.String() != "joined\n" {
			return fmt.Errorf("joined process: exit %d (%v), output %q", code, err, out.String())
		}
		w.Close()
		if code, err := sb.Wait(); code != 0 || err != nil {
			return fmt.Errorf("exit %d %v", code, err)
		}
		if !strings.Contains(logs.String(), "init=pre-spawned") {
			return fmt.Errorf("the run did not use the pre-spawned init:\n%s", logs.String())
		}
	default:
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	fmt.Println("ok")
	return nil
}

// children lists this process's child pids (from /proc/self/task/*/children).
func children() ([]string, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var kids []string
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		if err != nil {
			return nil, err
		}
		kids = append(kids, strings.Fields(string(b))...)
	}
	return kids, nil
}
