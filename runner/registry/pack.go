package registry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Limits on what Unpack accepts, so a hostile layer cannot fill the disk.
const (
	maxBlueprintBytes   = 64 << 20
	maxBlueprintEntries = 10000
)

// epoch is the modification time of every packed entry.
var epoch = time.Unix(0, 0).UTC()

// Pack makes the deterministic tar of a blueprint directory: paths sorted,
// times zeroed, owners root with no names, modes normalised to 0755 for
// directories and executables and 0644 for other files. The same tree always
// gives the same bytes, so the same digest. Symlinks and special files are
// refused: a blueprint is plain files.
func Pack(dir string) ([]byte, error) {
	var entries []treeEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s: %s is not a regular file or directory; blueprints hold plain files only", p, info.Mode().Type())
		}
		entries = append(entries, treeEntry{name: filepath.ToSlash(rel), dir: info.IsDir(), exec: info.Mode()&0o111 != 0, size: info.Size(), file: p})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	b, err := writeTree(entries)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	return b, nil
}

// treeEntry is one file or directory of a blueprint tree, read from a
// directory (file set) or from a layer (data set).
type treeEntry struct {
	name string // clean, relative, slash-separated
	dir  bool
	exec bool
	size int64
	file string // the file to copy, when packing a directory
	data []byte // the content, when read from a layer
}

// writeTree writes entries as the deterministic tar Pack defines.
func writeTree(entries []treeEntry) ([]byte, error) {
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, e.name+"/", 0o755
		default:
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, e.size, 0o644
			if e.exec {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.dir {
			continue
		}
		if e.file == "" {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
			continue
		}
		f, err := os.Open(e.file)
		if err != nil {
			return nil, err
		}
		n, err := io.Copy(tw, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if n != h.Size {
			return nil, fmt.Errorf("%s changed size while packing", e.name)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unpack extracts a blueprint tar (LayerMediaType) into dest, which must
// not exist; see UnpackLayer.
func Unpack(layer []byte, dest string) error {
	return UnpackLayer(layer, ocispec.Descriptor{MediaType: LayerMediaType}, dest)
}

// UnpackLayer extracts a blueprint layer into dest, which must not exist.
// It accepts what readLayer accepts: relative, clean paths ("./" prefixes
// are dropped) of regular files and directories, at most 64 MiB in 10000
// entries, as tar or tar+gzip according to desc's media type.
func UnpackLayer(layer []byte, desc ocispec.Descriptor, dest string) error {
	entries, err := readLayer(layer, desc)
	if err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	return writeEntries(entries, dest)
}

// writeEntries creates dest, which must not exist, holding entries.
func writeEntries(entries []treeEntry, dest string) error {
	if err := os.Mkdir(dest, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	for _, e := range entries {
		target := filepath.Join(dest, filepath.FromSlash(e.name))
		if e.dir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		mode := os.FileMode(0o644)
		if e.exec {
			mode = 0o755
		}
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		_, err = f.Write(e.data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unpack: %s: %w", e.name, err)
		}
	}
	return nil
}

// Layer media types a blueprint may arrive in: ours, and the OCI layer
// types other tools use (oras push DIR makes tar+gzip). The value says
// whether it is gzip-compressed.
var layerMediaTypes = map[string]bool{
	LayerMediaType:                  false,
	LayerMediaTypeGzip:              true,
	ocispec.MediaTypeImageLayer:     false,
	ocispec.MediaTypeImageLayerGzip: true,
}

// orasUnpackAnnotation marks a layer that the oras CLI packed from a
// directory; its entries are prefixed with the directory's name, the
// layer's title.
const orasUnpackAnnotation = "io.deis.oras.content.unpack"

// packHint says how to pack a blueprint so that pull accepts it.
const packHint = "pack the blueprint directory with 'nemoclaw blueprint push DIR REF', " +
	"or as one tar or tar+gzip layer of its files, e.g. 'oras push --artifact-type " + ArtifactType +
	" --annotation " + AnnotationVersion + "=VERSION REF DIR/'"

// readLayer decodes a blueprint layer into its entries, checked and
// normalised: "./" prefixes and the oras directory prefix removed, paths
// clean and relative, regular files and directories only, no name twice,
// at most maxBlueprintEntries entries and maxBlueprintBytes of content.
func readLayer(layer []byte, desc ocispec.Descriptor) ([]treeEntry, error) {
	gz, ok := layerMediaTypes[desc.MediaType]
	if !ok {
		return nil, fmt.Errorf("layer media type %q is not a tar or tar+gzip layer", desc.MediaType)
	}
	var r io.Reader = bytes.NewReader(layer)
	isGzip := bytes.HasPrefix(layer, []byte{0x1f, 0x8b})
	switch {
	case gz:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("layer of media type %q: %w", desc.MediaType, err)
		}
		// Headers, padding and content: far below this for any layer
		// within the entry and byte limits.
		r = io.LimitReader(zr, maxBlueprintBytes+int64(maxBlueprintEntries)*4096)
	case isGzip:
		return nil, fmt.Errorf("layer is gzip-compressed but its media type %q says plain tar (push it as %q)", desc.MediaType, desc.MediaType+"+gzip")
	}
	prefix := ""
	if desc.Annotations[orasUnpackAnnotation] == "true" {
		prefix = path.Clean(strings.TrimPrefix(desc.Annotations[ocispec.AnnotationTitle], "./"))
		if prefix == "." {
			prefix = ""
		}
	}
	tr := tar.NewReader(r)
	var (
		entries []treeEntry
		total   int64
		seen    = map[string]bool{}
	)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // git archive's comment; it names no file
		}
		if len(entries) >= maxBlueprintEntries {
			return nil, fmt.Errorf("more than %d entries", maxBlueprintEntries)
		}
		name, err := entryName(h.Name, prefix)
		if err != nil {
			return nil, err
		}
		if name == "" {
			if h.Typeflag != tar.TypeDir {
				return nil, fmt.Errorf("entry %q: the blueprint's root is not a directory", h.Name)
			}
			continue
		}
		e := treeEntry{name: name, exec: h.Mode&0o111 != 0}
		switch h.Typeflag {
		case tar.TypeDir:
			e.dir, e.exec = true, false
			if seen[name] {
				continue
			}
		case tar.TypeReg:
			if seen[name] {
				return nil, fmt.Errorf("entry %q: a file of that name already exists in the layer", h.Name)
			}
			total += h.Size
			if h.Size < 0 || total > maxBlueprintBytes {
				return nil, fmt.Errorf("more than %d bytes", maxBlueprintBytes)
			}
			e.size = h.Size
			if e.data, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("entry %q: %w", h.Name, err)
			}
		default:
			return nil, fmt.Errorf("entry %q: type %q is not a regular file or directory; blueprints hold plain files only", h.Name, string(h.Typeflag))
		}
		seen[name] = true
		entries = append(entries, e)
	}
}

// entryName normalises a tar entry's name: a trailing "/" and leading "./"
// go, as does prefix (the oras directory name); what is left must be a
// clean relative path. "" is the blueprint's root.
func entryName(raw, prefix string) (string, error) {
	name := strings.TrimSuffix(raw, "/")
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	if name == "." {
		name = ""
	}
	if prefix != "" {
		switch {
		case name == prefix:
			name = ""
		case strings.HasPrefix(name, prefix+"/"):
			name = name[len(prefix)+1:]
		default:
			return "", fmt.Errorf("entry %q: outside the directory %q the layer's title names", raw, prefix)
		}
	}
	if name == "" {
		return "", nil
	}
	if path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("entry %q: not a clean relative path", raw)
	}
	return name, nil
}

// treeDigest is the digest of the deterministic tar of entries (Pack's
// format), with every parent directory present: what Pack gives for the
// directory UnpackLayer makes of them. For a layer Pack made it is the
// layer's digest.
func treeDigest(entries []treeEntry) (digest.Digest, error) {
	all := append([]treeEntry(nil), entries...)
	have := map[string]bool{}
	for _, e := range entries {
		have[e.name] = true
	}
	for _, e := range entries {
		for d := path.Dir(e.name); d != "." && !have[d]; d = path.Dir(d) {
			have[d] = true
			all = append(all, treeEntry{name: d, dir: true})
		}
	}
	b, err := writeTree(all)
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}
