package version

import (
	"runtime/debug"
	"testing"

	goversion "github.com/hashicorp/go-version"
)

func TestDefaultIsSemver(t *testing.T) {
	if _, err := Semver(); err != nil {
		t.Fatal(err)
	}
}

func TestString(t *testing.T) {
	defer func(v, b string) { Version, Build = v, b }(Version, Build)
	tests := []struct{ version, build, want string }{
		{"0.1.0", "", "0.1.0"},
		{"0.1.0", "a815afc-dirty", "0.1.0+a815afc-dirty"},
	}
	if _, stamped := moduleVersion(); stamped {
		tests = tests[1:] // the test binary's own module version would be the metadata
	}
	for _, tt := range tests {
		Version, Build = tt.version, tt.build
		if got := String(); got != tt.want {
			t.Errorf("Version %q Build %q: String() = %q, want %q", tt.version, tt.build, got, tt.want)
		}
	}
	Version = "a815afc"
	if _, err := Semver(); err == nil {
		t.Error("a commit hash as Version parsed as a semantic version")
	}
}

// moduleVersion is the module version Go stamped into this test binary.
func moduleVersion() (string, bool) {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version == "" || bi.Main.Version == "(devel)" {
		return "", false
	}
	return bi.Main.Version, true
}

func TestSemverMeta(t *testing.T) {
	for in, want := range map[string]string{
		"v0.0.0-20261207014700-a815afc12345+dirty": "v0.0.0-20261207014700-a815afc12345-dirty",
		"v1.2.3": "v1.2.3",
	} {
		if got := semverMeta(in); got != want {
			t.Errorf("semverMeta(%q) = %q, want %q", in, got, want)
		}
		if _, err := goversion.NewSemver("0.1.0+" + semverMeta(in)); err != nil {
			t.Errorf("0.1.0+%s: %v", semverMeta(in), err)
		}
	}
}
