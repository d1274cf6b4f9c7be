package tlsutil

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// TestCAPersistsAndIssuesClientCertificates: a CA saved as PEM and parsed
// back issues client certificates that verify for client auth only, and a
// key that is not the certificate's is refused.
func TestCAPersistsAndIssuesClientCertificates(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCA(ca.CertPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := back.ClientCertificate("g/c/n", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "g/c/n" {
		t.Fatalf("common name %q", cert.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("client certificate does not verify: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Fatal("a client certificate verifies as a server certificate")
	}
	other, _ := NewCA("other", time.Hour)
	otherKey, _ := other.KeyPEM()
	if _, err := ParseCA(ca.CertPEM, otherKey); err == nil {
		t.Fatal("a CA certificate was accepted with another CA's key")
	}
	if _, err := ParseCA([]byte("junk"), keyPEM); err == nil {
		t.Fatal("junk accepted as a CA certificate")
	}
}
