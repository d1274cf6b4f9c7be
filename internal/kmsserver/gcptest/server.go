// Package gcptest is a faithful, in-process Google Cloud KMS: a
// google.cloud.kms.v1.KeyManagementService gRPC server over TLS, for testing
// the gcp provider with the official client (cloud.google.com/go/kms/apiv1)
// end to end.
//
// What it reproduces, as the real service shows it:
//   - TLS with its own test CA (CAPEM, CertPool), valid for 127.0.0.1,
//     localhost and cloudkms.googleapis.com;
//   - authentication: it issues real service account key JSONs (RSA-2048,
//     PKCS#8) and verifies the self-signed JWT the official client sends
//     with them (RS256 signature under the key named by kid, iss = sub = the
//     account, a cloudkms or cloud-platform scope or the cloudkms audience,
//     a live iat/exp window). Anything else is refused with
//     codes.Unauthenticated and Google's own message;
//   - IAM permission checks per method (cloudkms.cryptoKeys.get,
//     cloudkms.cryptoKeyVersions.get, …useToEncrypt, …useToDecrypt) with
//     Google's PermissionDenied message;
//   - keys with versions, a primary version, purposes and version states;
//     Encrypt (on a key's primary or on a given version) and Decrypt (on
//     the key; the ciphertext names the version) with real AES-256-GCM
//     bound to the additional authenticated data;
//   - CRC32C integrity fields: request checksums are checked
//     (INVALID_ARGUMENT on mismatch) and response checksums computed;
//   - Google's error codes and messages for disabled/destroyed versions,
//     undecryptable ciphertext, missing resources, quota and outages.
//
// Test controls (Go methods) change keys and inject faults; see controls.go.
package gcptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/cmkdb/cmkdb/internal/kmsserver/faults"
)

// Options configures a Server. Zero values get defaults.
type Options struct {
	// Project, Location and KeyRing name the key ring every key lives in.
	Project  string // default "cmkdb-test"
	Location string // default "global"
	KeyRing  string // default "cmkdb"
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
}

// Server is the fake Cloud KMS.
type Server struct {
	kmspb.UnimplementedKeyManagementServiceServer

	opts  Options
	lis   net.Listener
	grpc  *grpc.Server
	caPEM []byte
	pool  *x509.CertPool
	once  sync.Once
	// Faults are the switches every faithful server shares; permissions
	// are Cloud KMS IAM permissions (Permissions()).
	Faults *faults.Switches

	mu       sync.Mutex
	keys     map[string]*cryptoKey // by resource name
	accounts map[string]*saKey     // by private_key_id
	corrupt  Corruption
	corruptN int
	calls    map[string]int
	last     Call
}

// Call is what the server saw of the latest request.
type Call struct {
	Method string
	// Principal is the service account that authenticated ("" if none).
	Principal string
	// RequestParams is the x-goog-request-params header (routing).
	RequestParams string
	// APIClient is the x-goog-api-client header (the Google client's id).
	APIClient string
	// UserAgent is the user-agent header.
	UserAgent string
	// Token is the bearer credential the request carried. Tests use it to
	// prove it never leaks.
	Token string
}

// NewServer starts a server on loopback. Close it when done.
func NewServer(opts Options) (*Server, error) {
	if opts.Project == "" {
		opts.Project = "cmkdb-test"
	}
	if opts.Location == "" {
		opts.Location = "global"
	}
	if opts.KeyRing == "" {
		opts.KeyRing = "cmkdb"
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	cert, caPEM, pool, err := newTLS()
	if err != nil {
		return nil, fmt.Errorf("gcptest: tls: %w", err)
	}
	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("gcptest: listen: %w", err)
	}
	s := &Server{
		opts:     opts,
		lis:      lis,
		caPEM:    caPEM,
		pool:     pool,
		Faults:   &faults.Switches{},
		keys:     map[string]*cryptoKey{},
		accounts: map[string]*saKey{},
		calls:    map[string]int{},
	}
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})),
		grpc.UnaryInterceptor(s.intercept),
	)
	kmspb.RegisterKeyManagementServiceServer(s.grpc, s)
	go s.grpc.Serve(lis)
	return s, nil
}

// Close stops the server, releasing stalled calls first.
func (s *Server) Close() {
	s.once.Do(func() {
		s.Faults.Close()
		s.grpc.Stop()
	})
}

// Addr is the host:port to use as the client's endpoint.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// CAPEM is the PEM of the CA that signed the server's certificate.
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// CertPool trusts the server's CA.
func (s *Server) CertPool() *x509.CertPool { return s.pool.Clone() }

// KeyRingName is the resource name of the key ring keys are created in.
func (s *Server) KeyRingName() string {
	return fmt.Sprintf("projects/%s/locations/%s/keyRings/%s", s.opts.Project, s.opts.Location, s.opts.KeyRing)
}

// newTLS makes a CA and a server certificate it signs, so clients trust
// the CA (as they would a real chain) rather than a pinned leaf.
func newTLS() (tls.Certificate, []byte, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "gcptest CA", Organization: []string{"cmkdb test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano() + 1),
		Subject:      pkix.Name{CommonName: "cloudkms.googleapis.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "cloudkms.googleapis.com"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, caPEM, pool, nil
}
