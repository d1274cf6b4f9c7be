//go:build unix

package kmip

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ovh/kmip-go"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func wantStatus(t *testing.T, p *Provider, v kms.Validity, r kms.Reason) kms.Status {
	t.Helper()
	st := p.Check(ctx(t))
	if st.Validity != v || st.Reason != r {
		t.Fatalf("Check = %v %s (%s), want %v %s", st.Validity, st.Reason, st.Detail, v, r)
	}
	return st
}

// The lifecycle through real KMIP operations only (no database edits):
// what the conformance suite does with restorable states, done the way an
// operator would, one key per state.
func TestRealKMIPLifecycle(t *testing.T) {
	srv := kmiptest.Shared(t)
	admin := adminClient(t, srv)

	t.Run("PreActive", func(t *testing.T) {
		uid, _ := createKey(t, admin, 256, false, "")
		p := newProvider(t, srv, srv.Client, "", uid)
		wantStatus(t, p, kms.Invalid, kms.ReasonKeyNotYetActive)
		if _, err := p.Wrap(ctx(t), []byte("k"), nil); !errors.Is(err, kms.ErrKeyNotYetActive) {
			t.Fatalf("Wrap = %v", err)
		}
		if _, err := admin.Activate(uid).Exec(); err != nil {
			t.Fatal(err)
		}
		st := wantStatus(t, p, kms.Valid, "")
		if st.LastRotated.IsZero() {
			t.Errorf("LastRotated not reported (KMIP Initial Date)")
		}
	})
	t.Run("AES128", func(t *testing.T) {
		uid, _ := createKey(t, admin, 128, true, "")
		wantStatus(t, newProvider(t, srv, srv.Client, "", uid), kms.Invalid, kms.ReasonWrongKeyType)
	})
	t.Run("RevokeDestroy", func(t *testing.T) {
		uid, _ := createKey(t, admin, 256, true, "")
		p := newProvider(t, srv, srv.Client, "", uid)
		w, err := p.Wrap(ctx(t), []byte("0123456789abcdef"), []byte("aad"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Revoke(uid).WithRevocationReasonCode(kmip.RevocationReasonCodeKeyCompromise).WithCompromiseOccurrenceDate(time.Now()).Exec(); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, p, kms.Invalid, kms.ReasonKeyDisabled)
		if _, err := p.Unwrap(ctx(t), w, []byte("aad")); !errors.Is(err, kms.ErrKeyDisabled) {
			t.Fatalf("Unwrap after revoke = %v", err)
		}
		if _, err := admin.Destroy(uid).Exec(); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, p, kms.Invalid, kms.ReasonKeyNotFound)
	})
	t.Run("NeverExisted", func(t *testing.T) {
		wantStatus(t, newProvider(t, srv, srv.Client, "", "999999"), kms.Invalid, kms.ReasonKeyNotFound)
	})
	t.Run("OtherOwner", func(t *testing.T) {
		// PyKMIP's default policy lets only the owner (the creator's
		// certificate CN) use a key; another client of the same CA is
		// refused. Report what the server says.
		uid, _ := createKey(t, admin, 256, true, "")
		st := newProvider(t, srv, srv.OtherClient, "", uid).Check(ctx(t))
		t.Logf("another owner: %v %s (%s)", st.Validity, st.Reason, st.Detail)
		if st.Validity != kms.Invalid || (st.Reason != kms.ReasonPermissionDenied && st.Reason != kms.ReasonKeyNotFound) {
			t.Fatalf("another owner's check = %v %s", st.Validity, st.Reason)
		}
	})
	t.Run("UntrustedClientCert", func(t *testing.T) {
		uid, _ := createKey(t, admin, 256, true, "")
		st := wantStatus(t, newProvider(t, srv, srv.Stranger, "", uid), kms.Invalid, kms.ReasonCredentialsRejected)
		key, _ := os.ReadFile(srv.Stranger.KeyFile)
		if strings.Contains(st.Detail, string(key)) || strings.Contains(st.Detail, "PRIVATE KEY") {
			t.Fatal("detail carries the client key")
		}
	})
	t.Run("UntrustedServerCert", func(t *testing.T) {
		// caFile that did not sign the server: our side refuses.
		uid, _ := createKey(t, admin, 256, true, "")
		p, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.Stranger.CertFile, ClientCertFile: srv.Client.CertFile,
			ClientKeyFile: srv.Client.KeyFile, KeyID: uid, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		wantStatus(t, p, kms.Invalid, kms.ReasonCredentialsRejected)
	})
}

func TestKeyNameAndRotation(t *testing.T) {
	srv := kmiptest.Shared(t)
	admin := adminClient(t, srv)
	name := "cmk-" + time.Now().Format("150405.000000000")
	uid1, _ := createKey(t, admin, 256, true, name)
	p, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
		ClientKeyFile: srv.Client.KeyFile, KeyName: name})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if st := wantStatus(t, p, kms.Valid, ""); st.Key.KeyID != uid1 {
		t.Fatalf("KeyName resolved to %s, want %s", st.Key.KeyID, uid1)
	}
	w1, err := p.Wrap(ctx(t), []byte("0123456789abcdef"), nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // KMIP dates have 1 s resolution
	uid2, _ := createKey(t, admin, 256, true, name)
	if st := wantStatus(t, p, kms.Valid, ""); st.Key.KeyID != uid2 {
		t.Fatalf("after rotation Check reports %s, want the newer %s", st.Key.KeyID, uid2)
	}
	if got, err := p.Unwrap(ctx(t), w1, nil); err != nil || string(got) != "0123456789abcdef" {
		t.Fatalf("old key's record: %v", err)
	}
	// A fresh provider (a restarted node) finds the old key by name too.
	p2, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
		ClientKeyFile: srv.Client.KeyFile, KeyName: name})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.Unwrap(ctx(t), w1, nil); err != nil {
		t.Fatalf("restarted provider cannot unwrap the old key's record: %v", err)
	}
	// And with keyId + previousKeyIds.
	p3, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
		ClientKeyFile: srv.Client.KeyFile, KeyID: uid2, PreviousKeyIDs: []string{uid1}})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	if _, err := p3.Unwrap(ctx(t), w1, nil); err != nil {
		t.Fatalf("previousKeyIds: %v", err)
	}
}

func TestConfigErrorsHideSecrets(t *testing.T) {
	dir := t.TempDir()
	secret := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END PRIVATE KEY-----\n"
	keyFile := filepath.Join(dir, "client.key")
	os.WriteFile(keyFile, []byte(secret), 0o600)
	os.WriteFile(filepath.Join(dir, "client.crt"), []byte("junk"), 0o600)
	for name, cfg := range map[string]Config{
		"no address": {KeyID: "1"},
		"no key":     {Address: "127.0.0.1:5696"},
		"no certs":   {Address: "127.0.0.1:5696", KeyID: "1"},
		"bad pair": {Address: "127.0.0.1:5696", KeyID: "1", CAFile: filepath.Join(dir, "client.crt"),
			ClientCertFile: filepath.Join(dir, "client.crt"), ClientKeyFile: keyFile},
	} {
		_, err := New(context.Background(), cfg)
		if err == nil {
			t.Fatalf("%s: New succeeded", name)
		}
		if strings.Contains(err.Error(), "c2VjcmV0") || bytes.Contains([]byte(err.Error()), []byte("PRIVATE KEY-----")) {
			t.Fatalf("%s: error carries the key: %v", name, err)
		}
	}
}
