package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReservation: a reservation makes and locks the directory (and its
// parents), refuses a second one for the same name while held, and its
// Release removes what it made, and only that.
func TestReservation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		preexist bool // the sandbox's directory exists before (a kept workspace)
	}{
		{"fresh home", false},
		{"directory kept from a run before", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			if tc.preexist {
				if err := os.MkdirAll(filepath.Join(Dir(home, "res"), "workspace"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			r := Reserve(home, "res")
			if err := r.wait(); err != nil {
				t.Fatal(err)
			}
			second := NewReservation(home, "res")
			second.Make()
			if err := second.wait(); err == nil || !strings.Contains(err.Error(), `name "res" is in use`) {
				t.Fatalf("second reservation of a held name: %v", err)
			}
			second.Release()
			r.Release()
			_, err := os.Stat(home)
			if tc.preexist {
				if _, err := os.Stat(filepath.Join(Dir(home, "res"), "workspace")); err != nil {
					t.Fatalf("release removed a kept workspace: %v", err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("release left the home it made: %v", err)
			}
			// Free again once released.
			again := Reserve(home, "res")
			if err := again.wait(); err != nil {
				t.Fatalf("after release: %v", err)
			}
			again.Release()
		})
	}
}

// TestLazyFile: no file until the first write; a write before its
// directory exists fails and a later one succeeds; made survives Close.
func TestLazyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	l := &LazyFile{Path: filepath.Join(dir, "log")}
	if _, err := l.Write([]byte("lost\n")); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if l.made() {
		t.Fatal("made after a failed write")
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("kept\n")); err != nil {
		t.Fatalf("write once the directory exists: %v", err)
	}
	if err := l.Close(); err != nil || !l.made() {
		t.Fatalf("close: %v, made %v", err, l.made())
	}
	b, err := os.ReadFile(l.Path)
	if err != nil || string(b) != "kept\n" {
		t.Fatalf("file: %q %v", b, err)
	}
	st, _ := os.Stat(l.Path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode())
	}
}
