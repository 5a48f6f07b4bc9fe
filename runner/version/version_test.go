package version

import "testing"

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
