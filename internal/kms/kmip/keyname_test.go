//go:build unix

package kmip

import (
	"errors"
	"testing"
	"time"

	"github.com/ovh/kmip-go"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
)

func uniqueName(prefix string) string { return prefix + "-" + time.Now().Format("150405.000000000") }

// A provider naming its key by KeyName starts while the KMIP server is
// down (New never contacts it): Check, Wrap and Unwrap say UNREACHABLE —
// Unwrap in particular does not call the node's record foreign, which would
// keep the node from starting — and once the server answers at the same
// address, the name resolves and the key wraps and unwraps.
func TestKeyNameResolvedOnceServerAnswers(t *testing.T) {
	srv := kmiptest.Shared(t)
	admin := adminClient(t, srv)
	name := uniqueName("down-at-start")
	uid, _ := createKey(t, admin, 256, true, name)
	// The node's master key record, wrapped before the restart.
	aad := []byte("node master key")
	rec, err := newProvider(t, srv, srv.Client, "", uid).Wrap(ctx(t), []byte("0123456789abcdef0123456789abcdef"), aad)
	if err != nil {
		t.Fatal(err)
	}

	relay := kmiptest.NewRelay(t, srv.Addr) // down: the address refuses connections
	p, err := New(ctx(t), Config{Address: relay.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
		ClientKeyFile: srv.Client.KeyFile, KeyName: name, Timeout: 5 * time.Second, MaxAttempts: 2, Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("New with the KMIP server down: %v", err)
	}
	t.Cleanup(func() { p.Close() })

	unreachable := func(when string) {
		t.Helper()
		st := wantStatus(t, p, kms.Unreachable, kms.ReasonNetwork)
		if st.Key.KeyID != "name:"+name && st.Key.KeyID != uid {
			t.Errorf("%s: Check names key %q", when, st.Key.KeyID)
		}
		for op, err := range map[string]error{
			"wrap":   func() error { _, err := p.Wrap(ctx(t), []byte("k"), nil); return err }(),
			"unwrap": func() error { _, err := p.Unwrap(ctx(t), rec, aad); return err }(),
		} {
			if !errors.Is(err, kms.ErrUnreachable) || errors.Is(err, kms.ErrDecrypt) {
				t.Errorf("%s: %s = %v, want UNREACHABLE (and not a decrypt failure)", when, op, err)
			}
		}
	}
	unreachable("server down at start")

	relay.Up(t)
	// The first use after the server comes back resolves the name: here
	// an Unwrap, as a node re-enabling itself does.
	got, err := p.Unwrap(ctx(t), rec, aad)
	if err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("Unwrap once the server answers: %q %v", got, err)
	}
	if st := wantStatus(t, p, kms.Valid, ""); st.Key.KeyID != uid {
		t.Fatalf("Check resolved %s to %q, want %s", name, st.Key.KeyID, uid)
	}
	w, err := p.Wrap(ctx(t), []byte("fresh"), nil)
	if err != nil || w.Key.KeyID != uid {
		t.Fatalf("Wrap once the server answers: %+v %v", w.Key, err)
	}
	if got, err := p.Unwrap(ctx(t), w, nil); err != nil || string(got) != "fresh" {
		t.Fatalf("round trip: %q %v", got, err)
	}

	// Down again (its connection dropped) and back: every Check asks anew.
	relay.Down()
	unreachable("server down after resolution")
	relay.Up(t)
	wantStatus(t, p, kms.Valid, "")
}

// Only a fresh provider whose first use is Wrap: the name resolves there.
func TestKeyNameResolvedByWrap(t *testing.T) {
	srv := kmiptest.Shared(t)
	admin := adminClient(t, srv)
	name := uniqueName("wrap-first")
	uid, _ := createKey(t, admin, 256, true, name)
	p, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
		ClientKeyFile: srv.Client.KeyFile, KeyName: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	w, err := p.Wrap(ctx(t), []byte("k"), nil)
	if err != nil || w.Key.KeyID != uid {
		t.Fatalf("Wrap = %+v %v, want key %s", w.Key, err, uid)
	}
}

// What the server answers about the name is not a reason to refuse to
// start either — a node whose key was revoked or destroyed while it was
// down starts DISABLED, as with every other provider — and it is reported
// with the key's own reason, by Check and by Unwrap of a record the key
// wrapped.
func TestKeyNameInvalidAnswers(t *testing.T) {
	srv := kmiptest.Shared(t)
	admin := adminClient(t, srv)
	cases := []struct {
		name  string
		setup func(t *testing.T, name string) kms.Wrapped // the record a node holds, if any
		want  kms.Reason
	}{
		{"no such name", func(*testing.T, string) kms.Wrapped { return kms.Wrapped{} }, kms.ReasonKeyNotFound},
		{"revoked", func(t *testing.T, name string) kms.Wrapped {
			uid, _ := createKey(t, admin, 256, true, name)
			w, err := newProvider(t, srv, srv.Client, "", uid).Wrap(ctx(t), []byte("k"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := admin.Revoke(uid).WithRevocationReasonCode(kmip.RevocationReasonCodeCessationOfOperation).Exec(); err != nil {
				t.Fatal(err)
			}
			return w
		}, kms.ReasonKeyDisabled},
		{"AES-128", func(t *testing.T, name string) kms.Wrapped {
			createKey(t, admin, 128, true, name)
			return kms.Wrapped{}
		}, kms.ReasonWrongKeyType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := uniqueName("invalid")
			rec := c.setup(t, name)
			p, err := New(ctx(t), Config{Address: srv.Addr, CAFile: srv.CAFile, ClientCertFile: srv.Client.CertFile,
				ClientKeyFile: srv.Client.KeyFile, KeyName: name})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			t.Cleanup(func() { p.Close() })
			wantStatus(t, p, kms.Invalid, c.want)
			if _, err := p.Wrap(ctx(t), []byte("k"), nil); kms.ReasonOf(err) != c.want {
				t.Errorf("Wrap = %v, want %s", err, c.want)
			}
			if rec.Key.KeyID != "" {
				if _, err := p.Unwrap(ctx(t), rec, nil); kms.ReasonOf(err) != c.want || errors.Is(err, kms.ErrDecrypt) {
					t.Errorf("Unwrap of the key's record = %v, want %s", err, c.want)
				}
			}
		})
	}
}
