package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A snapshot is listed only once committed; an interrupted one (a
// .partial- directory, as a crash leaves it) is never listed and Clean
// removes it; Verify catches a changed, a missing and an extra file;
// Delete unlists it whole.
func TestStorePublishListVerifyDelete(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	p, err := s.Begin("g", "c", "s1")
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(p.Dir(), "keystore"), "ks")
	write(t, filepath.Join(p.Dir(), "db", "x", "000001.sst"), "table")
	if l, _ := s.List("g", "c"); len(l) != 0 {
		t.Fatalf("a snapshot being written is listed: %+v", l)
	}
	m, err := p.Commit(Manifest{CreatedAt: time.Now(), DatabaseIDs: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 2 || m.SizeBytes != 7 || m.ID != "s1" {
		t.Fatalf("manifest %+v", m)
	}
	// A second one interrupted before its commit.
	p2, _ := s.Begin("g", "c", "s2")
	write(t, filepath.Join(p2.Dir(), "keystore"), "half")
	l, err := s.List("g", "c")
	if err != nil || len(l) != 1 || l[0].ID != "s1" {
		t.Fatalf("list: %+v %v", l, err)
	}
	if err := s.Clean(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p2.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Clean left the interrupted snapshot")
	}
	dir := s.Path("g", "c", "s1")
	if err := Verify(dir, m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		harm func()
		undo func()
		want string
	}{
		{"changed", func() { write(t, filepath.Join(dir, "keystore"), "kz") }, func() { write(t, filepath.Join(dir, "keystore"), "ks") }, "does not match"},
		{"extra", func() { write(t, filepath.Join(dir, "db", "x", "evil"), "x") }, func() { os.Remove(filepath.Join(dir, "db", "x", "evil")) }, "not in the manifest"},
		{"missing", func() { os.Remove(filepath.Join(dir, "db", "x", "000001.sst")) }, func() {}, "missing"},
	} {
		tc.harm()
		if err := Verify(dir, m); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s file: Verify said %v", tc.name, err)
		}
		tc.undo()
	}
	if err := s.Delete("g", "c", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("g", "c", "s1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	if _, err := s.Begin("g", "c", "../x"); err == nil {
		t.Fatal("a path in a snapshot id was accepted")
	}
	// A published directory without a manifest is damage, named, not skipped.
	write(t, filepath.Join(s.Path("g", "c", "s3"), "keystore"), "ks")
	if _, err := s.List("g", "c"); err == nil || !strings.Contains(err.Error(), "without a manifest") {
		t.Fatalf("list over a damaged snapshot: %v", err)
	}
}
