package gcp

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/gcptest"
)

func TestConformance(t *testing.T) {
	kmstest.Run(t, newHarness(t))
}

// harness drives gcptest's controls. The provider's gRPC connections go
// through a dialer the harness can switch to a dead port, and whose open
// connections it can cut, to make the endpoint unreachable.
type harness struct {
	srv      *gcptest.Server
	sa       gcptest.ServiceAccount
	keyName  string
	n        int
	deadAddr string
	down     atomic.Bool

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	providers []*Provider
}

type trackedConn struct {
	net.Conn
	h *harness
}

func (c *trackedConn) Close() error {
	c.h.mu.Lock()
	delete(c.h.conns, c)
	c.h.mu.Unlock()
	return c.Conn.Close()
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	srv, err := gcptest.NewServer(gcptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sa, err := srv.NewServiceAccount("cmkdb-node")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	return &harness{srv: srv, sa: sa, deadAddr: dead, conns: map[*trackedConn]struct{}{}}
}

func (h *harness) dial(ctx context.Context, addr string) (net.Conn, error) {
	if h.down.Load() {
		addr = h.deadAddr
	}
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, h: h}
	h.mu.Lock()
	h.conns[tc] = struct{}{}
	h.mu.Unlock()
	return tc, nil
}

// cut closes every open connection, so the client must dial again.
func (h *harness) cut() {
	h.mu.Lock()
	conns := make([]*trackedConn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// reconnect waits until every provider's connection is up again. gRPC
// keeps a channel that failed in TRANSIENT_FAILURE, failing calls at once,
// until a new connection is ready (gRFC A62); the tests that bring the
// endpoint back expect the very next call to go through.
func (h *harness) reconnect(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	ps := slices.Clone(h.providers)
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range ps {
		conn := p.client.Connection()
		conn.Connect()
		for s := conn.GetState(); s != connectivity.Ready && s != connectivity.Shutdown; s = conn.GetState() {
			if !conn.WaitForStateChange(ctx, s) {
				t.Fatalf("the provider did not reconnect: %v", s)
			}
		}
	}
}

// config is a fast configuration: short backoffs, and gRPC reconnects
// within milliseconds once the endpoint is back.
func (h *harness) config(keyName string) Config {
	return Config{
		KeyName:         keyName,
		CredentialsJSON: h.sa.JSON,
		Endpoint:        h.srv.Addr(),
		RootCAs:         h.srv.CertPool(),
		MaxAttempts:     3,
		MaxBackoff:      20 * time.Millisecond,
		dialOptions: []grpc.DialOption{
			grpc.WithContextDialer(h.dial),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 5 * time.Millisecond, Multiplier: 1.2, MaxDelay: 20 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}),
		},
	}
}

func (h *harness) open(t testing.TB, cfg Config) *Provider {
	t.Helper()
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	h.mu.Lock()
	h.providers = append(h.providers, p)
	h.mu.Unlock()
	return p
}

// newKey creates a fresh ENCRYPT_DECRYPT key and makes it the current one.
func (h *harness) newKey(t testing.TB) string {
	t.Helper()
	h.reset(t)
	h.n++
	name, err := h.srv.CreateKey(fmt.Sprintf("cmk-%d", h.n), kmspb.CryptoKey_ENCRYPT_DECRYPT)
	if err != nil {
		t.Fatal(err)
	}
	h.keyName = name
	return name
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	return h.open(t, h.config(h.newKey(t)))
}

func (h *harness) reset(t testing.TB) {
	t.Helper()
	h.srv.Reset()
	if h.down.Swap(false) {
		h.reconnect(t)
	}
	must(t, h.srv.DisableServiceAccountKey(h.sa.KeyID, false))
	if h.keyName == "" {
		return
	}
	must(t, h.srv.HideKey(h.keyName, false))
	must(t, h.srv.SetPurpose(h.keyName, kmspb.CryptoKey_ENCRYPT_DECRYPT))
	h.setAll(t, kmspb.CryptoKeyVersion_ENABLED)
}

func (h *harness) setAll(t testing.TB, st kmspb.CryptoKeyVersion_CryptoKeyVersionState) {
	t.Helper()
	for _, v := range h.srv.Versions(h.keyName) {
		must(t, h.srv.SetVersionState(v, st))
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	switch s {
	case kmstest.Enabled:
	case kmstest.Disabled:
		h.setAll(t, kmspb.CryptoKeyVersion_DISABLED)
	case kmstest.Deleted:
		h.setAll(t, kmspb.CryptoKeyVersion_DESTROYED)
	case kmstest.PendingDeletion:
		h.setAll(t, kmspb.CryptoKeyVersion_DESTROY_SCHEDULED)
	case kmstest.NotYetActive:
		h.setAll(t, kmspb.CryptoKeyVersion_PENDING_GENERATION)
	case kmstest.NotFound:
		must(t, h.srv.HideKey(h.keyName, true))
	case kmstest.PermissionDenied:
		h.srv.DenyAll(true)
	case kmstest.CredentialsRejected:
		// The service account key was disabled in IAM: the JWTs it signs
		// are refused.
		must(t, h.srv.DisableServiceAccountKey(h.sa.KeyID, true))
	case kmstest.WrongKeyType:
		must(t, h.srv.SetPurpose(h.keyName, kmspb.CryptoKey_ASYMMETRIC_SIGN))
	case kmstest.Unreachable:
		h.down.Store(true)
		h.cut()
	case kmstest.Throttled:
		h.srv.Throttle(true)
	case kmstest.ServerError:
		h.srv.Fail(codes.Internal)
	case kmstest.Timeout:
		h.srv.Stall(true)
	default:
		// Expired, Malformed: Cloud KMS keys have no expiry, and their
		// material is never handed to us.
		return false
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	if _, err := h.srv.RotateKey(h.keyName); err != nil {
		t.Fatal(err)
	}
	return true
}

// Secrets are the key versions' material and the credential in the forms
// it would leak in: the private exponent (raw, hex, base64), a line of the
// key file's PEM, and the signature of the bearer JWT on the wire. (The
// whole key DER would do too, but makes the suite's leak scan ten times
// slower for no more coverage.)
func (h *harness) Secrets(t testing.TB) [][]byte {
	out := h.srv.KeyMaterial(h.keyName)
	k, err := x509.ParsePKCS8PrivateKey(h.sa.PrivateKeyDER)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, k.(*rsa.PrivateKey).D.Bytes())
	b64 := base64.StdEncoding.EncodeToString(h.sa.PrivateKeyDER)
	out = append(out, []byte(b64[64:128]))
	if tok := h.srv.LastCall().Token; tok != "" {
		out = append(out, []byte(tok[strings.LastIndex(tok, ".")+1:]))
	}
	return out
}
