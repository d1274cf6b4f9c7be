package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// A downloaded snapshot is a tar archive of its directory exactly as the
// store holds it: the encrypted database files, the keystore of its time
// and the manifest. No credential is in it.

// WriteArchive writes a snapshot directory as a tar archive (a
// download): directories and regular files, paths relative to it.
func WriteArchive(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: filepath.ToSlash(rel) + "/", Mode: 0o700, ModTime: info.ModTime()})
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Mode: 0o600, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ExtractArchive extracts a snapshot archive into dst: directories and
// regular files only, every path inside dst; anything else is an error.
func ExtractArchive(path, dst string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	// An archive is not compressed: what it holds cannot exceed its own
	// size. The budget stops a crafted one (sparse entries describing
	// huge holes) from filling the disk.
	budget := st.Size()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a snapshot archive: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("archive entry %q leaves the archive", h.Name)
		}
		to := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(to, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
				return err
			}
			out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			if len(h.PAXRecords) > 0 && h.PAXRecords["GNU.sparse.map"] != "" || h.Size > budget {
				out.Close()
				return fmt.Errorf("archive entry %q is larger than the archive (sparse or damaged)", h.Name)
			}
			n, err := io.Copy(out, io.LimitReader(tr, budget+1))
			if err != nil {
				out.Close()
				return err
			}
			if budget -= n; budget < 0 {
				out.Close()
				return fmt.Errorf("archive entry %q is larger than the archive (sparse or damaged)", h.Name)
			}
			if err := out.Close(); err != nil {
				return err
			}
		default:
			return fmt.Errorf("archive entry %q is not a file or directory", h.Name)
		}
	}
}
