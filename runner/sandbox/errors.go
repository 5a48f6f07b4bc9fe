package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// StepError is a sandbox setup failure: Step names what was being done
// ("landlock: restrict", "mount: /proc"), Err says why and Hint what the user
// can do. Refused is true when policy, not a fault, stopped the start (for
// example landlock.compatibility: hard_requirement on a kernel without the
// needed Landlock ABI); the CLI maps it to exit code 3. Errno is set when
// the agent's own execve failed, with its error (see ExecStatus).
type StepError struct {
	Step    string        `json:"step"`
	Err     error         `json:"-"`
	Hint    string        `json:"hint,omitempty"`
	Refused bool          `json:"refused,omitempty"`
	Errno   syscall.Errno `json:"errno,omitempty"`
}

// stepError is the wire form of StepError, as the C init writes it.
type stepError struct {
	Step    string `json:"step"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	Refused bool   `json:"refused,omitempty"`
	Errno   int    `json:"errno,omitempty"`
}

// Error reads "sandbox: <step>: <cause>".
func (e *StepError) Error() string {
	return fmt.Sprintf("sandbox: %s: %v", e.Step, e.Err)
}

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

func stepErr(step string, err error) *StepError {
	return &StepError{Step: step, Err: err, Hint: hintFor(step, err)}
}

func (w *stepError) err() *StepError {
	hint := w.Hint
	if hint == "" {
		hint = hintFor(w.Step, nil)
	}
	return &StepError{Step: w.Step, Err: errors.New(w.Message), Hint: hint, Refused: w.Refused, Errno: syscall.Errno(w.Errno)}
}

// ExecStatus is the exit status a shell gives a command it cannot run,
// for an err that says the agent's command could not be executed: 127
// when it was not found, 126 when it was found but could not be run (not
// executable, denied by Landlock, a bad binary). It is 0 for any other err.
func ExecStatus(err error) int {
	var se *StepError
	switch {
	case !errors.As(err, &se) || se.Errno == 0:
		return 0
	case se.Errno == syscall.ENOENT:
		return 127
	default:
		return 126
	}
}

// IsRefused reports whether err is a policy refusal (exit code 3).
func IsRefused(err error) bool {
	var se *StepError
	return errors.As(err, &se) && se.Refused
}

// hintFor suggests what the user can do about a failed step.
func hintFor(step string, err error) string {
	switch {
	case strings.HasPrefix(step, "landlock"):
		return "check `nemoclaw doctor` for the kernel's Landlock ABI, or set landlock.compatibility: best_effort in the policy"
	case strings.HasPrefix(step, "seccomp"):
		return "the kernel must have CONFIG_SECCOMP_FILTER; check `nemoclaw doctor`"
	case strings.HasPrefix(step, "namespace"):
		return "unprivileged user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces); run as root or enable them"
	case strings.HasPrefix(step, "workspace: idmapped"):
		return "use a workspace on a filesystem that supports idmapped mounts (ext4, xfs, btrfs; tmpfs from Linux 6.3), give the directory to the agent's user yourself (chown it to the uid:gid above), or run nemoclaw as the directory's owner, without root"
	case strings.HasPrefix(step, "workspace"):
		return "check that the workspace (--workdir) is a directory and stays in place while the sandbox starts"
	case strings.HasPrefix(step, "mount"):
		return "the sandbox needs a mount namespace and the paths it binds; check that the workspace and --workdir exist"
	case strings.HasPrefix(step, "exec"):
		return "check the command name and that its directory is readable in the policy's filesystem_policy"
	case strings.HasPrefix(step, "network"):
		return "another listener may hold the port inside the sandbox; check network settings"
	}
	return ""
}
