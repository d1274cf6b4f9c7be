//go:build unix

// Package kmiptest runs the real PyKMIP server (Debian python3-pykmip) for
// tests, with mutual TLS under certificates generated on the fly.
//
// Starting PyKMIP takes a few seconds, so a test binary shares one server:
// call Shared from tests and Stop from TestMain after m.Run.
package kmiptest

import (
	"context"
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
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Paths of the interpreter and server script of the Debian package. The
// python3 on PATH may be another interpreter without the kmip package.
const (
	Python       = "/usr/bin/python3"
	ServerScript = "/usr/bin/pykmip-server"
)

// StartTimeout bounds how long the server may take to accept TLS.
const StartTimeout = 30 * time.Second

// Identity is a client certificate and its key, as PEM files.
type Identity struct {
	CertFile, KeyFile string
	CommonName        string
}

// Server is a running PyKMIP server.
type Server struct {
	Addr   string // 127.0.0.1:port
	Dir    string
	CAFile string // the CA that signed the server and the trusted clients
	// Client is the identity the tests use (PyKMIP makes its CN the owner
	// of the objects it creates).
	Client Identity
	// OtherClient is signed by the same CA under another CN.
	OtherClient Identity
	// Stranger is signed by a CA the server does not trust.
	Stranger Identity
	// DBPath is PyKMIP's SQLite database.
	DBPath string
	// LogPath is the server log.
	LogPath string
	// Startup is how long the server took to accept TLS.
	Startup time.Duration

	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// Available reports whether the PyKMIP server is installed.
func Available() bool {
	_, err := os.Stat(ServerScript)
	return err == nil
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedDir  string
)

// Shared returns the server shared by the whole test binary, starting it on
// first use. It skips the test when PyKMIP is not installed and fails it
// when the server does not start.
func Shared(t testing.TB) *Server {
	t.Helper()
	if !Available() {
		t.Skipf("%s is not installed (apt-get install python3-pykmip)", ServerScript)
	}
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "pykmip-")
		if sharedErr == nil {
			shared, sharedErr = start(sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatalf("starting PyKMIP: %v", sharedErr)
	}
	return shared
}

// Stop kills the shared server, if one was started, and removes its
// directory. Call it from TestMain after m.Run.
func Stop() {
	if shared != nil {
		shared.Kill()
	}
	if sharedDir != "" {
		_ = os.RemoveAll(sharedDir)
	}
}

// Start starts a server of the test's own in t.TempDir(), killed at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	if !Available() {
		t.Skipf("%s is not installed (apt-get install python3-pykmip)", ServerScript)
	}
	s, err := start(t.TempDir())
	if err != nil {
		t.Fatalf("starting PyKMIP: %v", err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Kill kills the server's whole process group with SIGKILL (PyKMIP's
// SIGTERM shutdown waits ~10 s on its socket timeout).
func (s *Server) Kill() {
	s.once.Do(func() {
		if s.cmd == nil || s.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	})
}

// Log returns the tail of the server log, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func start(dir string) (*Server, error) {
	s := &Server{Dir: dir, DBPath: filepath.Join(dir, "pykmip.db"), LogPath: filepath.Join(dir, "server.log")}
	if err := s.writeCerts(); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	policies := filepath.Join(dir, "policies")
	if err := os.MkdirAll(policies, 0o700); err != nil {
		return nil, err
	}
	conf := strings.Join([]string{
		"[server]",
		"hostname=127.0.0.1",
		fmt.Sprintf("port=%d", port),
		"certificate_path=" + filepath.Join(dir, "server.crt"),
		"key_path=" + filepath.Join(dir, "server.key"),
		"ca_path=" + s.CAFile,
		"auth_suite=TLS1.2",
		"policy_path=" + policies,
		"enable_tls_client_auth=True",
		"database_path=" + s.DBPath,
		"logging_level=INFO",
		"",
	}, "\n")
	confPath := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(Python, ServerScript, "-f", confPath, "-l", s.LogPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitTLS(began, s.done); err != nil {
		s.Kill()
		stdout, _ := os.ReadFile(filepath.Join(dir, "stdout.log"))
		return nil, fmt.Errorf("%w\nstdout/stderr:\n%s\nserver.log:\n%s", err, stdout, s.Log())
	}
	return s, nil
}

func (s *Server) waitTLS(began time.Time, exited <-chan struct{}) error {
	cfg, err := s.TLSConfig(s.Client)
	if err != nil {
		return err
	}
	deadline := began.Add(StartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("pykmip-server exited during startup")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d := tls.Dialer{Config: cfg}
		c, err := d.DialContext(ctx, "tcp", s.Addr)
		cancel()
		if err == nil {
			_ = c.Close()
			s.Startup = time.Since(began)
			return nil
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("pykmip-server did not accept TLS on %s within %v: %v", s.Addr, StartTimeout, last)
}

// TLSConfig is a client TLS configuration presenting id.
func (s *Server) TLSConfig(id Identity) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(id.CertFile, id.KeyFile)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial int64

func newSerial() *big.Int {
	serial++
	return big.NewInt(time.Now().UnixNano() + serial)
}

func newCA(cn string) (*issuer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return &issuer{cert, key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// issue writes name.crt and name.key, an ECDSA P-256 leaf signed by ca.
func (ca *issuer) issue(dir, name, cn string, server bool) (Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Identity{}, err
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key"), CommonName: cn}
	if err := os.WriteFile(id.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return Identity{}, err
	}
	if err := os.WriteFile(id.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func (s *Server) writeCerts() error {
	ca, caPEM, err := newCA("cmkdb test KMIP CA")
	if err != nil {
		return err
	}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	if err := os.WriteFile(s.CAFile, caPEM, 0o600); err != nil {
		return err
	}
	if _, err := ca.issue(s.Dir, "server", "localhost", true); err != nil {
		return err
	}
	if s.Client, err = ca.issue(s.Dir, "client", "cmkdb_test_client", false); err != nil {
		return err
	}
	if s.OtherClient, err = ca.issue(s.Dir, "other-client", "cmkdb_other_client", false); err != nil {
		return err
	}
	rogue, _, err := newCA("untrusted CA")
	if err != nil {
		return err
	}
	s.Stranger, err = rogue.issue(s.Dir, "stranger", "cmkdb_test_client", false)
	return err
}
