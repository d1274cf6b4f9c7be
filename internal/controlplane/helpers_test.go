package controlplane

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// grepDir returns the first file under dir containing any needle, or "".
func grepDir(t *testing.T, dir string, needles ...string) string {
	t.Helper()
	found := ""
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found != "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if n != "" && bytes.Contains(b, []byte(n)) {
				found = path
			}
		}
		return nil
	})
	return found
}
