package tlsutil

import (
	"crypto/tls"
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

// TestMemberCertificate: a member certificate carries its common name and
// hosts, verifies for both server and client authentication, and is valid
// for its hosts; a CA without its key, or an empty name, issues nothing.
func TestMemberCertificate(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.MemberCertificate("cmkdb-member/p/c/m1", []string{"127.0.0.1", "node1.example", "::1", ""}, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatalf("certificate and key do not pair: %v", err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "cmkdb-member/p/c/m1" {
		t.Fatalf("common name %q", cert.Subject.CommonName)
	}
	if len(cert.IPAddresses) != 2 || len(cert.DNSNames) != 1 || cert.DNSNames[0] != "node1.example" {
		t.Fatalf("names: ips %v dns %v", cert.IPAddresses, cert.DNSNames)
	}
	if cert.IsCA {
		t.Fatal("a member certificate is a CA")
	}
	if d := cert.NotAfter.Sub(time.Now()); d > 11*time.Minute || d < 9*time.Minute {
		t.Fatalf("validity ends in %v", d)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("usage %v: %v", u, err)
		}
	}
	for _, h := range []string{"127.0.0.1", "node1.example", "::1"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Fatalf("host %s: %v", h, err)
		}
	}
	other, _ := NewCA("other", time.Hour)
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
		t.Fatal("a member certificate verifies against another CA")
	}
	if _, _, err := ca.MemberCertificate("", nil, time.Hour); err == nil {
		t.Fatal("a member certificate without a name was issued")
	}
	keyless := &CA{Cert: ca.Cert, CertPEM: ca.CertPEM}
	if _, _, err := keyless.MemberCertificate("cmkdb-member/p/c/m1", nil, time.Hour); err == nil {
		t.Fatal("a CA without its key issued a certificate")
	}
}
