package cli

import (
	"strings"
	"testing"

	"github.com/nemoclaw/nemoclaw/runner/blueprint"
	"github.com/nemoclaw/nemoclaw/runner/supervisor"
)

// TestOnboardRefusals: onboard asks before it installs anything, so off a
// terminal it needs --yes; an unknown profile or no usable one is a usage
// error that names what to do, before anything is installed.
func TestOnboardRefusals(t *testing.T) {
	t.Setenv("NVIDIA_API_KEY", "")
	t.Setenv("OPENAI_API_KEY", "")
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{args: []string{"onboard"}, env: "k", want: "pass --yes"},
		{args: []string{"onboard", "--yes", "--profile", "nope"}, want: `--profile "nope" is not in the blueprint`},
		{args: []string{"onboard", "--yes", "--name", "Bad/Name"}, want: "Bad/Name"},
	} {
		t.Setenv("NVIDIA_API_KEY", tc.env)
		_, errs, code := run(t, tc.args...)
		if code != 2 && code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestIsOpenClaw(t *testing.T) {
	for _, tc := range []struct {
		in   supervisor.Info
		want bool
	}{
		{supervisor.Info{Blueprint: blueprint.EmbeddedOpenClaw}, true},
		{supervisor.Info{Command: []string{"openclaw", "gateway", "run"}}, true},
		{supervisor.Info{Command: []string{"/nemoclaw/tools/bin/openclaw", "tui"}}, true},
		{supervisor.Info{Blueprint: blueprint.EmbeddedDefault, Command: []string{"/bin/bash"}}, false},
		{supervisor.Info{}, false},
	} {
		if got := isOpenClaw(&tc.in); got != tc.want {
			t.Errorf("isOpenClaw(%+v) = %v", tc.in, got)
		}
	}
}
