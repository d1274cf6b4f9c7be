package vault

import (
	"fmt"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/vaulttest"
)

func TestConformance(t *testing.T) {
	srv := vaulttest.New()
	t.Cleanup(srv.Close)
	kmstest.Run(t, &harness{srv: srv})
}

// harness drives a vaulttest server. Admin actions go through the official
// client with the root token, as an operator's would; only what Vault's API
// cannot do (seal, faults, restoring a deleted key) uses Go methods.
type harness struct {
	srv   *vaulttest.Server
	n     int
	key   string
	token string
	snap  *vaulttest.KeySnapshot
	undo  func(t testing.TB)
}

func rootClient(t testing.TB, srv *vaulttest.Server) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = srv.URL
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(srv.RootToken)
	return c
}

func newTestProvider(t testing.TB, srv *vaulttest.Server, key, token string) *Provider {
	t.Helper()
	p, err := New(Config{Address: srv.URL, Token: token, Key: key, MaxAttempts: 3, Backoff: 5 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func createKey(t testing.TB, srv *vaulttest.Server, key string) {
	t.Helper()
	if _, err := rootClient(t, srv).Logical().Write("transit/keys/"+key, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	h.n++
	h.key = fmt.Sprintf("cmk-%d", h.n)
	createKey(t, h.srv, h.key)
	h.token = h.srv.NewToken(vaulttest.TransitPolicy("transit", h.key))
	return newTestProvider(t, h.srv, h.key, h.token)
}

func (h *harness) reset(t testing.TB) {
	h.srv.SetFault(vaulttest.NoFault)
	h.srv.Unseal()
	if h.undo != nil {
		h.undo(t)
		h.undo = nil
	}
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	switch s {
	case kmstest.Enabled:
	case kmstest.PermissionDenied:
		h.srv.SetPolicy(h.token, vaulttest.Policy{"transit/*": {vaulttest.CapDeny}})
		h.undo = func(testing.TB) { h.srv.SetPolicy(h.token, vaulttest.TransitPolicy("transit", h.key)) }
	case kmstest.CredentialsRejected:
		h.srv.RevokeToken(h.token)
		h.undo = func(testing.TB) { h.srv.SetPolicy(h.token, vaulttest.TransitPolicy("transit", h.key)) }
	case kmstest.WrongKeyType:
		// Deleted and re-created under the same name as an RSA key; the
		// way back restores the original from its backup.
		snap := h.backupAndDelete(t)
		if _, err := rootClient(t, h.srv).Logical().Write("transit/keys/"+h.key, map[string]any{"type": "rsa-2048"}); err != nil {
			t.Fatal(err)
		}
		h.undo = func(testing.TB) { h.srv.Restore(snap) }
	case kmstest.NotFound:
		snap := h.backupAndDelete(t)
		h.undo = func(testing.TB) { h.srv.Restore(snap) }
	case kmstest.Unreachable:
		h.srv.SetFault(vaulttest.Drop)
	case kmstest.Throttled:
		h.srv.SetFault(vaulttest.Throttle)
	case kmstest.ServerError:
		h.srv.Seal()
	case kmstest.Timeout:
		h.srv.SetFault(vaulttest.Stall)
	default:
		// Disabled, Deleted, PendingDeletion, Expired, NotYetActive,
		// Malformed: Vault transit keys have no such states (a deleted
		// key is gone: NotFound). Disabling a version for decryption
		// is min_decryption_version, tested in TestMinDecryptionVersion.
		return false
	}
	return true
}

// backupAndDelete deletes the key through the API (deletion_allowed first)
// and returns a snapshot to restore it with (transit/backup + restore).
func (h *harness) backupAndDelete(t testing.TB) *vaulttest.KeySnapshot {
	t.Helper()
	snap, err := h.srv.Snapshot(h.key)
	if err != nil {
		t.Fatal(err)
	}
	c := rootClient(t, h.srv)
	if _, err := c.Logical().Write("transit/keys/"+h.key+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logical().Delete("transit/keys/" + h.key); err != nil {
		t.Fatal(err)
	}
	return snap
}

func (h *harness) RotateKey(t testing.TB) bool {
	if _, err := rootClient(t, h.srv).Logical().Write("transit/keys/"+h.key+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) Secrets(testing.TB) [][]byte {
	return append(h.srv.KeyMaterial(h.key), []byte(h.token), []byte(h.srv.RootToken))
}
