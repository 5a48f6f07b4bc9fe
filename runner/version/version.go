// Package version is nemoclaw's one version source: `nemoclaw version`
// prints it and the blueprint gate min_runner_version compares against it.
// It imports nothing heavy, so both executables and every library may use it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

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
// Build as semver build metadata; a build without -X …/runner/version.Build
// (a plain `go install`) takes it from the module version Go stamped.
func String() string {
	build := Build
	if build == "" {
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			build = semverMeta(bi.Main.Version)
		}
	}
	if build == "" {
		return Version
	}
	return Version + "+" + build
}

// semverMeta turns s into valid semver build metadata ([0-9A-Za-z-] in
// dot-separated parts).
func semverMeta(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.') {
			b[i] = '-'
		}
	}
	return string(b)
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
// nemoclaw-dist: String() (with the module version Go stamped, when
// installed at one), the Go toolchain, and the commit and whether the tree
// was modified when built from a git checkout. Both executables of one
// `make build` or `go install …/cmd/...` have the same; two builds of one
// modified checkout at one commit may too (nothing cheaper tells them apart).
func Identity() string {
	id := String() + " " + runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
				id += " " + s.Key + "=" + s.Value
			}
		}
	}
	return id
}

// BundledPlugins is the SHA-256 of each inference plugin built with this
// nemoclaw, "name=hex,name=hex", set by the build (make build links it in
// with -ldflags -X). A plugin found next to the nemoclaw binary whose
// checksum matches is trusted without a plugins.lock entry: it is part of
// the same build as nemoclaw itself.
var BundledPlugins = ""

// BundledPluginPins parses BundledPlugins (nil when the build set none).
func BundledPluginPins() map[string]string {
	if BundledPlugins == "" {
		return nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(BundledPlugins, ",") {
		if name, sum, ok := strings.Cut(kv, "="); ok && name != "" && len(sum) == 64 {
			out[name] = strings.ToLower(sum)
		}
	}
	return out
}
