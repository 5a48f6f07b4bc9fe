package registry

import (
	"github.com/hashicorp/go-version"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSelectVersion(t *testing.T) {
	t.Parallel()
	tags := []string{"latest", "1.0.0", "1.2.0", "1.2.5", "v1.2.7-rc.1", "1.3.0-rc.1", "1.3.0", "2.0.0", "sha256-abc", "2.1.0-beta.2"}
	tests := []struct {
		constraint, want string
	}{
		{"", "2.0.0"},
		{"~> 1.2", "1.3.0"},
		{"~> 1.2.0", "1.2.5"},
		{">= 1.2, < 2", "1.3.0"},
		{"< 1.2", "1.0.0"},
		{"1.2.0", "1.2.0"},
		{">= 1.3.0-rc.1, < 1.4", "1.3.0"},
		{"2.1.0-beta.2", "2.1.0-beta.2"},
		{">= 2.1.0-beta.1", "2.1.0-beta.2"},
		{">= 3", ""},
	}
	for _, tc := range tests {
		var cons = mustConstraint(t, tc.constraint)
		got, _, ok := selectVersion(tags, cons)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("constraint %q: got %q, want %q", tc.constraint, got, tc.want)
		}
	}
}

func mustConstraint(t *testing.T, s string) (c version.Constraints) {
	t.Helper()
	if s == "" {
		return nil
	}
	c, err := parseConstraint(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseReference(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, repo, tag, dgst, err string }{
		{"127.0.0.1:5000/team/bp", "127.0.0.1:5000/team/bp", "", "", ""},
		{"127.0.0.1:5000/team/bp:1.2.3", "127.0.0.1:5000/team/bp", "1.2.3", "", ""},
		{"localhost:5000/bp@sha256:" + strings.Repeat("a", 64), "localhost:5000/bp", "", "sha256:" + strings.Repeat("a", 64), ""},
		{"bp", "", "", "", "want host/repo"},
		{"HOST/Upper", "", "", "", "want host/repo"},
	}
	for _, tc := range tests {
		r, err := ParseReference(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want error %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || r.Repo() != tc.repo || r.Tag != tc.tag || r.Digest != tc.dgst {
			t.Errorf("%q: got %+v, %v", tc.in, r, err)
		}
	}
	for host, want := range map[string]bool{"127.0.0.1:5000": true, "localhost:1": true, "[::1]:5000": true, "127.9.9.9": true, "10.0.0.1:5000": false, "registry.example.com": false} {
		if IsLoopback(host) != want {
			t.Errorf("IsLoopback(%q) = %v", host, !want)
		}
	}
}

func TestLockRoundTrip(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), DefaultLockFile)
	l, err := ReadLock(path)
	if err != nil || len(l.Blueprints) != 0 {
		t.Fatalf("missing lock: %v %+v", err, l)
	}
	d := "sha256:" + strings.Repeat("b", 64)
	l.Set(LockEntry{Ref: "h:1/z", Version: "1.0.0", Digest: d, Signer: "key sha256:x"})
	l.Set(LockEntry{Ref: "h:1/a", Constraint: "~> 1.2", Tag: "1.2.3", Version: "1.2.3", Digest: d, Signer: Unverified})
	l.Set(LockEntry{Ref: "h:1/z", Version: "1.1.0", Digest: d, Signer: "key sha256:y"})
	if err := l.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Blueprints) != 2 || got.Blueprints[0].Ref != "h:1/a" || got.Find("h:1/z").Version != "1.1.0" {
		t.Errorf("round trip: %+v", got)
	}
}

func TestParseLockErrors(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("testdata", "lock", "bad-*.lock"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad lock fixtures: %v", err)
	}
	want := map[string]string{
		"bad-unknown-key.lock": `bad-unknown-key.lock:4:5: blueprints[0].branch: unknown field "branch"`,
		"bad-anchor.lock":      "bad-anchor.lock:3:5: YAML anchors and aliases are not supported (anchor &bp)",
		"bad-digest.lock":      "want sha256",
		"bad-duplicate.lock":   "appears twice",
		"bad-version.lock":     "want version: 1",
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseLock(f, data)
		if w := want[filepath.Base(f)]; err == nil || !strings.Contains(err.Error(), w) || !strings.Contains(err.Error(), f) {
			t.Errorf("%s: got %v, want error naming the file and containing %q", f, err, w)
		}
	}
}

func FuzzParseLock(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "lock", "*.lock"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ParseLock("fuzz.lock", data)
		if err != nil {
			return
		}
		for _, e := range l.Blueprints {
			if _, err := parseDigest(e.Digest); err != nil {
				t.Fatalf("accepted a bad digest %q", e.Digest)
			}
		}
	})
}

// TestParseLockEmpty: an empty lock file (or one of comments only) is an
// empty lock, as a missing one is.
func TestParseLockEmpty(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", "\n", "# no blueprints yet\n"} {
		l, err := ParseLock("nemoclaw.lock", []byte(data))
		if err != nil || l.Version != 1 || len(l.Blueprints) != 0 {
			t.Errorf("%q: %+v, %v", data, l, err)
		}
	}
}
