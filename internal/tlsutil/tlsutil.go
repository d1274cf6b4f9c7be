// Package tlsutil builds the TLS configuration of cmkdb's listeners from
// certificate files, and creates a local certificate authority and server
// certificate for `cmkdb up --tls`.
//
// The local CA's private key is never written anywhere: it signs the one
// server certificate and is dropped, so reading the data directory gives no
// way to mint further certificates clients would trust. When the server
// certificate needs replacing (missing, expiring, not covering a host) a
// new CA is made and clients pick up the new ca.pem. Private keys are
// written only to files with mode 0600 and never appear in logs or errors.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
)

// File names inside the directory GenerateLocalCA and IssueServerCert use.
const (
	CAFileName   = "ca.pem"
	CertFileName = "server.pem"
	KeyFileName  = "server-key.pem"
)

// Validity of generated certificates, and how long before expiry
// EnsureLocal replaces them.
const (
	CAValidity     = 2 * 365 * 24 * time.Hour
	ServerValidity = 2 * 365 * 24 * time.Hour
	RenewBefore    = 30 * 24 * time.Hour
)

// DefaultHosts are the names every generated server certificate covers.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Files are the paths of a CA certificate, a server certificate and its key.
type Files struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// FilesIn returns the local file names inside dir.
func FilesIn(dir string) Files {
	return Files{
		CAFile:   filepath.Join(dir, CAFileName),
		CertFile: filepath.Join(dir, CertFileName),
		KeyFile:  filepath.Join(dir, KeyFileName),
	}
}

// ServerConfig loads a server certificate and key (PEM). With clientCAFile
// the server requires every client to present a certificate signed by one
// of its CAs (mutual TLS); without, clients need none.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tlsutil: a certificate file and a key file are both required")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		// LoadX509KeyPair's errors name files and PEM block types, never key bytes.
		return nil, fmt.Errorf("tlsutil: loading %s and %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pool, err := LoadCertPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig trusts the CA certificates in caFile (system roots when
// empty).
func ClientConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates from path.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsutil: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// CA is a certificate authority held in memory.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA creates a CA with an ECDSA P-256 key, valid for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generating CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"cmkdb"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// GenerateLocalCA creates a CA for this machine and writes its certificate
// (not its key) to dir/ca.pem, mode 0600; dir is created 0700.
func GenerateLocalCA(dir string) (*CA, error) {
	ca, err := NewCA("cmkdb local CA", CAValidity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsutil: %w", err)
	}
	if err := durable.WriteFile(filepath.Join(dir, CAFileName), ca.CertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("tlsutil: %w", err)
	}
	return ca, nil
}

// ServerCertificate issues a server certificate for hosts (DNS names or IP
// addresses) with a fresh ECDSA P-256 key, returned as PEM (the key in
// PKCS #8). The caller should clear keyPEM once written.
func (ca *CA) ServerCertificate(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: firstOr(hosts, "localhost"), Organization: []string{"cmkdb"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validity)
}

// issue signs tmpl (subject, names and extended key usage set by the
// caller) for a fresh ECDSA P-256 key, valid for validity but never beyond
// the CA, and returns the certificate and the key (PKCS #8) as PEM.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if ca.key == nil {
		return nil, nil, errors.New("tlsutil: CA has no private key")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: generating key: %w", err)
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: creating certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: encoding key: %w", err)
	}
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	clear(keyDER)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// IssueServerCert issues a server certificate for DefaultHosts plus hosts
// and writes it and its key to dir/server.pem and dir/server-key.pem (mode
// 0600). It returns the three file paths.
func (ca *CA) IssueServerCert(dir string, hosts ...string) (Files, error) {
	certPEM, keyPEM, err := ca.ServerCertificate(withDefaults(hosts), ServerValidity)
	if err != nil {
		return Files{}, err
	}
	defer clear(keyPEM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("tlsutil: %w", err)
	}
	f := FilesIn(dir)
	// The key first: a crash between the two leaves a key without its
	// certificate, which EnsureLocal replaces, never a certificate whose
	// key is missing or stale.
	if err := durable.WriteFile(f.KeyFile, keyPEM, 0o600); err != nil {
		return Files{}, fmt.Errorf("tlsutil: %w", err)
	}
	if err := durable.WriteFile(f.CertFile, certPEM, 0o600); err != nil {
		return Files{}, fmt.Errorf("tlsutil: %w", err)
	}
	return f, nil
}

// EnsureLocal returns usable local TLS files in dir, creating a new CA and
// server certificate unless the existing ones are valid for at least
// RenewBefore more, chain to dir/ca.pem and cover DefaultHosts plus hosts.
// created reports whether new files were written.
func EnsureLocal(dir string, hosts ...string) (f Files, created bool, err error) {
	f = FilesIn(dir)
	if checkLocal(f, withDefaults(hosts)) == nil {
		return f, false, nil
	}
	ca, err := GenerateLocalCA(dir)
	if err != nil {
		return Files{}, false, err
	}
	f, err = ca.IssueServerCert(dir, hosts...)
	return f, true, err
}

// checkLocal verifies existing local files.
func checkLocal(f Files, hosts []string) error {
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return err
	}
	pool, err := LoadCertPool(f.CAFile)
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: time.Now().Add(RenewBefore), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		return err
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return err
		}
	}
	return nil
}

func withDefaults(hosts []string) []string {
	out := append([]string(nil), DefaultHosts...)
	for _, h := range hosts {
		dup := h == ""
		for _, have := range out {
			dup = dup || have == h
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

func firstOr(s []string, def string) string {
	if len(s) > 0 && s[0] != "" {
		return s[0]
	}
	return def
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// KeyPEM returns the CA's private key (PKCS #8 PEM) so its owner can keep
// it sealed; the caller clears it once stored.
func (ca *CA) KeyPEM() ([]byte, error) {
	if ca.key == nil {
		return nil, errors.New("tlsutil: CA has no private key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: encoding CA key: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCA rebuilds a CA from its certificate and key PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, errors.New("tlsutil: CA certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, errors.New("tlsutil: CA key does not parse")
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("tlsutil: CA key does not match its certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// ClientCertificate issues a client certificate whose common name is the
// client's identity, with a fresh ECDSA P-256 key (PKCS #8 PEM).
func (ca *CA) ClientCertificate(commonName string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"cmkdb"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

// MemberCertificate issues the certificate of a replica-set member: usable
// both as a TLS server and as a TLS client (members dial each other), its
// common name the member's identity and its subject alternative names
// hosts (IP addresses or DNS names), with a fresh ECDSA P-256 key (PKCS #8
// PEM). The caller should clear keyPEM once stored.
func (ca *CA) MemberCertificate(commonName string, hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("tlsutil: a member certificate needs a common name")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"cmkdb"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl, validity)
}
