package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestRelativeProviderPaths: a provider file stored relative to BaseDir
// is resolved against the BaseDir of the control plane that runs: a copy
// of the whole directory uses its own key file.
func TestRelativeProviderPaths(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	keyFile := filepath.Join(base, "kms", "cmk.json")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Create(keyFile); err != nil {
		t.Fatal(err)
	}
	open := func(base string) *Service {
		s, err := Open(ctx, Options{Dir: filepath.Join(base, "cp"), BaseDir: base, ProviderPaths: []string{filepath.Join(base, "kms")}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(base)
	g, err := s.CreateGroup(ctx, "t", "P", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patch(t, s, g.ID, `{"local":{"enabled":true,"keyFile":"kms/cmk.json"}}`); err != nil {
		t.Fatalf("relative key file refused: %v", err)
	}
	if p, ok := s.ProviderFile(g.ID, "keyFile"); !ok || p != keyFile {
		t.Fatalf("key file in use %q, want %q", p, keyFile)
	}
	if _, err := patch(t, s, g.ID, `{"local":{"enabled":true,"keyFile":"../outside.json"}}`); err == nil {
		t.Fatal("a relative path leaving the allowed directories was accepted")
	}
	s.Close()

	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(base, moved); err != nil {
		t.Fatal(err)
	}
	s2 := open(moved)
	defer s2.Close()
	if p, _ := s2.ProviderFile(g.ID, "keyFile"); p != filepath.Join(moved, "kms", "cmk.json") {
		t.Fatalf("after the move the key file in use is %q", p)
	}
	if st, err := s2.CheckNow(ctx, g.ID); err != nil || st.Validity != "VALID" {
		t.Fatalf("check after the move: %+v %v", st, err)
	}
}
