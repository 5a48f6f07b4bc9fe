package state

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func testRuns(t *testing.T, alive bool) *Runs {
	t.Helper()
	clock := time.Date(2026, 12, 7, 1, 48, 0, 0, time.UTC)
	var mu sync.Mutex
	return &Runs{
		Dir: filepath.Join(t.TempDir(), "runs"),
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			clock = clock.Add(time.Millisecond)
			return clock
		},
		Alive: func(int, uint64) bool { return alive },
	}
}

// TestRunsLifecycle: ids are time-sortable, List is newest first, an
// earlier run that is over is superseded by a new one of its sandbox, and
// End records the outcome; no temporary file is left.
func TestRunsLifecycle(t *testing.T) {
	s := testRuns(t, false)
	a := &Run{Kind: "apply", Sandbox: "bp", Blueprint: "embedded:default", Outcome: OutcomeStarting}
	if err := s.Create(a); err != nil {
		t.Fatal(err)
	}
	if !idPattern.MatchString(a.ID) || !strings.HasPrefix(a.ID, "20261207T014800Z-") {
		t.Fatalf("id %q", a.ID)
	}
	if err := s.End(a.ID, 7, ""); err != nil {
		t.Fatal(err)
	}
	b := &Run{Kind: "apply", Sandbox: "bp", Outcome: OutcomeStarting}
	other := &Run{Kind: "apply", Sandbox: "other", Outcome: OutcomeStarting}
	for _, r := range []*Run{b, other} {
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.End(b.ID, 1, "sandbox: boom"); err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range list {
		ids = append(ids, r.ID)
	}
	if len(list) != 3 || list[0].ID != other.ID || list[1].ID != b.ID || list[2].ID != a.ID {
		t.Fatalf("List order: %v", ids)
	}
	for _, tc := range []struct {
		r    *Run
		want string
	}{
		{list[2], "exited 7, superseded by " + b.ID},
		{list[1], "failed: sandbox: boom"},
		{list[0], "died (pid 0 gone while starting: killed or host rebooted)"},
	} {
		if got := s.Describe(tc.r); got != tc.want {
			t.Errorf("Describe(%s) = %q, want %q", tc.r.ID, got, tc.want)
		}
	}
	ents, _ := filepath.Glob(filepath.Join(s.Dir, "*", ".record.json.*"))
	if len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestRunsLive: a live run is found by LiveRunOf (not the one excepted)
// and is not superseded by a later one.
func TestRunsLive(t *testing.T) {
	s := testRuns(t, true)
	a := &Run{Sandbox: "bp", Outcome: OutcomeRunning}
	if err := s.Create(a); err != nil {
		t.Fatal(err)
	}
	b := &Run{Sandbox: "bp", Outcome: OutcomeStarting}
	if err := s.Create(b); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ except, want string }{{"", b.ID}, {b.ID, a.ID}} {
		r, err := s.LiveRunOf("bp", tc.except)
		if err != nil || r == nil || r.ID != tc.want {
			t.Errorf("LiveRunOf(bp, %q) = %+v, %v; want %s", tc.except, r, err, tc.want)
		}
	}
	list, _ := s.List()
	if got := list[1]; got.ID != a.ID || got.SupersededBy != "" || s.Describe(got) != "running" {
		t.Fatalf("live run: %+v, %q", got, s.Describe(got))
	}
}

// TestRunsConcurrentUpdates: updates from many goroutines under the lock
// lose none.
func TestRunsConcurrentUpdates(t *testing.T) {
	s := testRuns(t, true)
	r := &Run{Sandbox: "bp", Outcome: OutcomeRunning}
	if err := s.Create(r); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := s.Update(r.ID, func(r *Run) { r.PolicyGeneration++ }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := s.Get(r.ID)
	if err != nil || got.PolicyGeneration != 20 {
		t.Fatalf("after 20 updates: %+v, %v", got, err)
	}
}

// TestRunsBadIDs: Get refuses what is not an id (no path outside Dir).
func TestRunsBadIDs(t *testing.T) {
	s := testRuns(t, false)
	for _, id := range []string{"", "..", "../x", "20261207T014800Z-zzzz", "20261207T014800Z-1a2b/../x"} {
		if _, err := s.Get(id); err == nil || !strings.Contains(err.Error(), "not a run id") {
			t.Errorf("Get(%q): %v", id, err)
		}
	}
	if _, err := s.Get("20261207T014800Z-1a2b"); err == nil || !os.IsNotExist(err) && !strings.Contains(err.Error(), "no record") {
		t.Errorf("Get(missing): %v", err)
	}
}

// TestTreeDigest: the digest changes with a file's content or name.
func TestTreeDigest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("blueprint.yaml", "a")
	d1, err := TreeDigest(dir)
	if err != nil || !strings.HasPrefix(d1, "sha256:") {
		t.Fatal(d1, err)
	}
	write("blueprint.yaml", "b")
	d2, _ := TreeDigest(dir)
	os.Rename(filepath.Join(dir, "blueprint.yaml"), filepath.Join(dir, "x.yaml"))
	d3, _ := TreeDigest(dir)
	if d1 == d2 || d2 == d3 {
		t.Fatalf("digests %s %s %s", d1, d2, d3)
	}
	if ShortDigest(d1) != d1[7:19] {
		t.Fatalf("ShortDigest(%s) = %s", d1, ShortDigest(d1))
	}
}

// TestRunsChain: LiveRunOf finds a live run behind runs that failed before
// their agent ran (a second apply refused by the sandbox's lock) and stops
// at the first run that ran its agent; Previous skips the failed runs.
func TestRunsChain(t *testing.T) {
	s := testRuns(t, false)
	s.Alive = func(pid int, _ uint64) bool { return pid == 1 }
	mk := func(pid int, outcome string) *Run {
		r := &Run{Sandbox: "bp", Pid: pid, Outcome: outcome}
		if err := s.Create(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := mk(0, OutcomeExited)       // over
	holder := mk(1, OutcomeRunning)   // live: it holds the sandbox
	loser := mk(0, OutcomeFailed)     // refused by the lock
	dead := mk(0, OutcomeStarting)    // killed while starting
	current := mk(2, OutcomeStarting) // this process
	for _, tc := range []struct {
		name, except string
		want         *Run
	}{
		{"from the latest", "", holder},
		{"except the current", current.ID, holder},
	} {
		got, err := s.LiveRunOf("bp", tc.except)
		if err != nil || got == nil || got.ID != tc.want.ID {
			t.Errorf("%s: LiveRunOf = %+v, %v; want %s", tc.name, got, err, tc.want.ID)
		}
	}
	if p, err := s.Previous(current); err != nil || p == nil || p.ID != holder.ID {
		t.Errorf("Previous(current) = %+v, %v; want %s", p, err, holder.ID)
	}
	if p, err := s.Previous(holder); err != nil || p == nil || p.ID != old.ID {
		t.Errorf("Previous(holder) = %+v, %v; want %s", p, err, old.ID)
	}
	s.Alive = func(int, uint64) bool { return false } // the holder ended
	if got, err := s.LiveRunOf("bp", ""); err != nil || got != nil {
		t.Errorf("after the holder died: LiveRunOf = %+v, %v", got, err)
	}
	list, _ := s.List()
	sup := map[string]string{}
	for _, r := range list {
		sup[r.ID] = r.SupersededBy
	}
	if sup[old.ID] != holder.ID || sup[loser.ID] != dead.ID || sup[current.ID] != "" {
		t.Errorf("superseded: %v", sup)
	}
	if _, err := s.LiveRunOf("../x", ""); err == nil {
		t.Error("LiveRunOf(../x): no error")
	}
}

func TestIDPattern(t *testing.T) {
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{"20261207T014800Z-1a2b", true},
		{"20261207T014800Z-1A2B", false},
		{"20261207T014800Z-1a2", false},
		{"20261207T014800Z-1a2bc", false},
		{"2026120xT014800Z-1a2b", false},
		{"20261207t014800Z-1a2b", false},
		{"../../../etc/passwd00", false},
		{"", false},
	} {
		if got := idPattern.MatchString(tc.s); got != tc.want {
			t.Errorf("idPattern.MatchString(%q) = %v", tc.s, got)
		}
	}
	if !sha256Digest.MatchString("sha256:"+strings.Repeat("0a", 32)) || sha256Digest.MatchString("sha512:"+strings.Repeat("0a", 32)) || sha256Digest.MatchString("sha256:"+strings.Repeat("0a", 31)) {
		t.Error("sha256Digest")
	}
}
