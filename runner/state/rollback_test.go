package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pinOf is a lock pin of repository ref at version v, in lock.
func pinOf(lock, v, hexDigit string) *Pin {
	return &Pin{LockFile: lock, LockEntry: LockEntry{
		Ref: "registry.example/team/bp", Constraint: "~> 0.1", Tag: v, Version: v,
		Digest: "sha256:" + strings.Repeat(hexDigit, 64), Signer: "key sha256:" + hexDigit,
	}}
}

// ranRun creates a run of sandbox sb that ran its agent, with a kept
// launch config holding launch, and pin.
func ranRun(t *testing.T, s *Runs, sb, launch string, pin *Pin) *Run {
	t.Helper()
	r := &Run{Kind: "apply", Sandbox: sb, Blueprint: "registry.example/team/bp", Outcome: OutcomeStarting, Pin: pin}
	if pin != nil {
		r.Version = pin.Version
	}
	if err := s.Create(r); err != nil {
		t.Fatal(err)
	}
	if launch != "" {
		if err := os.WriteFile(filepath.Join(s.Dir, r.ID, LaunchFile), []byte(launch), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.End(r.ID, 143, ""); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRollback: a rollback writes back the previous run's pin and launch
// config and starts the sandbox as a new run; refusals change nothing; a
// failure after the first change undoes the lock, the launch config and
// the new run's place as the sandbox's latest, so that it can be retried.
func TestRollback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, s *Runs, lock string) (undo *Run) // returns the run to roll back
		stopErr  error
		startErr error
		// want: "" for success, else a part of the error; refused: a
		// *RefusedError before any change.
		want    string
		refused bool
	}{
		{name: "pin and launch restored", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
			return ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
		}},
		{name: "not the latest", refused: true, want: "came after it", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
			r := ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
			ranRun(t, s, "sb", "launch-v3", nil)
			return r
		}},
		{name: "first run", refused: true, want: "nothing to go back to", setup: func(t *testing.T, s *Runs, lock string) *Run {
			return ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
		}},
		{name: "no launch kept", refused: true, want: "kept no launch config", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "", pinOf(lock, "0.1.0", "a"))
			return ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
		}},
		{name: "stop fails", stopErr: errors.New("supervisor hangs"), want: "supervisor hangs", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
			return ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
		}},
		{name: "start fails", startErr: errors.New("agent exec failed"), want: "agent exec failed", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
			return ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
		}},
		{name: "lock unreadable", want: "lock", setup: func(t *testing.T, s *Runs, lock string) *Run {
			ranRun(t, s, "sb", "launch-v1", pinOf(lock, "0.1.0", "a"))
			r := ranRun(t, s, "sb", "launch-v2", pinOf(lock, "0.2.0", "b"))
			if err := os.WriteFile(lock, []byte("version: 7\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testRuns(t, false)
			dir := t.TempDir()
			lock := filepath.Join(dir, DefaultLockFile)
			launch := filepath.Join(dir, "sandboxes", "sb", LaunchFile)
			undo := tc.setup(t, s, lock)
			// The state the v2 apply left: the lock pins 0.2.0, the
			// sandbox's launch config is v2's.
			if _, err := os.Stat(lock); err != nil {
				l := &Lock{}
				l.Set(pinOf(lock, "0.2.0", "b").LockEntry)
				if err := l.Write(lock); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Dir(launch), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(launch, []byte("launch-v2"), 0o600); err != nil {
				t.Fatal(err)
			}
			lockBefore, _ := os.ReadFile(lock)
			latestBefore, _ := s.Latest("sb")
			var stopped, started []string
			rec, err := Rollback(context.Background(), RollbackConfig{
				Runs: s, ID: undo.ID, Pid: 4242,
				LaunchPath: func(name string) string { return filepath.Join(dir, "sandboxes", name, LaunchFile) },
				Stop: func(_ context.Context, name string) error {
					stopped = append(stopped, name)
					return tc.stopErr
				},
				Start: func(_ context.Context, name, runID string) error {
					started = append(started, name+" "+runID)
					if b, _ := os.ReadFile(launch); string(b) != "launch-v1" {
						t.Errorf("started with launch config %q, want v1's", b)
					}
					return tc.startErr
				},
			})
			lockAfter, _ := os.ReadFile(lock)
			launchAfter, _ := os.ReadFile(launch)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				l, err := ReadLock(lock, nil)
				if err != nil {
					t.Fatal(err)
				}
				if e := l.Find("registry.example/team/bp"); e == nil || e.Version != "0.1.0" || *e != pinOf(lock, "0.1.0", "a").LockEntry {
					t.Fatalf("lock after rollback pins %+v, want 0.1.0\n%s", e, lockAfter)
				}
				if string(launchAfter) != "launch-v1" || len(started) != 1 || started[0] != "sb "+rec.ID {
					t.Fatalf("launch %q, started %v", launchAfter, started)
				}
				if got, _ := s.Latest("sb"); got.ID != rec.ID || got.Kind != "rollback" || got.RollbackOf != undo.ID || got.Pin == nil || got.Pin.Version != "0.1.0" {
					t.Fatalf("latest after rollback: %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			var re *RefusedError
			if tc.refused != errors.As(err, &re) {
				t.Fatalf("refused: %v, want %v (%v)", !tc.refused, tc.refused, err)
			}
			if tc.refused && (len(stopped) != 0 || len(started) != 0) {
				t.Fatalf("a refusal stopped %v and started %v", stopped, started)
			}
			if string(lockAfter) != string(lockBefore) || string(launchAfter) != "launch-v2" {
				t.Fatalf("a failed rollback changed the lock or launch config:\nlock before:\n%s\nafter:\n%s\nlaunch: %q", lockBefore, lockAfter, launchAfter)
			}
			latest, _ := s.Latest("sb")
			if latest.ID != latestBefore.ID {
				t.Fatalf("latest run after a failed rollback: %s, want %s", latest.ID, latestBefore.ID)
			}
			if tc.startErr != nil {
				// The rollback's record says why; a retry is allowed.
				list, _ := s.List()
				if list[0].Kind != "rollback" || list[0].Outcome != OutcomeFailed || !strings.Contains(list[0].Reason, "agent exec failed") {
					t.Fatalf("record of the failed rollback: %+v", list[0])
				}
				for _, r := range list {
					if r.SupersededBy == list[0].ID {
						t.Fatalf("run %s superseded by a failed rollback", r.ID)
					}
				}
			}
		})
	}
}

// TestTrack: Track claims a record made by another process, marks it
// running with a copy of the launch config, ends it with the agent's code
// or the failure, and names a live run that holds the sandbox.
func TestTrack(t *testing.T) {
	boom := errors.New("sandbox: boom")
	for _, tc := range []struct {
		name      string
		liveOther bool
		running   bool
		runErr    error
		code      int
		want      string // Describe of the ended record
		inUse     bool
	}{
		{name: "exited", running: true, code: 7, want: "exited 7"},
		{name: "failed before running", runErr: boom, code: 1, want: "failed: sandbox: boom"},
		{name: "name held by a live run", liveOther: true, runErr: boom, code: 1, inUse: true, want: "failed: sandbox: boom\n  apply: sandbox \"sb\" is in use by run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testRuns(t, false)
			if tc.liveOther {
				other := &Run{Kind: "apply", Sandbox: "sb", Outcome: OutcomeRunning, Pid: 99}
				if err := s.Create(other); err != nil {
					t.Fatal(err)
				}
				s.Alive = func(pid int, _ uint64) bool { return pid == 99 }
			}
			r := &Run{Kind: "rollback", Sandbox: "sb", Outcome: OutcomeStarting, Pid: 1}
			if err := s.Create(r); err != nil {
				t.Fatal(err)
			}
			launch := filepath.Join(t.TempDir(), "launch.json")
			if err := os.WriteFile(launch, []byte(`{"v":1}`), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Track(context.Background(), TrackConfig{
				Runs: s, ID: r.ID, Sandbox: "sb", Pid: 2, PidStart: 5, Detached: true, LaunchPath: launch,
				Outcome: func(err error) (int, string) {
					if err != nil {
						return tc.code, err.Error()
					}
					return tc.code, ""
				},
			}, func(_ context.Context, onRunning func()) error {
				if got, _ := s.Get(r.ID); got.Pid != 2 || got.PidStart != 5 || !got.Detached {
					t.Errorf("record not claimed: %+v", got)
				}
				if tc.running {
					onRunning()
					if got, _ := s.Get(r.ID); got.Outcome != OutcomeRunning {
						t.Errorf("outcome %q after onRunning", got.Outcome)
					}
				}
				return tc.runErr
			})
			var iu *InUseError
			if errors.As(err, &iu) != tc.inUse || (tc.runErr != nil && !errors.Is(err, tc.runErr)) {
				t.Fatalf("err %v (in use %v)", err, tc.inUse)
			}
			got, _ := s.Get(r.ID)
			if d := s.Describe(got); !strings.HasPrefix(d, tc.want) {
				t.Fatalf("Describe = %q, want prefix %q", d, tc.want)
			}
			_, kept := os.Stat(filepath.Join(s.Dir, r.ID, LaunchFile))
			if (kept == nil) != tc.running {
				t.Fatalf("launch config kept: %v, want %v", kept == nil, tc.running)
			}
		})
	}
}
