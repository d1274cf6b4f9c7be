package pkcs11

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	p11 "github.com/miekg/pkcs11"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/p11test"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func expectReason(t *testing.T, p *Provider, want kms.Reason) {
	t.Helper()
	st := p.Check(ctx(t))
	wantV := want.Validity()
	if want == "" {
		wantV = kms.Valid
	}
	if st.Reason != want || st.Validity != wantV {
		t.Errorf("Check = %v %s (%s), want %v %s", st.Validity, st.Reason, st.Detail, wantV, want)
	}
	_, err := p.Wrap(ctx(t), kmstest.Canary(32), nil)
	if kms.ReasonOf(err) != want {
		t.Errorf("Wrap error %v, want reason %s", err, want)
	}
}

func TestConfigRedactsPIN(t *testing.T) {
	cfg := Config{ModulePath: "/m.so", TokenLabel: "t", PIN: "super-secret-pin", KeyLabel: "k"}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v %+v %#v", p, p, p), fmt.Sprintf("%#v", *p)} {
		kmstest.AssertNoSecret(t, "formatted config/provider", s, []byte(cfg.PIN))
	}
	if _, err := New(Config{ModulePath: "/m.so", TokenLabel: "t", KeyLabel: "k"}); err == nil {
		t.Error("New without a PIN succeeded")
	}
}

func TestModuleMissing(t *testing.T) {
	p := newProvider(t, Config{ModulePath: "/nonexistent/libnothing.so", TokenLabel: "t", PIN: "pin-12345678", KeyLabel: "k"})
	expectReason(t, p, kms.ReasonNetwork)
}

func TestWrongPINNeverInErrors(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	tok.GenerateKey(t, p11test.KeySpec{Label: "cmk", ID: []byte("1")})
	wrong := "wrong-pin-" + strings.Repeat("x", 12)
	p := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: wrong, KeyLabel: "cmk"})
	st := p.Check(ctx(t))
	if st.Reason != kms.ReasonCredentialsRejected || st.Validity != kms.Invalid {
		t.Fatalf("Check = %v %s (%s), want INVALID CREDENTIALS_REJECTED", st.Validity, st.Reason, st.Detail)
	}
	secrets := [][]byte{[]byte(wrong), []byte(tok.PIN), []byte(tok.SOPIN)}
	kmstest.AssertNoSecret(t, "Status.Detail", st.Detail, secrets...)
	kmstest.AssertErrorHidesSecrets(t, "Status.Err", st.Err(), secrets...)
	_, err := p.Wrap(ctx(t), kmstest.Canary(32), nil)
	if !errors.Is(err, kms.ErrCredentialsRejected) {
		t.Errorf("Wrap error %v, want CREDENTIALS_REJECTED", err)
	}
	kmstest.AssertErrorHidesSecrets(t, "Wrap", err, secrets...)
	_, err = p.Unwrap(ctx(t), kms.Wrapped{Key: p.ref("1"), Ciphertext: make([]byte, 60)}, nil)
	if !errors.Is(err, kms.ErrCredentialsRejected) {
		t.Errorf("Unwrap error %v, want CREDENTIALS_REJECTED", err)
	}
	kmstest.AssertErrorHidesSecrets(t, "Unwrap", err, secrets...)

	// The right PIN works on the same token afterwards.
	good := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: tok.PIN, KeyLabel: "cmk"})
	expectReason(t, good, "")
}

func TestTokenAndKeyMissing(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	t.Run("token", func(t *testing.T) {
		p := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: "no-such-token", PIN: tok.PIN, KeyLabel: "cmk"})
		expectReason(t, p, kms.ReasonKeyNotFound)
	})
	t.Run("key", func(t *testing.T) {
		p := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: tok.PIN, KeyLabel: "no-such-key"})
		expectReason(t, p, kms.ReasonKeyNotFound)
	})
}

func TestKeyRequirements(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	cases := []struct {
		spec p11test.KeySpec
		want kms.Reason
	}{
		{p11test.KeySpec{Label: "no-encrypt", ID: []byte("1"), NoEncrypt: true}, kms.ReasonPermissionDenied},
		{p11test.KeySpec{Label: "no-decrypt", ID: []byte("1"), NoDecrypt: true}, kms.ReasonPermissionDenied},
		{p11test.KeySpec{Label: "aes128", ID: []byte("1"), Bytes: 16}, kms.ReasonWrongKeyType},
		{p11test.KeySpec{Label: "aes192", ID: []byte("1"), Bytes: 24}, kms.ReasonWrongKeyType},
		{p11test.KeySpec{Label: "generic", ID: []byte("1"), Type: p11.CKK_GENERIC_SECRET}, kms.ReasonWrongKeyType},
		{p11test.KeySpec{Label: "unversioned"}, ""},
	}
	for _, c := range cases {
		t.Run(c.spec.Label, func(t *testing.T) {
			tok.GenerateKey(t, c.spec)
			p := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: tok.PIN, KeyLabel: c.spec.Label})
			st := p.Check(ctx(t))
			if st.Reason != c.want {
				t.Fatalf("Check = %v %s (%s), want %s", st.Validity, st.Reason, st.Detail, c.want)
			}
			if c.want == "" {
				if st.Key.KeyVersion != "0" {
					t.Errorf("key without CKA_ID reported as version %q, want 0", st.Key.KeyVersion)
				}
				pt := kmstest.Canary(32)
				w, err := p.Wrap(ctx(t), pt, []byte("a"))
				if err != nil {
					t.Fatal(err)
				}
				got, err := p.Unwrap(ctx(t), w, []byte("a"))
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("Unwrap: %v", err)
				}
			}
		})
	}
}

func TestCiphertextLayout(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	tok.GenerateKey(t, p11test.KeySpec{Label: "cmk", ID: []byte("7")})
	// A key with a non-numeric CKA_ID under the same label is ignored.
	tok.GenerateKey(t, p11test.KeySpec{Label: "cmk", ID: []byte("backup")})
	p := newProvider(t, Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: tok.PIN, KeyLabel: "cmk"})
	w, err := p.Wrap(ctx(t), kmstest.Canary(32), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Ciphertext) != ivLen+32+tagLen {
		t.Errorf("ciphertext is %d bytes, want iv(12)+32+tag(16)", len(w.Ciphertext))
	}
	want := kms.KeyRef{Provider: "pkcs11", KeyID: tokenLabel + "/cmk", KeyVersion: "7"}
	if w.Key != want {
		t.Errorf("KeyRef = %+v, want %+v", w.Key, want)
	}
}

// Several providers on one token, one module, used concurrently; closing
// one does not disturb the others.
func TestConcurrentProviders(t *testing.T) {
	tok := p11test.New(t, tokenLabel)
	tok.GenerateKey(t, p11test.KeySpec{Label: "cmk", ID: []byte("1")})
	cfg := Config{ModulePath: tok.Module, TokenLabel: tokenLabel, PIN: tok.PIN, KeyLabel: "cmk"}
	ps := []*Provider{newProvider(t, cfg), newProvider(t, cfg), newProvider(t, cfg)}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				pt, aad := kmstest.Canary(32), fmt.Appendf(nil, "%d/%d", g, i)
				w, err := ps[g%3].Wrap(ctx(t), pt, aad)
				if err != nil {
					t.Error(err)
					return
				}
				got, err := ps[(g+1)%3].Unwrap(ctx(t), w, aad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Unwrap: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := ps[0].Close(); err != nil {
		t.Fatal(err)
	}
	if st := ps[1].Check(ctx(t)); st.Validity != kms.Valid {
		t.Errorf("after closing another provider: %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}
	if st := ps[0].Check(ctx(t)); st.Validity == kms.Valid {
		t.Error("a closed provider still answers")
	}
}

// A caller that gives up while another holds the session gets TIMEOUT
// without waiting for the lock.
func TestWaitingHonoursContext(t *testing.T) {
	p, err := New(Config{ModulePath: "/nonexistent.so", TokenLabel: "t", PIN: "pin-12345678", KeyLabel: "k"})
	if err != nil {
		t.Fatal(err)
	}
	p.lock <- struct{}{} // someone holds the session
	c, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	st := p.Check(c)
	if st.Reason != kms.ReasonTimeout || time.Since(start) > 5*time.Second {
		t.Errorf("Check = %v %s after %v, want UNREACHABLE TIMEOUT promptly", st.Validity, st.Reason, time.Since(start))
	}
	<-p.lock
}
