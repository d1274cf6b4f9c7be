//go:build unix

package kmiptest

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

func TestSharedServerAcceptsMutualTLS(t *testing.T) {
	s := Shared(t)
	t.Logf("PyKMIP accepted TLS after %v", s.Startup)
	cfg, err := s.TLSConfig(s.Client)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: cfg}).DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if Shared(t) != s {
		t.Fatal("Shared started a second server")
	}
}
