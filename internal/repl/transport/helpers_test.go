package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

func newCA(t *testing.T) *tlsutil.CA {
	t.Helper()
	ca, err := tlsutil.NewCA("test control plane", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func pool(ca *tlsutil.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// memberCert issues a member certificate named cn.
func memberCert(t *testing.T, ca *tlsutil.CA, cn string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.MemberCertificate(cn, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pair(t, certPEM, keyPEM)
}

func clientCert(t *testing.T, ca *tlsutil.CA, cn string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.ClientCertificate(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pair(t, certPEM, keyPEM)
}

func pair(t *testing.T, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// logBuffer collects log output safely across goroutines; tests dump it
// when they fail.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T, level slog.Level) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: level})), b
}

// newLayer listens on 127.0.0.1:0 as member id with a certificate from ca.
func newLayer(t *testing.T, ca *tlsutil.CA, id Identity, mod ...func(*Config)) (*StreamLayer, *logBuffer) {
	t.Helper()
	logger, logs := testLogger(t, slog.LevelDebug)
	cfg := Config{TLS: memberCert(t, ca, id.CommonName()), CA: pool(ca), Self: id, Logger: logger}
	for _, m := range mod {
		m(&cfg)
	}
	l, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, logs
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
