package cpserver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

func startCP(ctx context.Context, dir string) (*Server, error) {
	return Start(ctx, Config{Dir: dir, APIAddr: "127.0.0.1:0", KeyServiceAddr: "127.0.0.1:0",
		APIHandler: func(*controlplane.Service) http.Handler { return http.NotFoundHandler() }})
}

// TestCAIsCreatedWithTheStateOnly: the first start creates the CA with the
// state; a later start without it refuses, naming the file, rather than
// issuing a new CA that no node certificate verifies against.
func TestCAIsCreatedWithTheStateOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := startCP(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	first := string(s.CA.CertPEM)
	s.Close()
	s, err = startCP(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.CA.CertPEM) != first {
		t.Fatal("the CA changed across a restart")
	}
	s.Close()
	caFile := filepath.Join(dir, "blobs", "ca.sealed")
	if err := os.Remove(caFile); err != nil {
		t.Fatal(err)
	}
	_, err = startCP(ctx, dir)
	if !errors.Is(err, controlplane.ErrUnreadableState) || !strings.Contains(err.Error(), "ca.sealed") {
		t.Fatalf("start without the CA: %v", err)
	}
	if _, err := os.Stat(caFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a new CA was created over existing state")
	}
}
