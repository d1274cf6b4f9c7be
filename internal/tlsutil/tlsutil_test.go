package tlsutil_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

func TestEnsureLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	f, created, err := tlsutil.EnsureLocal(dir)
	if err != nil || !created {
		t.Fatalf("EnsureLocal: %v, created=%v", err, created)
	}
	for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("tls dir holds %d files, want 3 (no CA key)", len(entries))
	}
	caPEM, _ := os.ReadFile(f.CAFile)
	if bytes.Contains(caPEM, []byte("PRIVATE KEY")) {
		t.Error("ca.pem holds a private key")
	}

	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v", leaf.PublicKeyAlgorithm)
	}
	pool, err := tlsutil.LoadCertPool(f.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("server certificate does not chain to ca.pem: %v", err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}

	// A second call reuses the files.
	before, _ := os.ReadFile(f.CertFile)
	if _, created, err := tlsutil.EnsureLocal(dir); err != nil || created {
		t.Fatalf("second EnsureLocal: %v, created=%v", err, created)
	}
	after, _ := os.ReadFile(f.CertFile)
	if !bytes.Equal(before, after) {
		t.Error("certificate replaced without reason")
	}
	// A host the certificate does not cover makes a new one.
	f2, created, err := tlsutil.EnsureLocal(dir, "db.example.test", "10.1.2.3")
	if err != nil || !created {
		t.Fatalf("EnsureLocal with new hosts: %v, created=%v", err, created)
	}
	pair, _ = tls.LoadX509KeyPair(f2.CertFile, f2.KeyFile)
	leaf, _ = x509.ParseCertificate(pair.Certificate[0])
	for _, h := range []string{"db.example.test", "10.1.2.3", "localhost"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	// A damaged key file is replaced.
	if err := os.WriteFile(f2.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, created, err := tlsutil.EnsureLocal(dir, "db.example.test", "10.1.2.3"); err != nil || !created {
		t.Fatalf("after damage: %v, created=%v", err, created)
	}
}

func TestServerConfigHandshake(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsutil.GenerateLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.IssueServerCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A client CA: the server then requires client certificates.
	clientCA, _ := tlsutil.NewCA("clients", tlsutil.CAValidity)
	clientDir := t.TempDir()
	clientCAFile := filepath.Join(clientDir, "clients.pem")
	if err := os.WriteFile(clientCAFile, clientCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mutual := range []bool{false, true} {
		caFile := ""
		if mutual {
			caFile = clientCAFile
		}
		srvCfg, err := tlsutil.ServerConfig(f.CertFile, f.KeyFile, caFile)
		if err != nil {
			t.Fatal(err)
		}
		cliCfg, err := tlsutil.ClientConfig(f.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		cliCfg.ServerName = "localhost"
		errNoCert := handshake(t, srvCfg, cliCfg)
		if mutual && errNoCert == nil {
			t.Error("mutual TLS accepted a client without a certificate")
		}
		if !mutual && errNoCert != nil {
			t.Errorf("handshake: %v", errNoCert)
		}
		if mutual {
			// Issue a client certificate from the client CA (server-auth
			// EKU is what ServerCertificate sets, so build a client pair).
			certPEM, keyPEM, err := clientCA.ServerCertificate([]string{"client"}, tlsutil.ServerValidity)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cliCfg.Certificates = []tls.Certificate{pair}
			// The server demands ClientAuth EKU; a server-auth-only
			// certificate is refused, which is what mutual TLS should do.
			if err := handshake(t, srvCfg, cliCfg); err == nil {
				t.Error("a certificate without clientAuth usage was accepted")
			}
		}
	}
	if _, err := tlsutil.ServerConfig(f.CertFile, "", ""); err == nil {
		t.Error("missing key file accepted")
	}
	// The key file holds one PKCS #8 key and nothing else.
	keyPEM, _ := os.ReadFile(f.KeyFile)
	b, rest := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Errorf("unexpected key file layout")
	}
}

func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		srvErr <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cliCfg)
	if err == nil {
		// TLS 1.3 client certificates are checked after the client's
		// handshake returns: read to learn the server's verdict.
		_ = c.SetReadDeadline(timeNowPlus())
		_, err = c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); (ok && ne.Timeout()) || errors.Is(err, io.EOF) {
			err = nil
		}
		c.Close()
	}
	if serr := <-srvErr; serr != nil {
		return serr
	}
	return err
}

func timeNowPlus() time.Time { return time.Now().Add(200 * time.Millisecond) }
