package azure

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/azuretest"
)

const (
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClient = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
)

func TestConformance(t *testing.T) {
	kmstest.Run(t, newHarness(t))
}

// harness drives azuretest's controls. The provider reaches the server
// under Azure's own host names (<vault>.vault.azure.net,
// login.microsoftonline.com) through a dialer that sends them to loopback,
// or, when the harness makes the endpoint unreachable, to a dead port.
type harness struct {
	srv     *azuretest.Server
	secret  string
	keyName string
	n       int
	bits    int
	down    atomic.Bool
	tr      *http.Transport
	client  *http.Client
}

func newHarness(t *testing.T) *harness {
	h := &harness{bits: 2048}
	h.secret = "Q8~" + encodeSecret(kmstest.Canary(30))
	h.srv = azuretest.NewServer(azuretest.Options{TenantID: testTenant, ClientID: testClient, ClientSecret: h.secret})
	t.Cleanup(h.srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()
	d := &net.Dialer{Timeout: 5 * time.Second}
	h.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			addr := h.srv.Addr()
			if h.down.Load() {
				addr = deadAddr
			}
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: h.srv.CertPool()},
		MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2:   true,
	}
	t.Cleanup(h.tr.CloseIdleConnections)
	h.client = &http.Client{Transport: h.tr}
	return h
}

func encodeSecret(b []byte) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = alpha[int(c)%len(alpha)]
	}
	return string(out)
}

func (h *harness) config(name string) Config {
	return Config{
		VaultURL:      h.srv.VaultURL(),
		KeyName:       name,
		TenantID:      testTenant,
		ClientID:      testClient,
		ClientSecret:  h.secret,
		Transport:     h.client,
		MaxRetries:    2,
		RetryDelay:    5 * time.Millisecond,
		MaxRetryDelay: 20 * time.Millisecond,
	}
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	h.n++
	h.keyName = "cmk-" + time.Now().Format("150405") + "-" + string(rune('a'+h.n%26)) + encodeSecret(kmstest.Canary(4))
	h.srv.CreateRSAKey(h.keyName, h.bits)
	p, err := New(h.config(h.keyName))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) reset(t testing.TB) {
	h.srv.Reset()
	h.down.Store(false)
	h.srv.SetClientSecret(h.secret)
	if h.keyName == "" {
		return
	}
	h.srv.RestoreKey(h.keyName)
	_ = h.srv.RecoverKey(h.keyName)
	for _, err := range []error{
		h.srv.SetEnabled(h.keyName, true),
		h.srv.SetNotBefore(h.keyName, nil),
		h.srv.SetExpires(h.keyName, nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	var err error
	switch s {
	case kmstest.Enabled:
	case kmstest.Disabled:
		err = h.srv.SetEnabled(h.keyName, false)
	case kmstest.Deleted:
		err = h.srv.DeleteKey(h.keyName)
	case kmstest.Expired:
		err = h.srv.SetExpires(h.keyName, ptr(time.Now().Add(-time.Hour)))
	case kmstest.NotYetActive:
		err = h.srv.SetNotBefore(h.keyName, ptr(time.Now().Add(time.Hour)))
	case kmstest.NotFound:
		err = h.srv.HideKey(h.keyName)
	case kmstest.PermissionDenied:
		for _, p := range []string{azuretest.PermGet, azuretest.PermWrapKey, azuretest.PermUnwrapKey} {
			h.srv.Deny(p, true)
		}
	case kmstest.CredentialsRejected:
		// The client secret was rotated in Azure AD: tokens are revoked
		// and ours is no longer accepted.
		h.srv.SetClientSecret(h.secret + "rotated")
	case kmstest.WrongKeyType:
		err = h.srv.ReplaceKey(h.keyName, "EC", 0)
	case kmstest.Unreachable:
		h.down.Store(true)
		h.tr.CloseIdleConnections()
	case kmstest.Throttled:
		h.srv.Throttle(true)
	case kmstest.ServerError:
		h.srv.Fail5xx(true)
	case kmstest.Timeout:
		h.srv.Stall(true)
	default:
		// PendingDeletion (Azure's soft delete is Deleted), Malformed.
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	if _, err := h.srv.RotateKey(h.keyName); err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) Secrets(testing.TB) [][]byte {
	return append(h.srv.KeyMaterial(h.keyName), []byte(h.secret))
}
