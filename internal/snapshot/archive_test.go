package snapshot

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An archive written from a snapshot directory extracts to the same
// files, which still verify against the manifest.
func TestArchiveRoundTrip(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	p, _ := s.Begin("g", "c", "s1")
	write(t, filepath.Join(p.Dir(), "keystore"), "ks")
	write(t, filepath.Join(p.Dir(), "db", "x", "000001.sst"), "table")
	m, err := p.Commit(Manifest{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteArchive(&b, s.Path("g", "c", "s1")); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "s1.tar")
	if err := os.WriteFile(archive, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := ExtractArchive(archive, out); err != nil {
		t.Fatal(err)
	}
	if err := Verify(out, m); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "db", "x", "000001.sst")); string(got) != "table" {
		t.Fatalf("extracted table %q", got)
	}
}

// FuzzExtractArchive feeds arbitrary bytes to the extraction of a
// downloaded archive: it fails or extracts, never panics, and never writes
// outside its directory.
func FuzzExtractArchive(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "db/", Mode: 0o700})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "db/x/000001.sst", Mode: 0o600, Size: 3})
	tw.Write([]byte("abc"))
	tw.Close()
	f.Add(b.Bytes())
	for _, name := range []string{"../escape", "/abs", "a/../../b", "ok/../../../c"} {
		var evil bytes.Buffer
		tw = tar.NewWriter(&evil)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: 1})
		tw.Write([]byte("x"))
		tw.Close()
		f.Add(evil.Bytes())
	}
	var link bytes.Buffer
	tw = tar.NewWriter(&link)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/etc/passwd"})
	tw.Close()
	f.Add(link.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		archive := filepath.Join(root, "a.tar")
		if err := os.WriteFile(archive, data, 0o600); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, "out")
		if err := os.Mkdir(dst, 0o700); err != nil {
			t.Fatal(err)
		}
		_ = ExtractArchive(archive, dst)
		_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || p == root || p == archive {
				return nil
			}
			if !strings.HasPrefix(p, dst) {
				t.Fatalf("extraction wrote %s outside its directory", p)
			}
			if fi.Mode()&os.ModeSymlink != 0 {
				t.Fatalf("extraction made a symlink %s", p)
			}
			return nil
		})
	})
}
