package snapshot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cmkdb/cmkdb/internal/durable"
)

// CopyTree copies the regular files under src into dst (created), each
// synced, with the private modes (files 0600, directories 0700). progress,
// if set, hears the bytes copied so far and the total after each file.
func CopyTree(ctx context.Context, src, dst string, progress func(copied, total int64)) error {
	var total, copied int64
	if progress != nil {
		_ = filepath.WalkDir(src, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					total += fi.Size()
				}
			}
			return nil
		})
		progress(0, total)
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("snapshot: %s is not a regular file", path)
		}
		if err := copyFile(path, to); err != nil {
			return err
		}
		if progress != nil {
			if fi, err := d.Info(); err == nil {
				copied += fi.Size()
			}
			progress(min(copied, total), total)
		}
		return nil
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(to))
}
