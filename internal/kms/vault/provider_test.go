package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/vaulttest"
)

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// setup starts a server with one aes256-gcm96 key and a least-privilege
// token for it.
func setup(t *testing.T) (*vaulttest.Server, *Provider, string) {
	t.Helper()
	srv := vaulttest.New()
	t.Cleanup(srv.Close)
	createKey(t, srv, "cmk")
	token := srv.NewToken(vaulttest.TransitPolicy("transit", "cmk"))
	return srv, newTestProvider(t, srv, "cmk", token), token
}

func TestRotationKeepsOldVersionsAndReportsNewOne(t *testing.T) {
	srv, p, _ := setup(t)
	ctx := ctxT(t, 10*time.Second)
	pt, aad := kmstest.Canary(32), []byte("cluster/c1")
	st1 := p.Check(ctx)
	if st1.Validity != kms.Valid || st1.Key.KeyVersion != "1" || st1.Key.KeyID != "transit/cmk" || st1.Key.Provider != "vault" {
		t.Fatalf("Check = %+v", st1)
	}
	if st1.LastRotated.IsZero() || time.Since(st1.LastRotated) > time.Minute {
		t.Fatalf("LastRotated = %v", st1.LastRotated)
	}
	w1, err := p.Wrap(ctx, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(w1.Ciphertext), "vault:v1:") || w1.Key.KeyVersion != "1" {
		t.Fatalf("w1 = %s %q", w1.Key, w1.Ciphertext[:9])
	}
	time.Sleep(1100 * time.Millisecond) // key times have one-second resolution
	if _, err := rootClient(t, srv).Logical().Write("transit/keys/cmk/rotate", nil); err != nil {
		t.Fatal(err)
	}
	st2 := p.Check(ctx)
	if st2.Validity != kms.Valid || st2.Key.KeyVersion != "2" {
		t.Fatalf("after rotation Check = %+v", st2)
	}
	if !st2.LastRotated.After(st1.LastRotated) {
		t.Errorf("LastRotated %v not after %v", st2.LastRotated, st1.LastRotated)
	}
	w2, err := p.Wrap(ctx, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Key.KeyVersion != "2" || !strings.HasPrefix(string(w2.Ciphertext), "vault:v2:") {
		t.Fatalf("w2 = %s", w2.Key)
	}
	for _, w := range []kms.Wrapped{w1, w2} {
		got, err := p.Unwrap(ctx, w, aad)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Unwrap %s: %v", w.Key, err)
		}
	}
}

func TestMinDecryptionVersionDisablesOldCiphertext(t *testing.T) {
	srv, p, _ := setup(t)
	ctx := ctxT(t, 10*time.Second)
	root := rootClient(t, srv)
	pt, aad := kmstest.Canary(32), []byte("cluster/c1")
	w1, err := p.Wrap(ctx, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("transit/keys/cmk/rotate", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().Write("transit/keys/cmk/config", map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatal(err)
	}
	out, err := p.Unwrap(ctx, w1, aad)
	if err == nil || len(out) != 0 {
		t.Fatalf("v1 ciphertext unwrapped below min_decryption_version (err=%v)", err)
	}
	if !errors.Is(err, kms.ErrKeyDisabled) || !errors.Is(err, kms.ErrInvalid) || errors.Is(err, kms.ErrDecrypt) {
		t.Fatalf("error %v: want KEY_DISABLED (INVALID), not ErrDecrypt", err)
	}
	if kms.ReasonOf(err) != kms.ReasonKeyDisabled {
		t.Fatalf("ReasonOf = %s", kms.ReasonOf(err))
	}
	kmstest.AssertErrorHidesSecrets(t, "too old", err, pt)
	// The key itself still works at version 2.
	if st := p.Check(ctx); st.Validity != kms.Valid || st.Key.KeyVersion != "2" {
		t.Fatalf("Check = %+v", st)
	}
	w2, err := p.Wrap(ctx, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unwrap(ctx, w2, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("v2 unwrap: %v", err)
	}
	// Lowering it again brings the old version back (Vault keeps it).
	if _, err := root.Logical().Write("transit/keys/cmk/config", map[string]any{"min_decryption_version": 1}); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Unwrap(ctx, w1, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("v1 unwrap after lowering min_decryption_version: %v", err)
	}
	// Vault refuses a min_decryption_version beyond the latest version.
	if _, err := root.Logical().Write("transit/keys/cmk/config", map[string]any{"min_decryption_version": 3}); err == nil {
		t.Fatal("min_decryption_version beyond latest accepted")
	}
}

// TestServerChecksAssociatedData makes sure the aad really reaches Vault and
// is authenticated there, not only checked on our side.
func TestServerChecksAssociatedData(t *testing.T) {
	srv, p, _ := setup(t)
	ctx := ctxT(t, 10*time.Second)
	pt := kmstest.Canary(32)
	w, err := p.Wrap(ctx, pt, []byte("bound"))
	if err != nil {
		t.Fatal(err)
	}
	c := rootClient(t, srv)
	_, err = c.Logical().Write("transit/decrypt/cmk", map[string]any{"ciphertext": string(w.Ciphertext)})
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || len(re.Errors) != 1 || re.Errors[0] != "cipher: message authentication failed" {
		t.Fatalf("decrypt without associated_data: %v", err)
	}
	sec, err := c.Logical().Write("transit/decrypt/cmk", map[string]any{"ciphertext": string(w.Ciphertext), "associated_data": "Ym91bmQ="})
	if err != nil || sec.Data["plaintext"] == nil {
		t.Fatalf("decrypt with associated_data: %v", err)
	}
}

// TestFaultMatrix: each fault, the class and reason of Check, Wrap and
// Unwrap, and how many requests it took (retries only when UNREACHABLE).
func TestFaultMatrix(t *testing.T) {
	cases := []struct {
		name    string
		set     func(srv *vaulttest.Server, token string)
		reason  kms.Reason
		retried bool
	}{
		{"5xx", func(s *vaulttest.Server, _ string) { s.SetFault(vaulttest.Fail5xx) }, kms.ReasonServerError, true},
		{"sealed", func(s *vaulttest.Server, _ string) { s.Seal() }, kms.ReasonServerError, true},
		{"throttled", func(s *vaulttest.Server, _ string) { s.SetFault(vaulttest.Throttle) }, kms.ReasonThrottled, true},
		{"dropped", func(s *vaulttest.Server, _ string) { s.SetFault(vaulttest.Drop) }, kms.ReasonNetwork, true},
		{"revoked token", func(s *vaulttest.Server, tok string) { s.RevokeToken(tok) }, kms.ReasonCredentialsRejected, false},
		{"no policy", func(s *vaulttest.Server, tok string) { s.SetPolicy(tok, vaulttest.Policy{}) }, kms.ReasonPermissionDenied, false},
		{"encrypt denied", func(s *vaulttest.Server, tok string) {
			s.SetPolicy(tok, vaulttest.Policy{"transit/keys/cmk": {"read"}, "transit/decrypt/cmk": {"update"}, "transit/encrypt/cmk": {"deny"}})
		}, kms.ReasonPermissionDenied, false},
		{"deleted key", func(s *vaulttest.Server, _ string) { s.DeleteKey("cmk") }, kms.ReasonKeyNotFound, false},
		{"rsa key", func(s *vaulttest.Server, _ string) { s.DeleteKey("cmk"); _ = s.CreateKey("cmk", "rsa-2048") }, kms.ReasonWrongKeyType, false},
		{"aes128 ok", func(s *vaulttest.Server, _ string) { s.DeleteKey("cmk"); _ = s.CreateKey("cmk", "aes128-gcm96") }, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, p, token := setup(t)
			ctx := ctxT(t, 10*time.Second)
			c.set(srv, token)
			before := srv.Requests()
			st := p.Check(ctx)
			n := srv.Requests() - before
			if st.Reason != c.reason || st.Validity != validityOf(c.reason) {
				t.Fatalf("Check = %v %s (%s), want %s", st.Validity, st.Reason, st.Detail, c.reason)
			}
			if c.reason == "" {
				return
			}
			if c.retried && n != 3 {
				t.Errorf("Check made %d requests, want 3 attempts", n)
			}
			// Non-retried: a read, maybe the probe's encrypt, one lookup-self on a 403.
			if !c.retried && n > 3 {
				t.Errorf("Check made %d requests on an INVALID answer: it must not retry", n)
			}
			_, werr := p.Wrap(ctx, kmstest.Canary(32), nil)
			if kms.ReasonOf(werr) != c.reason {
				t.Errorf("Wrap reason %s (%v), want %s", kms.ReasonOf(werr), werr, c.reason)
			}
			w := kms.Wrapped{Key: kms.KeyRef{Provider: "vault", KeyID: "transit/cmk", KeyVersion: "1"}, Ciphertext: []byte("vault:v1:" + strings.Repeat("A", 80))}
			_, uerr := p.Unwrap(ctx, w, []byte("x"))
			if c.name == "encrypt denied" {
				// Decrypt is still allowed: the bogus ciphertext is refused
				// for what it is.
				if !errors.Is(uerr, kms.ErrDecrypt) || errors.Is(uerr, kms.ErrInvalid) {
					t.Errorf("Unwrap = %v, want ErrDecrypt", uerr)
				}
			} else if kms.ReasonOf(uerr) != c.reason {
				t.Errorf("Unwrap reason %s (%v), want %s", kms.ReasonOf(uerr), uerr, c.reason)
			}
			for _, e := range []error{st.Err(), werr, uerr} {
				kmstest.AssertErrorHidesSecrets(t, c.name, e, []byte(token), []byte(srv.RootToken))
			}
		})
	}
}

func validityOf(r kms.Reason) kms.Validity {
	if r == "" {
		return kms.Valid
	}
	return r.Validity()
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p, err := New(Config{Address: "http://" + addr, Token: "hvs.secret-token-value", Key: "cmk", MaxAttempts: 2, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Check(ctxT(t, 10*time.Second))
	if st.Validity != kms.Unreachable || st.Reason != kms.ReasonNetwork {
		t.Fatalf("Check = %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}
	kmstest.AssertErrorHidesSecrets(t, "refused", st.Err(), []byte("hvs.secret-token-value"))
}

func TestStallHonoursDeadline(t *testing.T) {
	srv, p, _ := setup(t)
	srv.SetFault(vaulttest.Stall)
	start := time.Now()
	_, err := p.Wrap(ctxT(t, 150*time.Millisecond), kmstest.Canary(32), nil)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Wrap took %v", el)
	}
	if !errors.Is(err, kms.ErrTimeout) || !errors.Is(err, kms.ErrUnreachable) {
		t.Fatalf("err = %v", err)
	}
}

func TestTokenNeverShown(t *testing.T) {
	srv, p, token := setup(t)
	cfg := Config{Address: srv.URL, Token: token, Key: "cmk"}
	for _, s := range []string{
		cfg.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		p.String(), fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p),
	} {
		kmstest.AssertNoSecret(t, "formatted config/provider", s, []byte(token))
	}
	// Errors of every kind, with the token revoked (the server saw it).
	srv.RevokeToken(token)
	ctx := ctxT(t, 10*time.Second)
	_, err := p.Wrap(ctx, kmstest.Canary(32), nil)
	kmstest.AssertErrorHidesSecrets(t, "wrap", err, []byte(token))
	kmstest.AssertNoSecret(t, "check detail", p.Check(ctx).Detail, []byte(token))
}

func TestEnvironmentTokenIgnored(t *testing.T) {
	srv, _, token := setup(t)
	t.Setenv("VAULT_TOKEN", srv.RootToken)
	t.Setenv("VAULT_MAX_RETRIES", "5")
	p := newTestProvider(t, srv, "cmk", token)
	if p.client.Token() != token {
		t.Fatal("provider does not use the configured token")
	}
	if p.client.MaxRetries() != 0 {
		t.Fatalf("client retries = %d, want 0", p.client.MaxRetries())
	}
}

func TestOtherKeyOnSameServer(t *testing.T) {
	srv, p, _ := setup(t)
	createKey(t, srv, "other")
	ctx := ctxT(t, 10*time.Second)
	pt, aad := kmstest.Canary(32), []byte("a")
	w, err := p.Wrap(ctx, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	p2 := newTestProvider(t, srv, "other", srv.RootToken)
	// Same ciphertext presented as if it were the other key's: Vault's GCM
	// check refuses it.
	w.Key.KeyID = "transit/other"
	out, err := p2.Unwrap(ctx, w, aad)
	if err == nil || len(out) != 0 || !errors.Is(err, kms.ErrDecrypt) || errors.Is(err, kms.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
}

// TestOfficialClientOnTheWire: every request the server saw came from
// github.com/hashicorp/vault/api (it marks them with X-Vault-Request) and
// carried a token; writes are the client's PUTs.
func TestOfficialClientOnTheWire(t *testing.T) {
	srv, p, _ := setup(t)
	ctx := ctxT(t, 10*time.Second)
	start := len(srv.Log())
	w, err := p.Wrap(ctx, kmstest.Canary(32), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Unwrap(ctx, w, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if st := p.Check(ctx); st.Validity != kms.Valid {
		t.Fatal(st.Detail)
	}
	log := srv.Log()[start:]
	if len(log) == 0 {
		t.Fatal("no requests logged")
	}
	seen := map[string]bool{}
	for _, r := range log {
		if r.VaultRequest != "true" || !r.HasToken {
			t.Errorf("%s %s: X-Vault-Request=%q token=%v", r.Method, r.Path, r.VaultRequest, r.HasToken)
		}
		seen[r.Method+" "+r.Path] = true
	}
	for _, want := range []string{"GET /v1/transit/keys/cmk", "PUT /v1/transit/encrypt/cmk", "PUT /v1/transit/decrypt/cmk"} {
		if !seen[want] {
			t.Errorf("no %s among %v", want, seen)
		}
	}
}
