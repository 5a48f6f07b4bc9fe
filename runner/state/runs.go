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
// second, and 4 random hex digits; ids sort by time. A pattern rather than
// a regexp: compiling one at package initialisation cost every nemoclaw
// start 40 µs (`sandbox exec` among them).
var idPattern = pattern("99999999T999999Z-ffff")

// pattern matches strings of its template's length where the template
// has '9' a decimal digit, 'f' a lowercase hex digit, anything else itself.
type pattern string

// MatchString reports whether s matches p.
func (p pattern) MatchString(s string) bool {
	if len(s) != len(p) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch p[i] {
		case '9':
			if c < '0' || c > '9' {
				return false
			}
		case 'f':
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		default:
			if c != p[i] {
				return false
			}
		}
	}
	return true
}

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
	// Prev is the latest run of the same sandbox when this one was
	// created: the runs of a sandbox form a chain, newest first, which
	// apply walks without reading every record.
	Prev string `json:"prev,omitempty"`
	// SupersededBy is the next run of the same sandbox, for a run that is
	// over; it is derived when runs are listed, never stored.
	SupersededBy string `json:"superseded_by,omitempty"`
	// RollbackOf is the run a rollback undid.
	RollbackOf string `json:"rollback_of,omitempty"`
	// Pin is the lock entry a registry blueprint was applied under: what
	// a rollback to this run writes back.
	Pin *Pin `json:"pin,omitempty"`
}

// Pin is a lock entry and the lock file (an absolute path) it is in.
type Pin struct {
	LockFile string `json:"lock_file"`
	LockEntry
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
	if err := os.MkdirAll(filepath.Join(s.Dir, latestDir), 0o700); err != nil {
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
	if err := checkSandbox(r.Sandbox); err != nil {
		return err
	}
	prev, err := s.Latest(r.Sandbox)
	if err != nil {
		return err
	}
	if prev != nil {
		r.Prev = prev.ID
	}
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
	return writeAtomic(s.latestPath(r.Sandbox), []byte(r.ID+"\n"))
}

// latestDir holds, per sandbox, the id of its latest run.
const latestDir = "latest"

func (s *Runs) latestPath(name string) string { return filepath.Join(s.Dir, latestDir, name) }

// checkSandbox refuses a name that could leave latestDir.
func checkSandbox(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("run record: sandbox name %q: want a sandbox name", name)
	}
	return nil
}

// Latest returns the latest run of sandbox name, or nil if it has none.
func (s *Runs) Latest(name string) (*Run, error) {
	if err := checkSandbox(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.latestPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the latest run of %s: %w", name, err)
	}
	return s.Get(strings.TrimSpace(string(b)))
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

// List returns every run, newest first, with SupersededBy filled in. A
// directory without a readable record (a crash between its mkdir and its
// first write) is skipped.
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
	next := make(map[string]string, len(out))
	for _, r := range out {
		if r.Prev != "" && !(r.Kind == "rollback" && r.Outcome == OutcomeFailed) { // a failed rollback replaced nothing
			next[r.Prev] = r.ID
		}
	}
	for _, r := range out {
		if n := next[r.ID]; n != "" && !s.Live(r) {
			r.SupersededBy = n
		}
	}
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

// ranAgent reports whether r got as far as running its agent: then it
// held the sandbox's directory lock, so every earlier run of the sandbox
// had ended by then.
func ranAgent(r *Run) bool {
	return r.Outcome == OutcomeRunning || r.Outcome == OutcomeExited
}

// LiveRunOf returns the live run of sandbox name other than run except,
// or nil. It walks the sandbox's chain from its latest run back to the
// first that ran its agent: runs before that one are over.
func (s *Runs) LiveRunOf(name, except string) (*Run, error) {
	r, err := s.Latest(name)
	for ; err == nil && r != nil; r, err = s.prev(r) {
		if r.ID != except && s.Live(r) {
			return r, nil
		}
		if ranAgent(r) && r.ID != except {
			return nil, nil
		}
	}
	return nil, err
}

// prev returns the run before r in its sandbox's chain, or nil.
func (s *Runs) prev(r *Run) (*Run, error) {
	if r.Prev == "" {
		return nil, nil
	}
	return s.Get(r.Prev)
}

// Previous returns the latest run before r in its sandbox's chain that
// ran its agent (the one a rollback of r goes back to), or nil.
func (s *Runs) Previous(r *Run) (*Run, error) {
	p, err := s.prev(r)
	for ; err == nil && p != nil; p, err = s.prev(p) {
		if ranAgent(p) {
			return p, nil
		}
	}
	return nil, err
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

// writeAtomic replaces path with data, mode 0600: a reader, or a crash,
// sees the old content or the new, never part of one.
func writeAtomic(path string, data []byte) error { return writeAtomicMode(path, data, 0o600) }

// writeAtomicMode is writeAtomic with the file's mode.
func writeAtomicMode(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil && mode != 0o600 { // CreateTemp made it 0600
		err = f.Chmod(mode)
	}
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
