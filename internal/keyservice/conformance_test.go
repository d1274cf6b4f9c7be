package keyservice_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// TestConformance runs the provider conformance suite against a node's view
// of its CMK: keyservice.Client over mutual TLS to a real control plane
// whose project uses a local key file. Key states are set on the key file
// and seen through a control plane check, as a node sees them; outages are
// the key service's own (down, stalled, 5xx, 429, a certificate from
// another CA).
func TestConformance(t *testing.T) {
	kmstest.Run(t, &harness{})
}

type fault int32

const (
	faultNone fault = iota
	faultStall
	fault5xx
	fault429
)

type harness struct {
	svc     *controlplane.Service
	gid     string
	keyFile string
	fault   atomic.Int32
	// client is the provider the suite holds; switched to simulate an
	// unreachable service or rejected credentials.
	p                   *switchable
	good, dead, foreign *keyservice.Client
}

// switchable is the provider the suite sees.
type switchable struct {
	cur atomic.Pointer[keyservice.Client]
}

func (s *switchable) Wrap(ctx context.Context, pt, aad []byte) (kms.Wrapped, error) {
	return s.cur.Load().Wrap(ctx, pt, aad)
}
func (s *switchable) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	return s.cur.Load().Unwrap(ctx, w, aad)
}
func (s *switchable) Check(ctx context.Context) kms.Status { return s.cur.Load().Check(ctx) }

func (h *harness) Provider(t testing.TB) kms.Provider {
	ctx := context.Background()
	dir := t.TempDir()
	svc, err := controlplane.Open(ctx, controlplane.Options{Dir: filepath.Join(dir, "cp"), ProviderPaths: []string{dir},
		MinCheckInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	h.svc, h.keyFile = svc, filepath.Join(dir, "cmk.json")
	if _, err := local.Create(h.keyFile); err != nil {
		t.Fatal(err)
	}
	g, err := svc.CreateGroup(ctx, "test", "conformance", "")
	if err != nil {
		t.Fatal(err)
	}
	h.gid = g.ID
	p, err := controlplane.ParseEARPatch(fmt.Appendf(nil, `{"local":{"keyFile":%q}}`, h.keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.PatchEncryptionAtRest(ctx, "test", g.ID, p); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateCluster(ctx, "test", g.ID, controlplane.Cluster{Name: "C0", EncryptionAtRestProvider: controlplane.ProviderLocal}); err != nil {
		t.Fatal(err)
	}

	ca, err := tlsutil.NewCA("test control plane", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.fault.Store(int32(faultNone))
	inner := keyservice.NewServer(svc, nil)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch fault(h.fault.Load()) {
		case faultStall:
			// Read the body first: only then does the server notice the
			// client giving up and cancel r.Context().
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			// A stalled service never answers: drop the connection
			// rather than let the server send an empty 200.
			panic(http.ErrAbortHandler)
		case fault5xx:
			http.Error(w, "upstream failure", http.StatusBadGateway)
			return
		case fault429:
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	certPEM, keyPEM, err := ca.ServerCertificate([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	client := func(ca *tlsutil.CA, url string) *keyservice.Client {
		certPEM, keyPEM, err := ca.ClientCertificate(g.ID+"/C0/n1", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		c, err := keyservice.NewClient(url, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	other, err := tlsutil.NewCA("another control plane", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h.good = client(ca, srv.URL)
	h.foreign = client(other, srv.URL)
	h.dead = client(ca, "https://127.0.0.1:1")
	h.p = &switchable{}
	h.p.cur.Store(h.good)
	return h.p
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	must := func(_ local.Info, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Start every state from an enabled key and a healthy service.
	h.fault.Store(int32(faultNone))
	h.p.cur.Store(h.good)
	if in, err := local.Inspect(h.keyFile); err == nil && (in.State == local.StateDeleted || in.State == local.StatePendingDeletion) {
		must(local.Restore(h.keyFile))
	}
	must(local.Enable(h.keyFile))
	must(local.SetValidity(h.keyFile, time.Time{}, time.Time{}))
	switch s {
	case kmstest.Enabled:
	case kmstest.Disabled:
		must(local.Disable(h.keyFile))
	case kmstest.Deleted:
		must(local.Delete(h.keyFile))
	case kmstest.PendingDeletion:
		must(local.ScheduleDeletion(h.keyFile))
	case kmstest.Expired:
		must(local.SetValidity(h.keyFile, time.Time{}, time.Now().Add(-time.Hour)))
	case kmstest.NotYetActive:
		must(local.SetValidity(h.keyFile, time.Now().Add(time.Hour), time.Time{}))
	case kmstest.Unreachable:
		h.p.cur.Store(h.dead)
		return true
	case kmstest.CredentialsRejected:
		h.p.cur.Store(h.foreign)
		return true
	case kmstest.Timeout:
		h.fault.Store(int32(faultStall))
		return true
	case kmstest.ServerError:
		h.fault.Store(int32(fault5xx))
		return true
	case kmstest.Throttled:
		h.fault.Store(int32(fault429))
		return true
	default:
		return false
	}
	// The node learns the key's state from the control plane's check.
	if _, err := h.svc.CheckNow(context.Background(), h.gid); err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	if _, err := local.Rotate(h.keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.CheckNow(context.Background(), h.gid); err != nil {
		t.Fatal(err)
	}
	return true
}
