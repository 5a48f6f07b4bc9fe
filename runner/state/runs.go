package state

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Outcomes a run record holds. A run whose process died without writing
// its end keeps OutcomeStarting or OutcomeRunning on disk; readers tell it
// from a live one by Run.Pid and Run.PidStart (see Runs.Live).
const (
	// OutcomeStarting: the apply took the sandbox's name; the agent does
	// not run yet.
	OutcomeStarting = "starting"
	// OutcomeRunning: the agent runs.
	OutcomeRunning = "running"
	// OutcomeExited: the agent ended; Run.ExitCode says how.
	OutcomeExited = "exited"
	// OutcomeFailed: the apply ended before or without the agent;
	// Run.Reason says why.
	OutcomeFailed = "failed"
	// OutcomeDied is never written: it is how Describe reports a starting
	// or running record whose process is gone (kill -9, a reboot).
	OutcomeDied = "died"
)

// recordFile is a run's record in its directory; lockFile, in the runs
// directory, serialises writers.
const (
	recordFile    = "record.json"
	lockFile      = ".lock"
	runsVersion   = 1
	idTimeLayout  = "20060102T150405Z"
	defaultSubdir = "state/runs"
)

// idPattern is what an id looks like: the UTC time it was made, to the
// second, and 4 random hex digits; ids sort by time.
var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$`)

// Run is one `blueprint apply` (or rollback): what was applied, when, by
// whom and how it ended. It lives in $NEMOCLAW_HOME/state/runs/ID/record.json.
type Run struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// Kind is "apply" or "rollback".
	Kind    string `json:"kind"`
	Sandbox string `json:"sandbox"`
	// Blueprint is what was named: "embedded:default", a directory or a
	// registry reference.
	Blueprint string `json:"blueprint"`
	Version   string `json:"version,omitempty"`
	// Digest is the registry digest of a fetched blueprint, or for a
	// directory "sha256:" of its files (TreeDigest); empty for the
	// embedded one, which the nemoclaw binary pins.
	Digest string `json:"digest,omitempty"`
	// Signer is the verified signer of a registry blueprint.
	Signer  string `json:"signer,omitempty"`
	Profile string `json:"profile,omitempty"`
	// PolicyGeneration is the generation of the policy the sandbox started
	// under (live changes later raise the supervisor's, not this).
	PolicyGeneration uint64    `json:"policy_generation"`
	Started          time.Time `json:"started"`
	Ended            time.Time `json:"ended,omitzero"`
	UID              int       `json:"uid"`
	User             string    `json:"user,omitempty"`
	// Pid and PidStart (clock ticks after boot, /proc/PID/stat field 22)
	// name the process that runs the sandbox's supervisor.
	Pid      int    `json:"pid"`
	PidStart uint64 `json:"pid_start"`
	Detached bool   `json:"detached,omitempty"`
	Outcome  string `json:"outcome"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// SupersededBy is the later run of the same sandbox that replaced this
	// one; RollbackOf the run a rollback undid.
	SupersededBy string `json:"superseded_by,omitempty"`
	RollbackOf   string `json:"rollback_of,omitempty"`
}

// Runs is the run-record store under Dir ($NEMOCLAW_HOME/state/runs).
type Runs struct {
	// Dir holds one directory per run.
	Dir string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Alive reports whether process pid, started at start ticks, still
	// runs; nil treats every process as gone.
	Alive func(pid int, start uint64) bool
}

// RunsDir is the run records' directory under home ($NEMOCLAW_HOME).
func RunsDir(home string) string { return filepath.Join(home, defaultSubdir) }

func (s *Runs) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// lock takes the store's writer lock (a flock: it ends with the process,
// even a killed one) and returns its release.
func (s *Runs) lock() (func(), error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock run records %s: %w", s.Dir, err)
	}
	f, err := os.OpenFile(filepath.Join(s.Dir, lockFile), os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock run records: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock run records %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// Create gives r a new id, marks the earlier runs of its sandbox that are
// over as superseded by it, and writes it.
func (s *Runs) Create(r *Run) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	now := s.now().UTC()
	if r.Started.IsZero() {
		r.Started = now
	}
	for {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("create run record: %w", err)
		}
		r.ID = now.Format(idTimeLayout) + "-" + hex.EncodeToString(b[:])
		err := os.Mkdir(filepath.Join(s.Dir, r.ID), 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) { // else: the same second and digits, draw again
			return fmt.Errorf("create run record: %w", err)
		}
	}
	if err := s.write(r); err != nil {
		return err
	}
	prev, err := s.list()
	if err != nil {
		return err
	}
	for _, p := range prev {
		if p.ID != r.ID && p.Sandbox == r.Sandbox && p.SupersededBy == "" && !s.Live(p) {
			p.SupersededBy = r.ID
			if err := s.write(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Update applies change to run id's record and writes it back, under the
// lock.
func (s *Runs) Update(id string, change func(*Run)) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	r, err := s.Get(id)
	if err != nil {
		return err
	}
	change(r)
	return s.write(r)
}

// End records how run id ended: exited with code, or failed with reason
// (when reason is not empty).
func (s *Runs) End(id string, code int, reason string) error {
	return s.Update(id, func(r *Run) {
		r.Ended = s.now().UTC()
		if reason != "" {
			r.Outcome, r.Reason = OutcomeFailed, reason
			return
		}
		r.Outcome, r.ExitCode = OutcomeExited, &code
	})
}

// write replaces r's record atomically and durably: a temporary file,
// synced, renamed over record.json, then the directory synced, so that a
// crash leaves the old record or the new one.
func (s *Runs) write(r *Run) error {
	r.V = runsVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write run %s: %w", r.ID, err)
	}
	return writeAtomic(filepath.Join(s.Dir, r.ID, recordFile), append(b, '\n'))
}

// Get reads run id's record.
func (s *Runs) Get(id string) (*Run, error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("run %q: not a run id (want e.g. 20261207T014800Z-1a2b; see nemoclaw blueprint status)", id)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir, id, recordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("run %s: no record in %s (see nemoclaw blueprint status): %w", id, s.Dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", id, err)
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read run %s: %w", filepath.Join(s.Dir, id, recordFile), err)
	}
	if r.V > runsVersion {
		return nil, fmt.Errorf("read run %s: record version %d is newer than this nemoclaw's (%d): upgrade nemoclaw", id, r.V, runsVersion)
	}
	return &r, nil
}

// List returns every run, newest first. A directory without a readable
// record (a crash between its mkdir and its first write) is skipped.
func (s *Runs) List() ([]*Run, error) { return s.list() }

func (s *Runs) list() ([]*Run, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []*Run
	for _, e := range ents {
		if !e.IsDir() || !idPattern.MatchString(e.Name()) {
			continue
		}
		if r, err := s.Get(e.Name()); err == nil {
			out = append(out, r)
		}
	}
	// Ids sort by time to the second; Started orders runs within one.
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// Live reports whether r is starting or running and its process is alive.
func (s *Runs) Live(r *Run) bool {
	if r.Outcome != OutcomeStarting && r.Outcome != OutcomeRunning {
		return false
	}
	return s.Alive != nil && s.Alive(r.Pid, r.PidStart)
}

// Describe is r's outcome in words: "running", "exited 0", "failed: …",
// or, for a record whose process is gone without writing its end, "died
// (pid N, while starting)"; ", superseded by ID" is added when a later
// run of the sandbox replaced it.
func (s *Runs) Describe(r *Run) string {
	var o string
	switch r.Outcome {
	case OutcomeStarting, OutcomeRunning:
		o = r.Outcome
		if !s.Live(r) {
			o = fmt.Sprintf("%s (pid %d gone while %s: killed or host rebooted)", OutcomeDied, r.Pid, r.Outcome)
		}
	case OutcomeExited:
		code := -1
		if r.ExitCode != nil {
			code = *r.ExitCode
		}
		o = fmt.Sprintf("exited %d", code)
	case OutcomeFailed:
		o = "failed: " + r.Reason
	default:
		o = r.Outcome
	}
	if r.SupersededBy != "" {
		o += ", superseded by " + r.SupersededBy
	}
	return o
}

// LiveRunOf returns the newest live run of sandbox name other than run
// except, or nil.
func (s *Runs) LiveRunOf(name, except string) (*Run, error) {
	runs, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if r.Sandbox == name && r.ID != except && s.Live(r) {
			return r, nil
		}
	}
	return nil, nil
}

// Previous returns the latest run of r's sandbox before r, or nil.
func (s *Runs) Previous(r *Run) (*Run, error) {
	runs, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, p := range runs {
		if p.Sandbox == r.Sandbox && p.Started.Before(r.Started) && p.Kind != "rollback" {
			return p, nil
		}
	}
	return nil, nil
}

// TreeDigest is "sha256:" of the regular files under dir: each file's
// slash path, NUL, size, NUL and content, in path order. It identifies a
// local blueprint directory's content as applied.
func TreeDigest(dir string) (string, error) {
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(rel), st.Size())
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", dir, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// ShortDigest is the first 12 hex digits of a "sha256:…" digest.
func ShortDigest(d string) string {
	_, hexs, ok := strings.Cut(d, ":")
	if !ok || len(hexs) < 12 {
		return d
	}
	return hexs[:12]
}

// CopyFile copies src over dst atomically (temporary file, sync, rename,
// directory sync), mode 0600: a launch config holds the agent's
// environment.
func CopyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return writeAtomic(dst, b)
}

// writeAtomic replaces path with data: a reader, or a crash, sees the old
// content or the new, never part of one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write %s: sync %s: %w", path, dir, err)
	}
	return nil
}
