package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestFollow: without a live writer Follow prints what is there (a last
// line without its newline too); with one it waits for the file, for more
// lines and for a line's end, and returns once the writer is gone.
func TestFollow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		initial string // "" and noFile: the file does not exist yet
		noFile  bool
		later   []string // written while the writer "runs"
		want    []string
	}{
		{name: "read once", initial: "a\nb\nc", want: []string{"a", "b", "c"}},
		{name: "no file, no writer", noFile: true, want: nil},
		{name: "follow a file made later", noFile: true, later: []string{"x\n", "y"}, want: []string{"x", "y"}},
		{name: "a line completed later", initial: "a\nhal", later: []string{"f\n", "z\n"}, want: []string{"a", "half", "z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.log")
			if !tc.noFile {
				if err := os.WriteFile(path, []byte(tc.initial), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			cfg := FollowConfig{Path: path, Line: func(l string) { got = append(got, l) }, Poll: time.Millisecond}
			if tc.later != nil {
				// The "writer" appends one piece per poll, then ends.
				var step atomic.Int32
				cfg.Running = func() bool {
					i := int(step.Add(1)) - 1
					if i >= len(tc.later) {
						return false
					}
					f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
					if err != nil {
						t.Error(err)
						return false
					}
					_, _ = f.WriteString(tc.later[i])
					f.Close()
					return true
				}
			}
			if err := Follow(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lines %q, want %q", got, tc.want)
			}
		})
	}
}
