package gcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc/codes"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/gcptest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustWrap(t *testing.T, p *Provider, pt, aad []byte) kms.Wrapped {
	t.Helper()
	w, err := p.Wrap(ctxT(t), pt, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	return w
}

func mustUnwrap(t *testing.T, p *Provider, w kms.Wrapped, aad, want []byte) {
	t.Helper()
	got, err := p.Unwrap(ctxT(t), w, aad)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Unwrap(%s): %v (equal=%v)", w.Key, err, bytes.Equal(got, want))
	}
}

// TestFaultMatrix: each fault Cloud KMS can show → the class, the reason
// and the Atlas code, for Check, Wrap and Unwrap.
func TestFaultMatrix(t *testing.T) {
	h := newHarness(t)
	other, err := gcptest.NewServer(gcptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// A well-formed key of an account this KMS does not know.
	stranger, err := other.NewServiceAccount("stranger")
	if err != nil {
		t.Fatal(err)
	}
	state := func(s kmspb.CryptoKeyVersion_CryptoKeyVersionState) func() {
		return func() { h.setAll(t, s) }
	}
	cases := []struct {
		name   string
		set    func()
		creds  []byte // other credentials than the harness's
		reason kms.Reason
		atlas  string
		// wrapOK, unwrapOK: the fault does not stop Encrypt, Decrypt.
		wrapOK, unwrapOK bool
	}{
		{name: "stall", set: func() { h.srv.Stall(true) }, reason: kms.ReasonTimeout},
		{name: "unavailable", set: func() { h.srv.Fail(codes.Unavailable) }, reason: kms.ReasonNetwork},
		{name: "internal", set: func() { h.srv.Fail(codes.Internal) }, reason: kms.ReasonServerError},
		{name: "unknown", set: func() { h.srv.Fail(codes.Unknown) }, reason: kms.ReasonServerError},
		{name: "endpoint down", set: func() { h.down.Store(true); h.cut() }, reason: kms.ReasonNetwork},
		{name: "throttled", set: func() { h.srv.Throttle(true) }, reason: kms.ReasonThrottled},
		{name: "service account key disabled", set: func() { must(t, h.srv.DisableServiceAccountKey(h.sa.KeyID, true)) },
			reason: kms.ReasonCredentialsRejected, atlas: AtlasInvalidCredentials},
		{name: "unknown service account", creds: stranger.JSON, reason: kms.ReasonCredentialsRejected, atlas: AtlasInvalidCredentials},
		{name: "all permissions denied", set: func() { h.srv.DenyAll(true) }, reason: kms.ReasonPermissionDenied, atlas: AtlasNoPermission},
		{name: "useToDecrypt denied", set: func() { must(t, h.srv.Deny(gcptest.PermDecrypt, true)) },
			reason: kms.ReasonPermissionDenied, atlas: AtlasNoPermission, wrapOK: true},
		{name: "useToEncrypt denied", set: func() { must(t, h.srv.Deny(gcptest.PermEncrypt, true)) },
			reason: kms.ReasonPermissionDenied, atlas: AtlasNoPermission, unwrapOK: true},
		{name: "disabled", set: state(kmspb.CryptoKeyVersion_DISABLED), reason: kms.ReasonKeyDisabled, atlas: AtlasKeyVersionDisabled},
		{name: "destroy scheduled", set: state(kmspb.CryptoKeyVersion_DESTROY_SCHEDULED), reason: kms.ReasonKeyPendingDeletion, atlas: AtlasKeyVersionDestroyScheduled},
		{name: "destroyed", set: state(kmspb.CryptoKeyVersion_DESTROYED), reason: kms.ReasonKeyDeleted, atlas: AtlasKeyVersionDestroyed},
		{name: "pending generation", set: state(kmspb.CryptoKeyVersion_PENDING_GENERATION), reason: kms.ReasonKeyNotYetActive, atlas: AtlasKeyVersionPendingGeneration},
		{name: "not found", set: func() { must(t, h.srv.HideKey(h.keyName, true)) }, reason: kms.ReasonKeyNotFound, atlas: AtlasKeyVersionNotFound},
		{name: "wrong purpose", set: func() { must(t, h.srv.SetPurpose(h.keyName, kmspb.CryptoKey_ASYMMETRIC_DECRYPT)) }, reason: kms.ReasonWrongKeyType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			keyName := h.newKey(t)
			good := h.open(t, h.config(keyName))
			pt, aad := kmstest.Canary(32), []byte("node/n1")
			w := mustWrap(t, good, pt, aad)
			p := good
			if c.creds != nil {
				cfg := h.config(keyName)
				cfg.CredentialsJSON = c.creds
				p = h.open(t, cfg)
			}
			if c.set != nil {
				c.set()
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
				t.Errorf("Check = %v %s (%s), want %v %s", st.Validity, st.Reason, st.Detail, c.reason.Validity(), c.reason)
			}
			if c.atlas != "" && !strings.Contains(st.Detail, c.atlas) {
				t.Errorf("Check detail %q lacks the Atlas code %s", st.Detail, c.atlas)
			}
			secrets := [][]byte{h.sa.PrivateKeyDER, stranger.PrivateKeyDER, pt, []byte(h.srv.LastCall().Token)}
			kmstest.AssertNoSecret(t, "Status.Detail", st.Detail, secrets...)

			ctx2, cancel2 := context.WithTimeout(context.Background(), d)
			defer cancel2()
			_, werr := p.Wrap(ctx2, kmstest.Canary(32), aad)
			ctx3, cancel3 := context.WithTimeout(context.Background(), d)
			defer cancel3()
			out, uerr := p.Unwrap(ctx3, w, aad)
			if c.unwrapOK {
				if uerr != nil || !bytes.Equal(out, pt) {
					t.Errorf("Unwrap: %v, want success", uerr)
				}
				uerr = werr
			} else if len(out) != 0 {
				t.Errorf("Unwrap returned %d bytes", len(out))
			}
			if c.wrapOK {
				if werr != nil {
					t.Errorf("Wrap: %v, want success", werr)
				}
				werr = uerr
			}
			for op, err := range map[string]error{"Wrap": werr, "Unwrap": uerr} {
				if got := kms.ReasonOf(err); got != c.reason {
					t.Errorf("%s error = %v, want reason %s", op, err, c.reason)
				}
				if !errors.Is(err, kmstest.ClassSentinel(c.reason.Validity())) {
					t.Errorf("%s error %v is not %v", op, err, c.reason.Validity())
				}
				kmstest.AssertErrorHidesSecrets(t, op, err, secrets...)
			}
			// The fault cleared, the same provider recovers.
			h.reset(t)
			if st := p.Check(ctxT(t)); c.creds == nil && st.Validity != kms.Valid {
				t.Errorf("after the fault cleared: %v %s (%s)", st.Validity, st.Reason, st.Detail)
			}
		})
	}
}

// Only UNREACHABLE-class answers are retried, MaxAttempts times; INVALID
// answers never.
func TestRetries(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name  string
		set   func()
		calls int // GetCryptoKey calls made by one Check
	}{
		{"unavailable", func() { h.srv.Fail(codes.Unavailable) }, 3},
		{"internal", func() { h.srv.Fail(codes.Internal) }, 3},
		{"throttled", func() { h.srv.Throttle(true) }, 3},
		{"unauthenticated", func() { must(t, h.srv.DisableServiceAccountKey(h.sa.KeyID, true)) }, 1},
		{"not found", func() { must(t, h.srv.HideKey(h.keyName, true)) }, 1},
		{"wrong purpose", func() { must(t, h.srv.SetPurpose(h.keyName, kmspb.CryptoKey_MAC)) }, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := h.open(t, h.config(h.newKey(t)))
			c.set()
			before := h.srv.Calls("GetCryptoKey")
			p.Check(ctxT(t))
			if got := h.srv.Calls("GetCryptoKey") - before; got != c.calls {
				t.Errorf("%d GetCryptoKey calls, want %d", got, c.calls)
			}
		})
	}
	t.Run("decrypt of a bad ciphertext is not retried", func(t *testing.T) {
		p := h.open(t, h.config(h.newKey(t)))
		w := mustWrap(t, p, kmstest.Canary(32), nil)
		w.Ciphertext[len(w.Ciphertext)-1] ^= 1
		before := h.srv.Calls("Decrypt")
		if _, err := p.Unwrap(ctxT(t), w, nil); !errors.Is(err, kms.ErrDecrypt) {
			t.Fatalf("Unwrap = %v, want ErrDecrypt", err)
		}
		if got := h.srv.Calls("Decrypt") - before; got != 1 {
			t.Errorf("%d Decrypt calls, want 1", got)
		}
	})
}

// A key that follows its primary: rotation moves Wrap and Check to the new
// version, old records keep unwrapping, and each version's state counts
// for the records it made.
func TestPrimaryRotation(t *testing.T) {
	h := newHarness(t)
	keyName := h.newKey(t)
	p := h.open(t, h.config(keyName))
	pt, aad := kmstest.Canary(32), []byte("db/a")
	w1 := mustWrap(t, p, pt, aad)
	st1 := p.Check(ctxT(t))
	if st1.Validity != kms.Valid || st1.Key.KeyVersion != "1" || w1.Key.KeyVersion != "1" || st1.LastRotated.IsZero() {
		t.Fatalf("before rotation: Check %v %s LastRotated %v, Wrap %s", st1.Validity, st1.Key, st1.LastRotated, w1.Key)
	}
	if st1.Key.KeyID != keyName || st1.Key.Provider != ProviderName {
		t.Fatalf("KeyRef %+v, want the cryptoKey name", st1.Key)
	}
	time.Sleep(5 * time.Millisecond)
	v2, err := h.srv.RotateKey(keyName)
	if err != nil {
		t.Fatal(err)
	}
	st2 := p.Check(ctxT(t))
	if st2.Validity != kms.Valid || st2.Key.KeyVersion != "2" || keyName+"/cryptoKeyVersions/2" != v2 {
		t.Fatalf("after rotation Check = %v %s, want version 2 (%s)", st2.Validity, st2.Key, v2)
	}
	if !st2.LastRotated.After(st1.LastRotated) {
		t.Errorf("LastRotated %v is not after %v", st2.LastRotated, st1.LastRotated)
	}
	w2 := mustWrap(t, p, pt, aad)
	if w2.Key.KeyVersion != "2" {
		t.Fatalf("Wrap after rotation used %s", w2.Key)
	}
	mustUnwrap(t, p, w1, aad, pt)
	mustUnwrap(t, p, w2, aad, pt)

	// Disabling the old version only refuses the records it made.
	must(t, h.srv.SetVersionState(keyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_DISABLED))
	if _, err := p.Unwrap(ctxT(t), w1, aad); !errors.Is(err, kms.ErrKeyDisabled) {
		t.Errorf("Unwrap of a version-1 record with version 1 disabled: %v", err)
	}
	mustUnwrap(t, p, w2, aad, pt)
	if st := p.Check(ctxT(t)); st.Validity != kms.Valid {
		t.Errorf("Check with only the old version disabled: %v %s", st.Validity, st.Detail)
	}
}

// A pinned version (Atlas's keyVersionResourceID) stays pinned through
// rotations, and its own state is what Check reports.
func TestPinnedVersion(t *testing.T) {
	h := newHarness(t)
	keyName := h.newKey(t)
	follower := h.open(t, h.config(keyName))
	pinned := h.open(t, h.config(keyName+"/cryptoKeyVersions/1"))
	if _, err := h.srv.RotateKey(keyName); err != nil {
		t.Fatal(err)
	}
	pt := kmstest.Canary(32)
	w1 := mustWrap(t, pinned, pt, nil)
	st := pinned.Check(ctxT(t))
	if w1.Key.KeyVersion != "1" || st.Key.KeyVersion != "1" || st.Key.KeyID != keyName {
		t.Fatalf("pinned to 1: Wrap %s, Check %s", w1.Key, st.Key)
	}
	w2 := mustWrap(t, follower, pt, nil)
	if w2.Key.KeyVersion != "2" {
		t.Fatalf("follower wrapped with %s", w2.Key)
	}
	// Records of either version unwrap through either provider.
	for _, p := range []*Provider{pinned, follower} {
		mustUnwrap(t, p, w1, nil, pt)
		mustUnwrap(t, p, w2, nil, pt)
	}
	must(t, h.srv.SetVersionState(keyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_DESTROY_SCHEDULED))
	if st := pinned.Check(ctxT(t)); st.Reason != kms.ReasonKeyPendingDeletion {
		t.Errorf("pinned version destroy-scheduled: Check = %v %s", st.Validity, st.Reason)
	}
	if st := follower.Check(ctxT(t)); st.Validity != kms.Valid {
		t.Errorf("follower with version 2 primary: Check = %v %s", st.Validity, st.Detail)
	}
	// A pinned version that does not exist.
	ghost := h.open(t, h.config(keyName+"/cryptoKeyVersions/9"))
	if st := ghost.Check(ctxT(t)); st.Reason != kms.ReasonKeyNotFound || !strings.Contains(st.Detail, AtlasKeyVersionNotFound) {
		t.Errorf("missing pinned version: Check = %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}
}

// The official client does not verify Cloud KMS's integrity fields; the
// provider does. A damaged response is retried; damage on every attempt is
// an UNREACHABLE server error, never data.
func TestResponseIntegrity(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		c      gcptest.Corruption
		method string
		what   string
	}{
		{gcptest.CorruptCiphertextCRC, "Encrypt", "ciphertext_crc32c"},
		{gcptest.CorruptVerifiedPlaintext, "Encrypt", "plaintext_crc32c"},
		{gcptest.CorruptVerifiedAAD, "Encrypt", "additional_authenticated_data_crc32c"},
		{gcptest.CorruptName, "Encrypt", "another-key"},
		{gcptest.CorruptPlaintextCRC, "Decrypt", "plaintext_crc32c"},
	}
	for _, c := range cases {
		t.Run(c.what+"/"+c.method, func(t *testing.T) {
			p := h.open(t, h.config(h.newKey(t)))
			pt, aad := kmstest.Canary(32), []byte("db/x")
			w := mustWrap(t, p, pt, aad)
			op := func() error {
				if c.method == "Encrypt" {
					_, err := p.Wrap(ctxT(t), pt, aad)
					return err
				}
				_, err := p.Unwrap(ctxT(t), w, aad)
				return err
			}

			h.srv.CorruptNext(c.c, 1)
			before := h.srv.Calls(c.method)
			if err := op(); err != nil {
				t.Fatalf("one damaged response: %v, want success on retry", err)
			}
			if got := h.srv.Calls(c.method) - before; got != 2 {
				t.Errorf("%d %s calls, want 2 (the damaged answer retried)", got, c.method)
			}

			h.srv.CorruptNext(c.c, -1)
			err := op()
			if kms.ReasonOf(err) != kms.ReasonServerError || !errors.Is(err, kms.ErrUnreachable) {
				t.Fatalf("every response damaged: %v, want UNREACHABLE %s", err, kms.ReasonServerError)
			}
			if !strings.Contains(err.Error(), "integrity") || !strings.Contains(err.Error(), c.what) {
				t.Errorf("error %q does not say which integrity check failed", err)
			}
			kmstest.AssertErrorHidesSecrets(t, "integrity error", err, pt)
			h.srv.CorruptNext(gcptest.NoCorruption, 0)
		})
	}
}

// The requests reach the server through the official client: its
// x-goog-api-client and routing headers, authenticated by the service
// account's self-signed JWT.
func TestOfficialClientOnTheWire(t *testing.T) {
	h := newHarness(t)
	keyName := h.newKey(t)
	p := h.open(t, h.config(keyName))
	if st := p.Check(ctxT(t)); st.Validity != kms.Valid {
		t.Fatal(st.Detail)
	}
	mustWrap(t, p, kmstest.Canary(32), nil)
	c := h.srv.LastCall()
	if c.Method != "Encrypt" {
		t.Fatalf("last call %q", c.Method)
	}
	for _, part := range []string{"gl-go/", "gapic/", "gax/", "grpc/"} {
		if !strings.Contains(c.APIClient, part) {
			t.Errorf("x-goog-api-client %q lacks %s", c.APIClient, part)
		}
	}
	if want := "name=" + url.QueryEscape(keyName); c.RequestParams != want {
		t.Errorf("x-goog-request-params %q, want %q", c.RequestParams, want)
	}
	if !strings.Contains(c.UserAgent, "grpc-go/") {
		t.Errorf("user-agent %q", c.UserAgent)
	}
	if c.Principal != h.sa.Email {
		t.Errorf("authenticated as %q, want %q", c.Principal, h.sa.Email)
	}
}

func TestCAFile(t *testing.T) {
	h := newHarness(t)
	keyName := h.newKey(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, h.srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{KeyName: keyName, CredentialsJSON: h.sa.JSON, Endpoint: "https://" + h.srv.Addr(), CAFile: caFile}
	if st := h.open(t, cfg).Check(ctxT(t)); st.Validity != kms.Valid {
		t.Fatalf("with CAFile: %v %s", st.Reason, st.Detail)
	}
	// Without the CA the server's certificate is not trusted: nothing is
	// sent, and that is a network problem, not a verdict on the key.
	cfg.CAFile = ""
	cfg.MaxAttempts = 1
	if st := h.open(t, cfg).Check(ctxT(t)); st.Reason != kms.ReasonNetwork {
		t.Fatalf("untrusted server: %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}
}

// Without cloudkms.*.get (the Encrypter/Decrypter role alone) the key is
// still VALID: the probe proves it; Detail says what was not checked.
func TestMetadataPermissionOptional(t *testing.T) {
	h := newHarness(t)
	for _, perm := range []string{gcptest.PermGetKey, gcptest.PermGetVersion} {
		t.Run(perm, func(t *testing.T) {
			p := h.open(t, h.config(h.newKey(t)))
			must(t, h.srv.Deny(perm, true))
			st := p.Check(ctxT(t))
			if st.Validity != kms.Valid || st.Key.KeyVersion != "1" || !strings.Contains(st.Detail, perm) {
				t.Fatalf("Check = %v %s %s (%s)", st.Validity, st.Reason, st.Key, st.Detail)
			}
			h.setAll(t, kmspb.CryptoKeyVersion_DISABLED)
			if st := p.Check(ctxT(t)); st.Reason != kms.ReasonKeyDisabled {
				t.Fatalf("disabled, metadata partly unreadable: %v %s (%s)", st.Validity, st.Reason, st.Detail)
			}
		})
	}
}

// The credentials never show: not in errors, nor when the configuration
// or the provider is printed.
func TestCredentialsNeverShown(t *testing.T) {
	h := newHarness(t)
	keyName := h.newKey(t)
	cfg := h.config(keyName)
	p := h.open(t, cfg)
	key := h.sa.PrivateKeyDER
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		fmt.Sprint(p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p)} {
		kmstest.AssertNoSecret(t, "printed config/provider", s, key)
	}
	pt := kmstest.Canary(32)
	w := mustWrap(t, p, pt, nil)
	token := []byte(h.srv.LastCall().Token)
	if len(token) == 0 {
		t.Fatal("no bearer token seen")
	}
	must(t, h.srv.DisableServiceAccountKey(h.sa.KeyID, true))
	_, werr := p.Wrap(ctxT(t), pt, nil)
	_, uerr := p.Unwrap(ctxT(t), w, nil)
	st := p.Check(ctxT(t))
	for name, err := range map[string]error{"wrap": werr, "unwrap": uerr, "check": st.Err()} {
		if !errors.Is(err, kms.ErrCredentialsRejected) {
			t.Errorf("%s: %v", name, err)
		}
		kmstest.AssertErrorHidesSecrets(t, name, err, key, token, pt)
	}
	if !strings.Contains(st.Detail, "invalid authentication credentials") {
		t.Errorf("detail %q lacks Google's message", st.Detail)
	}
}

func TestConfigValidation(t *testing.T) {
	h := newHarness(t)
	good := Config{KeyName: h.srv.KeyRingName() + "/cryptoKeys/k", CredentialsJSON: h.sa.JSON}
	if p, err := New(context.Background(), good); err != nil {
		t.Fatal(err)
	} else {
		p.Close()
	}
	swap := func(from, to string) []byte { return bytes.Replace(h.sa.JSON, []byte(from), []byte(to), 1) }
	cases := map[string]func(*Config){
		"no key":             func(c *Config) { c.KeyName = "" },
		"key ring":           func(c *Config) { c.KeyName = h.srv.KeyRingName() },
		"version zero":       func(c *Config) { c.KeyName += "/cryptoKeyVersions/0" },
		"version not number": func(c *Config) { c.KeyName += "/cryptoKeyVersions/x" },
		"trailing slash":     func(c *Config) { c.KeyName += "/" },
		"no credentials":     func(c *Config) { c.CredentialsJSON = nil },
		"not JSON":           func(c *Config) { c.CredentialsJSON = h.sa.JSON[:len(h.sa.JSON)/2] },
		"external account":   func(c *Config) { c.CredentialsJSON = swap(`"service_account"`, `"external_account"`) },
		"user credentials":   func(c *Config) { c.CredentialsJSON = swap(`"service_account"`, `"authorized_user"`) },
		"no email":           func(c *Config) { c.CredentialsJSON = swap(`"client_email"`, `"x"`) },
		"damaged key":        func(c *Config) { c.CredentialsJSON = swap(`BEGIN PRIVATE KEY-----\n`, `BEGIN PRIVATE KEY-----\nAAAA`) },
		"other universe":     func(c *Config) { c.CredentialsJSON = swap(`"googleapis.com"`, `"example.com"`) },
		"missing CA file":    func(c *Config) { c.CAFile = "/nonexistent/ca.pem" },
		"endpoint with path": func(c *Config) { c.Endpoint = "https://127.0.0.1:1/v1" },
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			c := good
			mod(&c)
			p, err := New(context.Background(), c)
			if err == nil {
				p.Close()
				t.Fatal("accepted")
			}
			kmstest.AssertErrorHidesSecrets(t, name, err, h.sa.PrivateKeyDER)
		})
	}
}

func TestAtlasCode(t *testing.T) {
	for r, want := range map[kms.Reason]string{
		kms.ReasonKeyDisabled:         "GOOGLE_CLOUD_KMS_KEY_VERSION_DISABLED",
		kms.ReasonKeyDeleted:          "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROYED",
		kms.ReasonKeyPendingDeletion:  "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROY_SCHEDULED",
		kms.ReasonKeyNotYetActive:     "GOOGLE_CLOUD_KMS_KEY_VERSION_PENDING_GENERATION",
		kms.ReasonKeyNotFound:         "GOOGLE_CLOUD_KMS_KEY_VERSION_NOT_FOUND",
		kms.ReasonCredentialsRejected: "INVALID_GOOGLE_CLOUD_CREDENTIALS",
		kms.ReasonPermissionDenied:    "NO_PERMISSION_TO_ENCRYPT_DECRYPT",
		kms.ReasonWrongKeyType:        "",
		kms.ReasonThrottled:           "",
	} {
		if got := AtlasCode(r); got != want {
			t.Errorf("AtlasCode(%s) = %q, want %q", r, got, want)
		}
	}
}
