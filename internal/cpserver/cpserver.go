// Package cpserver runs a control plane: the controlplane.Service, its
// certificate authority, the admin API listener and the node key service
// listener (mutual TLS), and webhook delivery. `cmkdb controlplane` and
// `cmkdb up` both run it; nodes reach it only through its listeners.
package cpserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
	"github.com/cmkdb/cmkdb/internal/webhook"
)

// Config of a control plane.
type Config struct {
	// Dir holds the control plane's state.
	Dir string
	// APIAddr and KeyServiceAddr are host:port to listen on (port 0 picks one).
	APIAddr        string
	KeyServiceAddr string
	// APIListener, when set, is used instead of listening on APIAddr
	// (cmkdb up keeps its admin API port across restarts).
	APIListener net.Listener
	// APIHandler builds the admin API's handler (package atlasapi).
	APIHandler func(*controlplane.Service) http.Handler
	// APITLS serves the admin API over TLS when set.
	APITLS *tls.Config
	// KeyServiceHosts are extra names or IPs the key service certificate covers.
	KeyServiceHosts  []string
	MinCheckInterval time.Duration
	// ProviderPaths are the directories provider files may be in.
	ProviderPaths []string
	// AllowPrivateWebhooks lets alerts go to loopback and private
	// addresses (link-local and metadata ones are always refused).
	AllowPrivateWebhooks bool
	// BaseDir is what relative provider file paths are relative to
	// (default Dir).
	BaseDir string
	Logger  *slog.Logger
}

// Server is a running control plane.
type Server struct {
	Svc *controlplane.Service
	CA  *tlsutil.CA
	// CAFile is the CA certificate (public) nodes and API clients trust.
	CAFile        string
	APIURL        string
	KeyServiceURL string

	sender      *webhook.Sender
	api, keySrv *http.Server
	log         *slog.Logger
}

// CA validity and the validity of certificates it issues.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certValidity = 2 * 365 * 24 * time.Hour
)

// notifier adapts the webhook sender to controlplane.Notifier. Sends are
// queued from a goroutine: the service calls it while holding its lock.
type notifier struct{ s *webhook.Sender }

func (n notifier) Notify(ctx context.Context, url string, secret, body []byte, id string) {
	d := webhook.Delivery{URL: url, Secret: secret, Body: body, ID: id, Event: "alert"}
	go func() { _ = n.s.Send(context.WithoutCancel(ctx), d) }()
}

// Start opens the control plane in cfg.Dir and starts its listeners.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	sender := webhook.New(webhook.Options{Logger: log, AllowPrivate: cfg.AllowPrivateWebhooks})
	// The CA is created with the state, before the new store commits:
	// existing state without its CA is refused, never given a new CA
	// (every node certificate would stop verifying).
	svc, err := controlplane.Open(ctx, controlplane.Options{Dir: cfg.Dir, Logger: log, Notifier: notifier{sender},
		MinCheckInterval: cfg.MinCheckInterval, ProviderPaths: cfg.ProviderPaths, BaseDir: cfg.BaseDir,
		AllowPrivateWebhooks: cfg.AllowPrivateWebhooks,
		OnCreate:             func() error { _, err := loadCA(cfg.Dir, true); return err }})
	if err != nil {
		_ = sender.Close(ctx)
		return nil, err
	}
	// From here on, log through the service: it scrubs credentials.
	s := &Server{Svc: svc, sender: sender, log: svc.Logger()}
	if err := s.start(ctx, cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context, cfg Config) error {
	ca, err := LoadCA(cfg.Dir)
	if err != nil {
		return err
	}
	s.CA = ca
	s.CAFile = filepath.Join(cfg.Dir, "ca.pem")
	if err := durable.WriteFile(s.CAFile, ca.CertPEM, 0o600); err != nil {
		return err
	}

	// Key service: TLS 1.3, client certificates from our CA required.
	hosts := append([]string{"127.0.0.1", "localhost", "::1"}, cfg.KeyServiceHosts...)
	certPEM, keyPEM, err := ca.ServerCertificate(hosts, certValidity)
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	clear(keyPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ksLn, err := net.Listen("tcp", cfg.KeyServiceAddr)
	if err != nil {
		return fmt.Errorf("controlplane: key service listen: %w", err)
	}
	ksTLS := &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13}
	s.keySrv = &http.Server{Handler: keyservice.NewServer(s.Svc, s.log), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.KeyServiceURL = "https://" + ksLn.Addr().String()
	go func() { _ = s.keySrv.Serve(tls.NewListener(ksLn, ksTLS)) }()

	apiLn := cfg.APIListener
	if apiLn == nil {
		if apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
			return fmt.Errorf("controlplane: admin API listen: %w", err)
		}
	}
	s.api = &http.Server{Handler: cfg.APIHandler(s.Svc), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	scheme := "http"
	if cfg.APITLS != nil {
		scheme = "https"
		apiLn = tls.NewListener(apiLn, cfg.APITLS)
	}
	s.APIURL = scheme + "://" + apiLn.Addr().String()
	go func() {
		if err := s.api.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API", "err", err)
		}
	}()
	return nil
}

// LoadCA returns the control plane's CA, kept sealed in its directory
// (certificate and key in one blob, so a crash cannot separate them). It
// is created with the control plane's state (Start); a missing CA is an
// error, never replaced.
func LoadCA(dir string) (*tlsutil.CA, error) { return loadCA(dir, false) }

func loadCA(dir string, create bool) (*tlsutil.CA, error) {
	type caBlob struct{ Cert, Key []byte }
	newCA := func() ([]byte, error) {
		ca, err := tlsutil.NewCA("cmkdb control plane CA", caValidity)
		if err != nil {
			return nil, err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		defer clear(key)
		return json.Marshal(caBlob{Cert: ca.CertPEM, Key: key})
	}
	if !create {
		newCA = nil
	}
	raw, err := controlplane.Blob(dir, "ca", newCA)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	var b caBlob
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("controlplane: CA blob: %w", err)
	}
	defer clear(b.Key)
	return tlsutil.ParseCA(b.Cert, b.Key)
}

// NodeClient returns a key service client for a node identity, with a
// certificate issued in memory (in-process nodes).
func (s *Server) NodeClient(id controlplane.NodeID) (*keyservice.Client, error) {
	certPEM, keyPEM, err := s.CA.ClientCertificate(id.String(), certValidity)
	if err != nil {
		return nil, err
	}
	defer clear(keyPEM)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	return keyservice.NewClient(s.KeyServiceURL, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS13})
}

// IssueNodeCert writes a node certificate and key (0600) for a node that
// runs as its own process (`cmkdb node` with kms.controlPlane).
func IssueNodeCert(ca *tlsutil.CA, id controlplane.NodeID, dir string) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := ca.ClientCertificate(id.String(), certValidity)
	if err != nil {
		return "", "", err
	}
	defer clear(keyPEM)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	if err := durable.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, durable.WriteFile(certFile, certPEM, 0o600)
}

// Close stops the listeners and the service.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.api != nil {
		_ = s.api.Shutdown(ctx)
	}
	if s.keySrv != nil {
		_ = s.keySrv.Close() // long-polls would hold a graceful shutdown
	}
	_ = s.Svc.Close()
	_ = s.sender.Close(ctx)
}
