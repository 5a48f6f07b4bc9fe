package supervisor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/policy"
)

// TestRun: Run returns the agent's exit code, calls Prepare before the
// start and its undo after the end, OnRunning once the record is written;
// a refused policy, a failed Prepare and a command that cannot start come
// back as their errors, and a run that kept nothing leaves nothing.
func TestRun(t *testing.T) {
	needKernel(t)
	badPolicy := testPolicy()
	badPolicy.NetworkPolicies = map[string]*policy.NetworkPolicy{"x": {Endpoints: []*policy.Endpoint{{Host: ""}}}}
	errPrepare := errors.New("no terminal")
	for _, tc := range []struct {
		name       string
		cfg        Config
		prepareErr error
		wantCode   int
		wantErr    func(error) bool
		running    bool // OnRunning is called
		keptDir    bool
	}{
		{name: "exit code", cfg: Config{Command: []string{"/bin/sh", "-c", "exit 7"}, KeepWorkspace: true}, wantCode: 7, running: true, keptDir: true},
		{name: "quick run leaves nothing", cfg: Config{Command: []string{"/bin/true"}}, running: true},
		{name: "refused policy", cfg: Config{Command: []string{"/bin/true"}, Policy: badPolicy}, wantErr: func(err error) bool {
			var re *RefusedError
			return errors.As(err, &re)
		}},
		{name: "prepare fails", cfg: Config{Command: []string{"/bin/true"}}, prepareErr: errPrepare, wantErr: func(err error) bool { return errors.Is(err, errPrepare) }},
		{name: "command not found", cfg: Config{Command: []string{"/no/such/agent"}}, wantErr: func(err error) bool {
			var se *StartError
			return errors.As(err, &se)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Name, cfg.Home = "run-test", t.TempDir()
			if cfg.Policy == nil {
				cfg.Policy = testPolicy()
			}
			var prepared, undone, running bool
			code, err := Run(context.Background(), RunConfig{
				Config: cfg,
				Prepare: func(s *Supervisor) (func(), error) {
					prepared = true
					if _, err := os.Stat(s.Dir()); err != nil {
						t.Errorf("Prepare before the directory exists: %v", err)
					}
					return func() { undone = true }, tc.prepareErr
				},
				OnRunning: func() { running = true },
			})
			if tc.wantErr != nil {
				if err == nil || !tc.wantErr(err) {
					t.Fatalf("Run: %d, %v", code, err)
				}
			} else if err != nil || code != tc.wantCode {
				t.Fatalf("Run: %d, %v; want %d", code, err, tc.wantCode)
			}
			if running != tc.running {
				t.Errorf("OnRunning called: %v, want %v", running, tc.running)
			}
			if prepared && tc.prepareErr == nil && !undone {
				t.Error("Prepare's undo did not run")
			}
			_, statErr := os.Stat(filepath.Join(cfg.Home, "sandboxes", cfg.Name))
			if kept := statErr == nil; kept != tc.keptDir {
				t.Errorf("sandbox directory kept: %v, want %v", kept, tc.keptDir)
			}
		})
	}
}
