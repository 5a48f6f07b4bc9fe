package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPackDeterministic(t *testing.T) {
	t.Parallel()
	a := blueprintDir(t, "1.0.0", "")
	b := blueprintDir(t, "1.0.0", "")
	// Different times and permission bits must not change the digest.
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(b, "blueprint.yaml"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(b, "blueprint.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	pa, err := Pack(a)
	if err != nil {
		t.Fatal(err)
	}
	pa2, err := Pack(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := Pack(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pa, pa2) || digest.FromBytes(pa) != digest.FromBytes(pb) {
		t.Fatalf("packing is not deterministic: %s %s %s", digest.FromBytes(pa), digest.FromBytes(pa2), digest.FromBytes(pb))
	}
	da, _, va, err := Package(a, "bp")
	if err != nil {
		t.Fatal(err)
	}
	db, _, _, err := Package(b, "bp")
	if err != nil {
		t.Fatal(err)
	}
	if da != db || va != "1.0.0" {
		t.Errorf("manifest digests %s %s version %s", da, db, va)
	}
	// Content changes do change it.
	c := blueprintDir(t, "1.0.0", "different")
	dc, _, _, err := Package(c, "bp")
	if err != nil {
		t.Fatal(err)
	}
	if dc == da {
		t.Errorf("different content gave the same digest")
	}
	// Round trip: unpack then pack gives the same bytes.
	out := filepath.Join(t.TempDir(), "out")
	if err := Unpack(pa, out); err != nil {
		t.Fatal(err)
	}
	again, err := Pack(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pa, again) {
		t.Errorf("unpack+pack changed the layer")
	}
	// Headers are normalised.
	tr := tar.NewReader(bytes.NewReader(pa))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: header not normalised: %+v", h.Name, h)
		}
	}
}

func TestPackRefusesSymlinks(t *testing.T) {
	t.Parallel()
	d := blueprintDir(t, "1.0.0", "")
	if err := os.Symlink("/etc/passwd", filepath.Join(d, "link")); err != nil {
		t.Fatal(err)
	}
	if _, err := Pack(d); err == nil || !strings.Contains(err.Error(), "link") {
		t.Errorf("got %v, want a refusal naming the symlink", err)
	}
}

func TestPushRefusesInvalidBlueprint(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, version, want string }{
		{"not semver", "one", "version"},
		{"no blueprint", "", "blueprint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.version != "" {
				d = blueprintDir(t, tc.version, "")
			}
			if _, _, _, err := Package(d, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func tarOf(t *testing.T, hs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUnpackRejectsHostileLayers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hs   []*tar.Header
		want string
	}{
		{"absolute path", []*tar.Header{{Name: "/etc/x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}}, "clean relative"},
		{"dot dot", []*tar.Header{{Name: "../x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}}, "clean relative"},
		{"inner dot dot", []*tar.Header{{Name: "a/../../x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}}, "clean relative"},
		{"symlink", []*tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}}, "not a regular file"},
		{"hard link", []*tar.Header{{Name: "l", Typeflag: tar.TypeLink, Linkname: "x"}}, "not a regular file"},
		{"duplicate", []*tar.Header{{Name: "x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}, {Name: "x", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}}, "exists"},
		{"too big", []*tar.Header{{Name: "x", Typeflag: tar.TypeReg, Size: maxBlueprintBytes + 1, Mode: 0o644}}, "bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var layer []byte
			if tc.name == "too big" {
				// Only the header is needed: Unpack checks the size first.
				var buf bytes.Buffer
				tw := tar.NewWriter(&buf)
				_ = tw.WriteHeader(tc.hs[0])
				layer = buf.Bytes()
			} else {
				layer = tarOf(t, tc.hs...)
			}
			dest := filepath.Join(t.TempDir(), "out")
			err := Unpack(layer, dest)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if _, err := os.Stat("/etc/x"); err == nil && tc.name == "absolute path" {
				t.Fatalf("escaped to /etc/x")
			}
		})
	}
}

func FuzzUnpack(f *testing.F) {
	if b, err := Pack(filepath.Join("testdata", "blueprint")); err == nil {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dest := filepath.Join(root, "out")
		_ = Unpack(data, dest)
		// Whatever happened, nothing may exist outside dest.
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "out" {
				t.Fatalf("unpack wrote %s outside its destination", e.Name())
			}
		}
	})
}

// FuzzUnpackLayer feeds other tools' packings (gzip, oras' directory
// prefix) through the same checks: nothing may land outside dest.
func FuzzUnpackLayer(f *testing.F) {
	if b, err := Pack(filepath.Join("testdata", "blueprint")); err == nil {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		_, _ = zw.Write(b)
		_ = zw.Close()
		f.Add(z.Bytes(), true)
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, oras bool) {
		desc := ocispec.Descriptor{MediaType: LayerMediaTypeGzip}
		if oras {
			desc.Annotations = map[string]string{orasUnpackAnnotation: "true", ocispec.AnnotationTitle: "bp"}
		}
		root := t.TempDir()
		_ = UnpackLayer(data, desc, filepath.Join(root, "out"))
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "out" {
				t.Fatalf("unpack wrote %s outside its destination", e.Name())
			}
		}
	})
}
