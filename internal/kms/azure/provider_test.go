package azure

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newProvider(t *testing.T, h *harness, mod func(*Config)) (*Provider, string) {
	t.Helper()
	h.reset(t)
	h.n++
	h.keyName = fmt.Sprintf("key-%d-%s", h.n, encodeSecret(kmstest.Canary(4)))
	v := h.srv.CreateRSAKey(h.keyName, h.bits)
	cfg := h.config(h.keyName)
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, v
}

// TestFaultMatrix: every fault the server can express → the class, the
// reason and the Atlas code, for Check, Wrap and Unwrap.
func TestFaultMatrix(t *testing.T) {
	h := newHarness(t)
	hour := time.Hour
	cases := []struct {
		name   string
		set    func(name string) error
		reason kms.Reason
		atlas  string
	}{
		{"disabled", func(n string) error { return h.srv.SetEnabled(n, false) }, kms.ReasonKeyDisabled, AtlasKeyNotEnabled},
		{"expired", func(n string) error { return h.srv.SetExpires(n, ptr(time.Now().Add(-hour))) }, kms.ReasonKeyExpired, AtlasKeyExpired},
		{"not yet active", func(n string) error { return h.srv.SetNotBefore(n, ptr(time.Now().Add(hour))) }, kms.ReasonKeyNotYetActive, AtlasKeyNotActive},
		{"soft deleted", func(n string) error { return h.srv.DeleteKey(n) }, kms.ReasonKeyDeleted, AtlasKeyNotFound},
		{"not found", func(n string) error { return h.srv.HideKey(n) }, kms.ReasonKeyNotFound, AtlasKeyNotFound},
		{"EC key", func(n string) error { return h.srv.ReplaceKey(n, "EC", 0) }, kms.ReasonWrongKeyType, ""},
		{"RSA-1024 key", func(n string) error { return h.srv.ReplaceKey(n, "RSA", 1024) }, kms.ReasonWrongKeyType, ""},
		{"bad secret", func(string) error { h.srv.SetClientSecret("another"); return nil }, kms.ReasonCredentialsRejected, AtlasInvalidCredentials},
		{"get denied", func(string) error { h.srv.Deny("get", true); return nil }, kms.ReasonPermissionDenied, AtlasNoPermission},
		{"wrapKey denied", func(string) error { h.srv.Deny("wrapKey", true); return nil }, kms.ReasonPermissionDenied, AtlasNoPermission},
		{"unwrapKey denied", func(string) error { h.srv.Deny("unwrapKey", true); return nil }, kms.ReasonPermissionDenied, AtlasNoPermission},
		{"key_ops without wrapKey", func(n string) error { return h.srv.SetKeyOps(n, "encrypt", "decrypt", "unwrapKey") }, kms.ReasonPermissionDenied, ""},
		{"throttled", func(string) error { h.srv.Throttle(true); return nil }, kms.ReasonThrottled, ""},
		{"5xx", func(string) error { h.srv.Fail5xx(true); return nil }, kms.ReasonServerError, ""},
		{"unreachable", func(string) error { h.down.Store(true); h.tr.CloseIdleConnections(); return nil }, kms.ReasonNetwork, ""},
		{"stalled", func(string) error { h.srv.Stall(true); return nil }, kms.ReasonTimeout, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, _ := newProvider(t, h, nil)
			pt, aad := kmstest.Canary(32), []byte("node/n1")
			w, err := p.Wrap(ctxT(t), pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.set(h.keyName); err != nil {
				t.Fatal(err)
			}
			d := 10 * time.Second
			if c.reason == kms.ReasonTimeout {
				d = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			st := p.Check(ctx)
			t.Logf("Check: %v %s: %s", st.Validity, st.Reason, st.Detail)
			if st.Reason != c.reason || st.Validity != c.reason.Validity() {
				t.Errorf("Check = %v %s (%s), want %s", st.Validity, st.Reason, st.Detail, c.reason)
			}
			if c.atlas != "" && !strings.Contains(st.Detail, c.atlas) {
				t.Errorf("Check detail %q lacks the Atlas code %s", st.Detail, c.atlas)
			}
			kmstest.AssertNoSecret(t, "detail", st.Detail, []byte(h.secret))
			// Wrap and Unwrap: the same verdict, except where the
			// operation itself is allowed (a denied wrapKey does not stop
			// unwrapping, and the other way round).
			ctx2, cancel2 := context.WithTimeout(context.Background(), d)
			defer cancel2()
			_, werr := p.Wrap(ctx2, pt, aad)
			out, uerr := p.Unwrap(ctx2, w, aad)
			switch c.name {
			case "wrapKey denied", "key_ops without wrapKey":
				if uerr != nil || !bytes.Equal(out, pt) {
					t.Errorf("Unwrap with only wrapKey denied: %v", uerr)
				}
				uerr = werr
			case "unwrapKey denied":
				if werr != nil {
					t.Errorf("Wrap with only unwrapKey denied: %v", werr)
				}
				werr = uerr
			}
			for op, err := range map[string]error{"Wrap": werr, "Unwrap": uerr} {
				if kms.ReasonOf(err) != c.reason {
					t.Errorf("%s error = %v, want %s", op, err, c.reason)
				}
				kmstest.AssertErrorHidesSecrets(t, op, err, []byte(h.secret), pt)
			}
		})
	}
}

// Retries: UNREACHABLE-class answers are retried (MaxRetries), INVALID ones
// never.
func TestRetries(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		name     string
		set      func()
		requests int64
	}{
		{"5xx retried", func() { h.srv.Fail5xx(true) }, 3},
		{"403 not retried", func() { h.srv.Deny("get", true) }, 1},
		{"404 not retried", func() { _ = h.srv.HideKey(h.keyName) }, 2}, // the key, then /deletedkeys
	} {
		t.Run(c.name, func(t *testing.T) {
			p, _ := newProvider(t, h, nil)
			if st := p.Check(ctxT(t)); st.Validity != kms.Valid {
				t.Fatal(st.Detail)
			}
			c.set()
			before := h.srv.VaultRequests.Load()
			p.Check(ctxT(t))
			if got := h.srv.VaultRequests.Load() - before; got != c.requests {
				t.Errorf("%d vault requests, want %d", got, c.requests)
			}
		})
	}
	t.Run("bad secret not retried", func(t *testing.T) {
		p, _ := newProvider(t, h, func(c *Config) { c.ClientSecret = "wrong" })
		before := h.srv.TokenRequests.Load()
		if st := p.Check(ctxT(t)); st.Reason != kms.ReasonCredentialsRejected {
			t.Fatalf("Check = %s %s", st.Reason, st.Detail)
		}
		if got := h.srv.TokenRequests.Load() - before; got != 1 {
			t.Errorf("%d token requests, want 1", got)
		}
	})
}

// A version-less key follows the current version; old wraps keep
// unwrapping. A pinned version stays pinned.
func TestVersions(t *testing.T) {
	h := newHarness(t)
	t.Run("version-less", func(t *testing.T) {
		p, v1 := newProvider(t, h, nil)
		pt, aad := kmstest.Canary(32), []byte("a")
		w1, err := p.Wrap(ctxT(t), pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		st := p.Check(ctxT(t))
		if st.Key.KeyVersion != v1 || w1.Key.KeyVersion != v1 || st.LastRotated.IsZero() {
			t.Fatalf("before rotation: check %s, wrap %s, want version %s; LastRotated %v", st.Key, w1.Key, v1, st.LastRotated)
		}
		time.Sleep(1100 * time.Millisecond) // created has second resolution
		v2, err := h.srv.RotateKey(h.keyName)
		if err != nil {
			t.Fatal(err)
		}
		st2 := p.Check(ctxT(t))
		if st2.Validity != kms.Valid || st2.Key.KeyVersion != v2 {
			t.Fatalf("after rotation Check = %v %s, want version %s", st2.Validity, st2.Key, v2)
		}
		if !st2.LastRotated.After(st.LastRotated) {
			t.Errorf("LastRotated %v not after %v", st2.LastRotated, st.LastRotated)
		}
		w2, err := p.Wrap(ctxT(t), pt, aad)
		if err != nil || w2.Key.KeyVersion != v2 {
			t.Fatalf("Wrap after rotation: %v %s", err, w2.Key)
		}
		for _, w := range []kms.Wrapped{w1, w2} {
			if got, err := p.Unwrap(ctxT(t), w, aad); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Unwrap %s: %v", w.Key, err)
			}
		}
		// Disabling only the old version's... every version disabled:
		// unwrap of the old record is refused.
	})
	t.Run("pinned", func(t *testing.T) {
		var v1 string
		p, v1 := newProvider(t, h, nil)
		p, err := New(func() Config { c := h.config(h.keyName); c.KeyVersion = v1; return c }())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.srv.RotateKey(h.keyName); err != nil {
			t.Fatal(err)
		}
		st := p.Check(ctxT(t))
		w, err := p.Wrap(ctxT(t), []byte("0123456789abcdef"), nil)
		if st.Key.KeyVersion != v1 || err != nil || w.Key.KeyVersion != v1 {
			t.Fatalf("pinned to %s: Check %s, Wrap %s %v", v1, st.Key, w.Key, err)
		}
	})
}

func TestExpiringWarning(t *testing.T) {
	h := newHarness(t)
	p, _ := newProvider(t, h, nil)
	if err := h.srv.SetExpires(h.keyName, ptr(time.Now().Add(24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	st := p.Check(ctxT(t))
	if st.Validity != kms.Valid || !strings.Contains(st.Detail, AtlasKeyExpiring) {
		t.Fatalf("expiring in 24h: %v %s %q", st.Validity, st.Reason, st.Detail)
	}
	if err := h.srv.SetExpires(h.keyName, ptr(time.Now().Add(72*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if st := p.Check(ctxT(t)); st.Validity != kms.Valid || st.Detail != "" {
		t.Fatalf("expiring in 72h: %v %q", st.Validity, st.Detail)
	}
}

func TestKeySizes(t *testing.T) {
	for _, bits := range []int{2048, 3072, 4096} {
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			h := newHarness(t)
			h.bits = bits
			p, _ := newProvider(t, h, nil)
			if st := p.Check(ctxT(t)); st.Validity != kms.Valid {
				t.Fatal(st.Detail)
			}
			pt := kmstest.Canary(32)
			w, err := p.Wrap(ctxT(t), pt, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := p.Unwrap(ctxT(t), w, []byte("x")); err != nil || !bytes.Equal(got, pt) {
				t.Fatal(err)
			}
		})
	}
}

// The client secret never shows: not in errors of any kind, nor when the
// config or the provider is printed.
func TestSecretsNeverShown(t *testing.T) {
	h := newHarness(t)
	p, _ := newProvider(t, h, nil)
	cfg := h.config(h.keyName)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprint(p), fmt.Sprintf("%#v", p), fmt.Sprintf("%+v", p)} {
		kmstest.AssertNoSecret(t, "printed config/provider", s, []byte(h.secret))
	}
	pt := kmstest.Canary(32)
	w, err := p.Wrap(ctxT(t), pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetClientSecret("rotated")
	_, werr := p.Wrap(ctxT(t), pt, nil)
	_, uerr := p.Unwrap(ctxT(t), w, nil)
	st := p.Check(ctxT(t))
	for name, err := range map[string]error{"wrap": werr, "unwrap": uerr, "check": st.Err()} {
		if !errors.Is(err, kms.ErrCredentialsRejected) {
			t.Errorf("%s: %v", name, err)
		}
		kmstest.AssertErrorHidesSecrets(t, name, err, []byte(h.secret), pt)
	}
	if !strings.Contains(st.Detail, "AADSTS7000215") || !strings.Contains(st.Detail, AtlasInvalidCredentials) {
		t.Errorf("detail %q lacks AADSTS7000215 / %s", st.Detail, AtlasInvalidCredentials)
	}
	// A bad secret from the start (no token ever issued).
	p2, _ := newProvider(t, h, func(c *Config) { c.ClientSecret = h.secret + "-typo" })
	st = p2.Check(ctxT(t))
	if st.Reason != kms.ReasonCredentialsRejected {
		t.Fatalf("bad secret: %s %s", st.Reason, st.Detail)
	}
	kmstest.AssertErrorHidesSecrets(t, "bad secret", st.Err(), []byte(h.secret+"-typo"), []byte(h.secret))
}

// The official SDK is what talks to the server, and the authority can also
// be configured explicitly (ActiveDirectoryAuthorityHost).
func TestOfficialSDKTalks(t *testing.T) {
	h := newHarness(t)
	p, _ := newProvider(t, h, func(c *Config) { c.AuthorityHost = h.srv.URL + "/" })
	tokens := h.srv.TokenRequests.Load()
	if st := p.Check(ctxT(t)); st.Validity != kms.Valid {
		t.Fatal(st.Detail)
	}
	if h.srv.TokenRequests.Load() == tokens {
		t.Error("no token was requested from the authority")
	}
	if ua := h.srv.LastUserAgent(); !strings.Contains(ua, "azsdk-go-azkeys") {
		t.Errorf("User-Agent %q is not the azkeys SDK's", ua)
	}
}

// The key's lifecycle driven through the Key Vault REST API with the
// official SDK, as a customer would.
func TestLifecycleThroughAPI(t *testing.T) {
	h := newHarness(t)
	cred, err := azidentity.NewClientSecretCredential(testTenant, testClient, h.secret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: h.client}, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := azkeys.NewClient(h.srv.VaultURL(), cred, &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: h.client}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	kty, size := azkeys.KeyTypeRSAHSM, int32(3072)
	created, err := admin.CreateKey(ctx, "lifecycle", azkeys.CreateKeyParameters{Kty: &kty, KeySize: &size}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(h.config("lifecycle"))
	if err != nil {
		t.Fatal(err)
	}
	expect := func(want kms.Reason) kms.Status {
		t.Helper()
		st := p.Check(ctx)
		if st.Reason != want {
			t.Fatalf("Check = %v %s (%s), want %q", st.Validity, st.Reason, st.Detail, want)
		}
		return st
	}
	st := expect("")
	if st.Key.KeyVersion != created.Key.KID.Version() {
		t.Fatalf("Check reports %s, created %s", st.Key, *created.Key.KID)
	}
	pt := kmstest.Canary(32)
	w, err := p.Wrap(ctx, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	setEnabled := func(on bool) {
		if _, err := admin.UpdateKey(ctx, "lifecycle", "", azkeys.UpdateKeyParameters{KeyAttributes: &azkeys.KeyAttributes{Enabled: &on}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	setEnabled(false)
	expect(kms.ReasonKeyDisabled)
	setEnabled(true)
	expect("")
	rotated, err := admin.RotateKey(ctx, "lifecycle", nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := expect(""); st.Key.KeyVersion != rotated.Key.KID.Version() {
		t.Fatalf("after rotation Check reports %s, want %s", st.Key, *rotated.Key.KID)
	}
	if _, err := admin.DeleteKey(ctx, "lifecycle", nil); err != nil {
		t.Fatal(err)
	}
	expect(kms.ReasonKeyDeleted)
	if _, err := admin.RecoverDeletedKey(ctx, "lifecycle", nil); err != nil {
		t.Fatal(err)
	}
	expect("")
	if got, err := p.Unwrap(ctx, w, nil); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap of the first version after rotate/delete/recover: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{VaultURL: "https://v.vault.azure.net", KeyName: "k", TenantID: testTenant, ClientID: testClient, ClientSecret: "s3cret-value"}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"http":        func(c *Config) { c.VaultURL = "http://v.vault.azure.net" },
		"path":        func(c *Config) { c.VaultURL = "https://v.vault.azure.net/keys/k" },
		"no key":      func(c *Config) { c.KeyName = "" },
		"slash key":   func(c *Config) { c.KeyName = "a/b" },
		"no secret":   func(c *Config) { c.ClientSecret = "" },
		"no tenant":   func(c *Config) { c.TenantID = "" },
		"bad tenant":  func(c *Config) { c.TenantID = "not a tenant!" },
		"bad version": func(c *Config) { c.KeyVersion = "v/1" },
	} {
		c := good
		mod(&c)
		_, err := New(c)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		kmstest.AssertNoSecret(t, name, err.Error(), []byte(good.ClientSecret))
	}
}

// Corruption that gets past the checksum (an attacker can recompute it) is
// still caught: by Key Vault for the wrapped data key, by GCM for the rest.
func TestTamperBehindChecksum(t *testing.T) {
	h := newHarness(t)
	p, _ := newProvider(t, h, nil)
	pt, aad := kmstest.Canary(32), []byte("db/x")
	w, err := p.Wrap(ctxT(t), pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	body := w.Ciphertext[:len(w.Ciphertext)-4]
	for _, off := range []int{3, 3 + 100, 3 + 255, 3 + 256, 3 + 256 + 12, len(body) - 1} {
		c := bytes.Clone(body)
		c[off] ^= 0x40
		c = binary.BigEndian.AppendUint32(c, crc32.Checksum(c, castagnoli))
		before := h.srv.VaultRequests.Load()
		out, err := p.Unwrap(ctxT(t), kms.Wrapped{Key: w.Key, Ciphertext: c}, aad)
		if err == nil || len(out) != 0 || !errors.Is(err, kms.ErrDecrypt) || errors.Is(err, kms.ErrInvalid) {
			t.Errorf("byte %d: Unwrap = %d bytes, %v", off, len(out), err)
		}
		if h.srv.VaultRequests.Load() == before {
			t.Errorf("byte %d: rejected without asking Key Vault; the checksum was recomputed", off)
		}
	}
	if got, err := p.Unwrap(ctxT(t), w, aad); err != nil || !bytes.Equal(got, pt) {
		t.Fatal(err)
	}
}
