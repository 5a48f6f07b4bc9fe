// Package version is nemoclaw's one version source: `nemoclaw version`
// prints it and the blueprint gate min_runner_version compares against it.
// It imports nothing heavy, so both executables and every library may use it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	goversion "github.com/hashicorp/go-version"
)

// Version is the release's semantic version. A release build may set it
// with -ldflags "-X github.com/nemoclaw/nemoclaw/runner/version.Version=1.2.3";
// the default is the version this source tree is released as, so that a
// development build passes the gates a blueprint of this release sets.
var Version = "0.1.0"

// Build identifies the commit a binary was built from (git describe), set
// with -ldflags "-X github.com/nemoclaw/nemoclaw/runner/version.Build=…";
// empty for a plain `go build`. It is build metadata: never compared.
var Build = ""

// String is the version as `nemoclaw version` prints it: Version, plus
// Build as semver build metadata when set.
func String() string {
	if Build == "" {
		return Version
	}
	return Version + "+" + Build
}

// Semver parses Version. An -X value that is not a semantic version fails
// here, so that the gates refuse rather than compare garbage.
func Semver() (*goversion.Version, error) {
	v, err := goversion.NewSemver(Version)
	if err != nil {
		return nil, fmt.Errorf("parse nemoclaw's own version %q (set at build time with -X …/runner/version.Version): %w", Version, err)
	}
	return v, nil
}

// Identity names this build for the handshake between nemoclaw and
// nemoclaw-dist: String(), the Go toolchain, and what Go stamped about the
// module (its version when installed at one, the commit and whether the tree
// was modified when built from a checkout). Both executables of one
// `make build` or `go install …/cmd/...` have the same; two builds of one
// modified checkout at one commit may too (nothing cheaper tells them apart).
func Identity() string {
	id := String() + " " + runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			id += " module=" + bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				id += " " + s.Key + "=" + s.Value
			}
		}
	}
	return id
}
