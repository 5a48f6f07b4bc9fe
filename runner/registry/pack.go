package registry

import (
	"archive/tar"
	"bytes"
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
	type entry struct {
		rel  string
		info fs.FileInfo
	}
	var entries []entry
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
		entries = append(entries, entry{filepath.ToSlash(rel), info})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.rel, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.info.IsDir():
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, e.rel+"/", 0o755
		default:
			h.Typeflag, h.Size, h.Mode = tar.TypeReg, e.info.Size(), 0o644
			if e.info.Mode()&0o111 != 0 {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("pack %s: %w", dir, err)
		}
		if h.Typeflag == tar.TypeReg {
			f, err := os.Open(filepath.Join(dir, filepath.FromSlash(e.rel)))
			if err != nil {
				return nil, fmt.Errorf("pack %s: %w", dir, err)
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, fmt.Errorf("pack %s: %s: %w", dir, e.rel, err)
			}
			if n != h.Size {
				return nil, fmt.Errorf("pack %s: %s changed size while packing", dir, e.rel)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	return buf.Bytes(), nil
}

// Unpack extracts a blueprint tar into dest, which must not exist. It
// accepts only relative, clean paths of regular files and directories, and
// at most 64 MiB in 10000 entries.
func Unpack(layer []byte, dest string) error {
	if err := os.Mkdir(dest, 0o755); err != nil {
		return fmt.Errorf("unpack: %w", err)
	}
	tr := tar.NewReader(bytes.NewReader(layer))
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unpack: %w", err)
		}
		if n >= maxBlueprintEntries {
			return fmt.Errorf("unpack: more than %d entries", maxBlueprintEntries)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if name == "" || path.IsAbs(name) || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("unpack: entry %q: not a clean relative path", h.Name)
		}
		target := filepath.Join(dest, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxBlueprintBytes {
				return fmt.Errorf("unpack: more than %d bytes", maxBlueprintBytes)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			mode := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return fmt.Errorf("unpack: %w", err)
			}
			_, err = io.Copy(f, io.LimitReader(tr, h.Size))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("unpack: %s: %w", name, err)
			}
		default:
			return fmt.Errorf("unpack: entry %q: type %q is not a regular file or directory", h.Name, string(h.Typeflag))
		}
	}
}
