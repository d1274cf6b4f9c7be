//go:build unix

package kmip

import (
	"context"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kmiptest.Stop()
	os.Exit(code)
}

// adminClient is the operator's client: the official kmip-go client with
// the same identity as the provider (PyKMIP makes the creator the owner).
func adminClient(t testing.TB, srv *kmiptest.Server) *kmipclient.Client {
	t.Helper()
	c, err := kmipclient.Dial(srv.Addr, kmipclient.WithRootCAFile(srv.CAFile),
		kmipclient.WithClientCertFiles(srv.Client.CertFile, srv.Client.KeyFile))
	if err != nil {
		t.Fatalf("dial PyKMIP: %v\n%s", err, srv.Log())
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// createKey creates an AES key of the given size, activated or not, and
// returns its uid and material.
func createKey(t testing.TB, c *kmipclient.Client, bits int, activate bool, name string) (string, []byte) {
	t.Helper()
	ex := c.Create().AES(bits, kmip.CryptographicUsageEncrypt|kmip.CryptographicUsageDecrypt)
	if name != "" {
		ex = ex.WithName(name)
	}
	resp, err := ex.Exec()
	if err != nil {
		t.Fatalf("create AES-%d: %v", bits, err)
	}
	uid := resp.UniqueIdentifier
	got, err := c.Get(uid).Exec()
	if err != nil {
		t.Fatalf("get %s: %v", uid, err)
	}
	var material []byte
	if sk, ok := got.Object.(*kmip.SymmetricKey); ok {
		material, _ = sk.KeyMaterial()
	}
	if activate {
		if _, err := c.Activate(uid).Exec(); err != nil {
			t.Fatalf("activate %s: %v", uid, err)
		}
	}
	return uid, material
}

func newProvider(t testing.TB, srv *kmiptest.Server, id kmiptest.Identity, addr, uid string) *Provider {
	t.Helper()
	if addr == "" {
		addr = srv.Addr
	}
	p, err := New(context.Background(), Config{
		Address: addr, CAFile: srv.CAFile, ClientCertFile: id.CertFile, ClientKeyFile: id.KeyFile,
		KeyID: uid, Timeout: 5 * time.Second, MaxAttempts: 3, Backoff: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// swappable lets the harness change what stands between the suite and the
// key (credentials, network) without the suite's provider changing.
type swappable struct{ cur atomic.Pointer[Provider] }

func (s *swappable) Wrap(ctx context.Context, pt, aad []byte) (kms.Wrapped, error) {
	return s.cur.Load().Wrap(ctx, pt, aad)
}

func (s *swappable) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	return s.cur.Load().Unwrap(ctx, w, aad)
}
func (s *swappable) Check(ctx context.Context) kms.Status { return s.cur.Load().Check(ctx) }

type harness struct {
	srv     *kmiptest.Server
	admin   *kmipclient.Client
	mu      sync.Mutex
	sw      *swappable
	main    *Provider
	uid     string
	secrets [][]byte
	undo    func(t testing.TB)
}

func (h *harness) reset(t testing.TB) {
	if h.undo != nil {
		h.undo(t)
		h.undo = nil
	}
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	uid, material := createKey(t, h.admin, 256, true, "")
	h.uid = uid
	h.secrets = [][]byte{material}
	h.main = newProvider(t, h.srv, h.srv.Client, "", uid)
	h.sw = &swappable{}
	h.sw.cur.Store(h.main)
	return h.sw
}

func (h *harness) Secrets(t testing.TB) [][]byte {
	out := append([][]byte(nil), h.secrets...)
	// The client's private key is a credential: never in an error.
	for _, f := range []string{h.srv.Client.KeyFile, h.srv.Stranger.KeyFile, h.srv.OtherClient.KeyFile} {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, b)
		}
	}
	return out
}

func (h *harness) dbState(t testing.TB, state int) {
	t.Helper()
	if err := h.srv.SetState(h.uid, state); err != nil {
		t.Fatal(err)
	}
	uid := h.uid
	h.undo = func(t testing.TB) {
		if err := h.srv.SetState(uid, kmiptest.StateActive); err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) swap(t testing.TB, p *Provider) {
	h.sw.cur.Store(p)
	h.undo = func(testing.TB) { h.sw.cur.Store(h.main) }
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	t.Helper()
	h.reset(t)
	switch s {
	case kmstest.Enabled:
		return true
	case kmstest.Disabled:
		// A real Revoke: Active → Deactivated. KMIP has no way back, so
		// the undo edits PyKMIP's database.
		if _, err := h.admin.Revoke(h.uid).WithRevocationReasonCode(kmip.RevocationReasonCodeCessationOfOperation).Exec(); err != nil {
			t.Fatal(err)
		}
		uid := h.uid
		h.undo = func(t testing.TB) {
			if err := h.srv.SetState(uid, kmiptest.StateActive); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.NotFound:
		// A real Revoke + Destroy: PyKMIP deletes the object.
		restore, err := h.srv.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.Revoke(h.uid).WithRevocationReasonCode(kmip.RevocationReasonCodeKeyCompromise).WithCompromiseOccurrenceDate(time.Now()).Exec(); err != nil {
			t.Fatal(err)
		}
		if _, err := h.admin.Destroy(h.uid).Exec(); err != nil {
			t.Fatal(err)
		}
		h.undo = func(t testing.TB) {
			if err := restore(); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.Deleted:
		// KMIP's Destroyed state (a server that keeps the metadata of a
		// destroyed key); PyKMIP deletes instead, so set it in its DB.
		h.dbState(t, kmiptest.StateDestroyed)
	case kmstest.NotYetActive:
		h.dbState(t, kmiptest.StatePreActive)
	case kmstest.WrongKeyType:
		uid := h.uid
		if err := h.srv.SetCryptographicLength(uid, 128); err != nil {
			t.Fatal(err)
		}
		h.undo = func(t testing.TB) {
			if err := h.srv.SetCryptographicLength(uid, 256); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.PermissionDenied:
		// Another client of the trusted CA: PyKMIP's default policy lets
		// only the key's owner use it, and answers PermissionDenied.
		h.swap(t, newProvider(t, h.srv, h.srv.OtherClient, "", h.uid))
	case kmstest.CredentialsRejected:
		h.swap(t, newProvider(t, h.srv, h.srv.Stranger, "", h.uid))
	case kmstest.Unreachable:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		h.swap(t, newProvider(t, h.srv, h.srv.Client, addr, h.uid))
	case kmstest.Timeout:
		// A peer that accepts TCP and never answers the TLS handshake.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var cmu sync.Mutex
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				cmu.Lock()
				conns = append(conns, c)
				cmu.Unlock()
			}
		}()
		h.swap(t, newProvider(t, h.srv, h.srv.Client, l.Addr().String(), h.uid))
		prev := h.undo
		h.undo = func(t testing.TB) {
			prev(t)
			l.Close()
			cmu.Lock()
			for _, c := range conns {
				c.Close()
			}
			cmu.Unlock()
		}
	default:
		return false
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	uid, material := createKey(t, h.admin, 256, true, "")
	h.uid = uid
	h.secrets = append(h.secrets, material)
	h.main.SetKeyID(uid)
	return true
}

func TestConformance(t *testing.T) {
	srv := kmiptest.Shared(t)
	t.Logf("PyKMIP started in %v", srv.Startup)
	kmstest.Run(t, &harness{srv: srv, admin: adminClient(t, srv)})
}
