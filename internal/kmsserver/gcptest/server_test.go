package gcptest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// These tests speak raw gRPC, with hand-made JWTs, to pin down what the
// server accepts and refuses; the provider's tests drive it through the
// official client.

type fixture struct {
	srv     *Server
	sa      ServiceAccount
	priv    *rsa.PrivateKey
	client  kmspb.KeyManagementServiceClient
	keyName string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sa, err := srv.NewServiceAccount("tester")
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(sa.PrivateKeyDER)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(srv.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: srv.CertPool()})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	name, err := srv.CreateKey("k", kmspb.CryptoKey_ENCRYPT_DECRYPT)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, sa: sa, priv: k.(*rsa.PrivateKey), client: kmspb.NewKeyManagementServiceClient(conn), keyName: name}
}

func sign(t *testing.T, priv *rsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(header) + "." + enc(claims)
	d := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// jwt is what cloud.google.com/go/auth signs for the KMS client, changed
// by mod.
func (f *fixture) jwt(t *testing.T, mod func(h, c map[string]any), priv *rsa.PrivateKey) string {
	now := time.Now().Unix()
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": f.sa.KeyID}
	c := map[string]any{"iss": f.sa.Email, "sub": f.sa.Email, "aud": "",
		"scope": "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/cloudkms",
		"iat":   now, "exp": now + 3600}
	if mod != nil {
		mod(h, c)
	}
	if priv == nil {
		priv = f.priv
	}
	return sign(t, priv, h, c)
}

func (f *fixture) ctx(t *testing.T, token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func TestAuthentication(t *testing.T) {
	f := newFixture(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	cases := []struct {
		name    string
		token   func() string
		wantMsg string // "" = accepted
	}{
		{"as the Go client signs it", func() string { return f.jwt(t, nil, nil) }, ""},
		{"service audience instead of scopes", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["aud"] = kmsAudience; delete(c, "scope") }, nil)
		}, ""},
		{"no credentials", func() string { return "" }, msgMissingCredential},
		{"not a JWT", func() string { return "ya29.not-a-token" }, msgInvalidCredential},
		{"signed by another key", func() string { return f.jwt(t, nil, other) }, msgInvalidCredential},
		{"unknown kid", func() string { return f.jwt(t, func(h, _ map[string]any) { h["kid"] = "0123" }, nil) }, msgInvalidCredential},
		{"alg none", func() string { return f.jwt(t, func(h, _ map[string]any) { h["alg"] = "none" }, nil) }, msgInvalidCredential},
		{"other issuer", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["iss"] = "x@evil.iam.gserviceaccount.com" }, nil)
		}, msgInvalidCredential},
		{"expired", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["iat"] = now - 7200; c["exp"] = now - 3600 }, nil)
		}, msgInvalidCredential},
		{"issued in the future", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["iat"] = now + 3600; c["exp"] = now + 7200 }, nil)
		}, msgInvalidCredential},
		{"lifetime over an hour", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["exp"] = now + 7200 }, nil)
		}, msgInvalidCredential},
		{"another service's audience", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["aud"] = "https://storage.googleapis.com/"; delete(c, "scope") }, nil)
		}, msgInvalidCredential},
		{"another service's scope", func() string {
			return f.jwt(t, func(_, c map[string]any) { c["scope"] = "https://www.googleapis.com/auth/devstorage.read_only" }, nil)
		}, msgInvalidCredential},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.client.GetCryptoKey(f.ctx(t, c.token()), &kmspb.GetCryptoKeyRequest{Name: f.keyName})
			if c.wantMsg == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := f.srv.LastCall().Principal; got != f.sa.Email {
					t.Fatalf("principal %q", got)
				}
				return
			}
			st, _ := status.FromError(err)
			if st.Code() != codes.Unauthenticated || st.Message() != c.wantMsg {
				t.Fatalf("got %v, want Unauthenticated %q", err, c.wantMsg)
			}
		})
	}
	t.Run("disabled key", func(t *testing.T) {
		tok := f.jwt(t, nil, nil)
		if err := f.srv.DisableServiceAccountKey(f.sa.KeyID, true); err != nil {
			t.Fatal(err)
		}
		defer f.srv.DisableServiceAccountKey(f.sa.KeyID, false)
		_, err := f.client.GetCryptoKey(f.ctx(t, tok), &kmspb.GetCryptoKeyRequest{Name: f.keyName})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("got %v", err)
		}
	})
}

// TestService pins the service's answers: request checksums, response
// checksums and verified flags, and Google's codes and messages.
func TestService(t *testing.T) {
	f := newFixture(t)
	ctx := func() context.Context { return f.ctx(t, f.jwt(t, nil, nil)) }
	pt, aad := []byte("0123456789abcdef0123456789abcdef"), []byte("db/x")

	enc, err := f.client.Encrypt(ctx(), &kmspb.EncryptRequest{Name: f.keyName, Plaintext: pt, AdditionalAuthenticatedData: aad,
		PlaintextCrc32C: wrapperspb.Int64(crc(pt)), AdditionalAuthenticatedDataCrc32C: wrapperspb.Int64(crc(aad))})
	if err != nil {
		t.Fatal(err)
	}
	if !enc.VerifiedPlaintextCrc32C || !enc.VerifiedAdditionalAuthenticatedDataCrc32C ||
		enc.CiphertextCrc32C.GetValue() != crc(enc.Ciphertext) || enc.Name != f.keyName+"/cryptoKeyVersions/1" {
		t.Fatalf("Encrypt response %v", enc)
	}
	// Without request checksums nothing is claimed verified.
	bare, err := f.client.Encrypt(ctx(), &kmspb.EncryptRequest{Name: f.keyName, Plaintext: pt})
	if err != nil || bare.VerifiedPlaintextCrc32C || bare.VerifiedAdditionalAuthenticatedDataCrc32C {
		t.Fatalf("Encrypt without checksums: %v %v", bare, err)
	}
	dec, err := f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext,
		AdditionalAuthenticatedData: aad, CiphertextCrc32C: wrapperspb.Int64(crc(enc.Ciphertext))})
	if err != nil || string(dec.Plaintext) != string(pt) || dec.PlaintextCrc32C.GetValue() != crc(pt) || !dec.UsedPrimary {
		t.Fatalf("Decrypt: %v %v", dec, err)
	}

	expect := func(name string, err error, code codes.Code, msg string) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != code || !strings.Contains(st.Message(), msg) {
			t.Errorf("%s: got %v, want %v containing %q", name, err, code, msg)
		}
	}
	_, err = f.client.Encrypt(ctx(), &kmspb.EncryptRequest{Name: f.keyName, Plaintext: pt, PlaintextCrc32C: wrapperspb.Int64(crc(pt) ^ 1)})
	expect("bad plaintext_crc32c", err, codes.InvalidArgument, "The checksum in field plaintext_crc32c did not match the data in field plaintext.")
	_, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: aad,
		CiphertextCrc32C: wrapperspb.Int64(crc(enc.Ciphertext) ^ 1)})
	expect("bad ciphertext_crc32c", err, codes.InvalidArgument, "ciphertext_crc32c")
	_, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: []byte("db/y")})
	expect("other aad", err, codes.InvalidArgument, "Decryption failed: verify that 'name' refers to the correct CryptoKey.")
	_, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: []byte("garbage")})
	expect("garbage", err, codes.InvalidArgument, "Decryption failed")

	if err := f.srv.SetVersionState(f.keyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_DISABLED); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: aad})
	expect("disabled", err, codes.FailedPrecondition, f.keyName+"/cryptoKeyVersions/1 is not enabled, current state is: DISABLED.")
	if err := f.srv.SetVersionState(f.keyName+"/cryptoKeyVersions/1", kmspb.CryptoKeyVersion_ENABLED); err != nil {
		t.Fatal(err)
	}

	if err := f.srv.Deny(PermDecrypt, true); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext})
	expect("denied", err, codes.PermissionDenied,
		"Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource '"+f.keyName+"' (or it may not exist).")
	f.srv.Reset()

	_, err = f.client.GetCryptoKey(ctx(), &kmspb.GetCryptoKeyRequest{Name: f.srv.KeyRingName() + "/cryptoKeys/nope"})
	expect("missing key", err, codes.NotFound, "not found")
	f.srv.Throttle(true)
	_, err = f.client.GetCryptoKey(ctx(), &kmspb.GetCryptoKeyRequest{Name: f.keyName})
	expect("throttled", err, codes.ResourceExhausted, "Quota exceeded")
	f.srv.Reset()

	// Rotation: the new version is primary, the old ciphertext still opens.
	v2, err := f.srv.RotateKey(f.keyName)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := f.client.GetCryptoKey(ctx(), &kmspb.GetCryptoKeyRequest{Name: f.keyName})
	if err != nil || ck.Primary.GetName() != v2 || ck.Purpose != kmspb.CryptoKey_ENCRYPT_DECRYPT {
		t.Fatalf("GetCryptoKey after rotation: %v %v", ck, err)
	}
	dec, err = f.client.Decrypt(ctx(), &kmspb.DecryptRequest{Name: f.keyName, Ciphertext: enc.Ciphertext, AdditionalAuthenticatedData: aad})
	if err != nil || dec.UsedPrimary {
		t.Fatalf("Decrypt of a version-1 ciphertext after rotation: %v %v", dec, err)
	}
}

func TestStallEndsWithTheCall(t *testing.T) {
	f := newFixture(t)
	f.srv.Stall(true)
	ctx, cancel := context.WithTimeout(f.ctx(t, f.jwt(t, nil, nil)), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.client.GetCryptoKey(ctx, &kmspb.GetCryptoKeyRequest{Name: f.keyName})
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled call: %v after %v", err, time.Since(start))
	}
}
