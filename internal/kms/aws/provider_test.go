package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// rawCall signs a TrentService request with the SDK's own SigV4 signer
// (independent of the server's verifier) and returns status and body.
func rawCall(t *testing.T, url, akid, secret, op string, body []byte, tamper func(*http.Request)) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "kms", testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("response %q: %v", data, err)
	}
	return resp.StatusCode, out
}

// TestSigV4IsVerified proves the server recomputes signatures: a correctly
// signed request passes, and a wrong secret, an unknown access key, a body
// altered after signing, or no signature at all are refused as AWS refuses
// them.
func TestSigV4IsVerified(t *testing.T) {
	h := newHarness(t)
	_, arn := h.srv.CreateSymmetricKey()
	body := []byte(fmt.Sprintf(`{"KeyId":%q}`, arn))

	status, out := rawCall(t, h.srv.URL, testAKID, h.secret, "DescribeKey", body, nil)
	if status != 200 {
		t.Fatalf("correctly signed DescribeKey: %d %v", status, out)
	}
	cases := []struct {
		name, akid, secret string
		tamper             func(*http.Request)
		code               string
	}{
		{"wrong secret", testAKID, h.secret + "x", nil, "InvalidSignatureException"},
		{"unknown access key", "AKIAUNKNOWNUNKNOWN00", h.secret, nil, "UnrecognizedClientException"},
		{"body altered after signing", testAKID, h.secret, func(r *http.Request) {
			b := []byte(fmt.Sprintf(`{"KeyId":%q }`, arn))
			r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		}, "InvalidSignatureException"},
		{"target altered after signing", testAKID, h.secret, func(r *http.Request) {
			r.Header.Set("X-Amz-Target", "TrentService.DisableKey")
		}, "InvalidSignatureException"},
		{"unsigned", testAKID, h.secret, func(r *http.Request) { r.Header.Del("Authorization") }, "MissingAuthenticationTokenException"},
	}
	for _, c := range cases {
		status, out := rawCall(t, h.srv.URL, c.akid, c.secret, "DescribeKey", body, c.tamper)
		if status != 400 || out["__type"] != c.code {
			t.Errorf("%s: %d %v, want 400 %s", c.name, status, out, c.code)
		}
		if strings.Contains(fmt.Sprint(out), h.secret) {
			t.Errorf("%s: the response carries the secret", c.name)
		}
	}

	// Through the provider: the wrong secret is rejected server-side and
	// classified CREDENTIALS_REJECTED, never retried, never printed.
	cfg := h.config(arn)
	cfg.SecretAccessKey = h.secret + "wrong"
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := h.srv.Calls("DescribeKey")
	st := p.Check(ctx(t))
	if st.Validity != kms.Invalid || st.Reason != kms.ReasonCredentialsRejected {
		t.Fatalf("Check with a wrong secret = %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}
	if !strings.Contains(st.Detail, "InvalidSignatureException") || !strings.Contains(st.Detail, "INVALID_AWS_CREDENTIALS") {
		t.Errorf("Detail %q should name the AWS error and the Atlas code", st.Detail)
	}
	if h.srv.Calls("DescribeKey") != before {
		t.Errorf("requests with a bad signature reached the operation")
	}
	_, err = p.Wrap(ctx(t), kmstest.Canary(32), nil)
	if !errors.Is(err, kms.ErrCredentialsRejected) || !errors.Is(err, kms.ErrInvalid) {
		t.Fatalf("Wrap with a wrong secret: %v", err)
	}
	kmstest.AssertErrorHidesSecrets(t, "Wrap error", err, []byte(h.secret), []byte(cfg.SecretAccessKey))
	kmstest.AssertNoSecret(t, "Status.Detail", st.Detail, []byte(h.secret), []byte(cfg.SecretAccessKey))
}

func TestSecretsNeverShown(t *testing.T) {
	h := newHarness(t)
	_, arn := h.srv.CreateSymmetricKey()
	h.keyID = arn
	cfg := h.config(arn)
	secret := []byte(cfg.SecretAccessKey)
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		kmstest.AssertNoSecret(t, "Config printed", s, secret)
		if !strings.Contains(s, "REDACTED") {
			t.Errorf("Config printed as %q: the secret should show as redacted", s)
		}
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kmstest.AssertNoSecret(t, "Provider printed", fmt.Sprintf("%v %+v %#v %s", p, p, p, p), secret)
	pt := kmstest.Canary(32)
	w, err := p.Wrap(ctx(t), pt, []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Unwrap(ctx(t), w, []byte("b"))
	if !errors.Is(err, kms.ErrDecrypt) {
		t.Fatalf("wrong aad: %v", err)
	}
	kmstest.AssertErrorHidesSecrets(t, "Unwrap error", err, secret, pt)
	for _, st := range kmstest.States() {
		if !h.SetState(t, st) {
			continue
		}
		c := ctx(t)
		if st == kmstest.Timeout {
			var cancel context.CancelFunc
			c, cancel = context.WithTimeout(c, 200*time.Millisecond)
			defer cancel()
		}
		_, err := p.Wrap(c, pt, nil)
		kmstest.AssertErrorHidesSecrets(t, st.String()+" Wrap", err, secret, pt)
		_, err = p.Unwrap(c, w, []byte("a"))
		kmstest.AssertErrorHidesSecrets(t, st.String()+" Unwrap", err, secret, pt)
	}
}

// TestFaultMatrix drives every state the server can express and checks the
// classification, the Atlas code, and that only UNREACHABLE answers are
// retried.
func TestFaultMatrix(t *testing.T) {
	cases := []struct {
		state  kmstest.State
		atlas  string
		awsErr string // expected in Detail
	}{
		{kmstest.Disabled, "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED", "Disabled"},
		{kmstest.PendingDeletion, "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION", "PendingDeletion"},
		{kmstest.NotFound, "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND", "NotFoundException"},
		{kmstest.PermissionDenied, "NO_PERMISSION_TO_ENCRYPT_DECRYPT", "AccessDeniedException"},
		{kmstest.CredentialsRejected, "INVALID_AWS_CREDENTIALS", "InvalidSignatureException"},
		{kmstest.WrongKeyType, "", "RSA_2048"},
		{kmstest.Throttled, "", "ThrottlingException"},
		{kmstest.ServerError, "", "KMSInternalException"},
		{kmstest.Unreachable, "", "could not reach"},
		{kmstest.Timeout, "", "deadline"},
	}
	h := newHarness(t)
	for _, c := range cases {
		t.Run(c.state.String(), func(t *testing.T) {
			p := h.Provider(t).(*Provider)
			pt := kmstest.Canary(32)
			w, err := p.Wrap(ctx(t), pt, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if !h.SetState(t, c.state) {
				t.Fatalf("harness cannot express %s", c.state)
			}
			cctx := ctx(t)
			if c.state == kmstest.Timeout {
				var cancel context.CancelFunc
				cctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
			}
			before := h.srv.Calls("Encrypt") + h.srv.Calls("DescribeKey")
			start := time.Now()
			st := p.Check(cctx)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("Check took %v", el)
			}
			if st.Validity != c.state.Validity() || st.Reason != c.state.Reason() {
				t.Fatalf("Check = %v %s (%s), want %v %s", st.Validity, st.Reason, st.Detail, c.state.Validity(), c.state.Reason())
			}
			if !strings.Contains(st.Detail, c.awsErr) {
				t.Errorf("Detail %q does not mention %q", st.Detail, c.awsErr)
			}
			if c.atlas != "" && !strings.Contains(st.Detail, c.atlas) {
				t.Errorf("Detail %q lacks Atlas code %s", st.Detail, c.atlas)
			}
			calls := h.srv.Calls("Encrypt") + h.srv.Calls("DescribeKey") - before
			switch c.state {
			case kmstest.Throttled, kmstest.ServerError:
				if calls != 3 {
					t.Errorf("%s: %d attempts, want 3 (retried with backoff)", c.state, calls)
				}
			case kmstest.CredentialsRejected, kmstest.Unreachable, kmstest.Timeout:
				// Never reach the operation.
			default:
				if c.state.Validity() == kms.Invalid && calls != 1 {
					t.Errorf("%s: %d attempts, want 1 (INVALID is never retried)", c.state, calls)
				}
			}
			if c.state != kmstest.Timeout {
				_, err = p.Unwrap(ctx(t), w, []byte("x"))
				if kms.ReasonOf(err) != c.state.Reason() {
					t.Errorf("Unwrap: %v, want %s", err, c.state.Reason())
				}
			}
			h.SetState(t, kmstest.Enabled)
			if st := p.Check(ctx(t)); st.Validity != kms.Valid {
				t.Fatalf("back to Enabled: %v %s %s", st.Validity, st.Reason, st.Detail)
			}
		})
	}
}

// TestAsymmetricKey configures a genuinely asymmetric key.
func TestAsymmetricKey(t *testing.T) {
	h := newHarness(t)
	for _, usage := range []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY"} {
		_, arn := h.srv.CreateKeyWithSpec("RSA_2048", usage)
		p, err := New(h.config(arn))
		if err != nil {
			t.Fatal(err)
		}
		st := p.Check(ctx(t))
		if st.Reason != kms.ReasonWrongKeyType || st.Validity != kms.Invalid {
			t.Errorf("RSA_2048/%s: Check = %v %s (%s)", usage, st.Validity, st.Reason, st.Detail)
		}
		_, err = p.Wrap(ctx(t), kmstest.Canary(32), nil)
		if !errors.Is(err, kms.ErrWrongKeyType) {
			t.Errorf("RSA_2048/%s: Wrap: %v", usage, err)
		}
	}
}

// TestLifecycleThroughAPI uses the real KMS operations (through the SDK)
// rather than test controls, and a bare key id in the configuration.
func TestLifecycleThroughAPI(t *testing.T) {
	h := newHarness(t)
	admin := awskms.New(awskms.Options{
		Region:       testRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(testAKID, h.secret, ""),
		BaseEndpoint: aws.String(h.srv.URL),
	})
	c := ctx(t)
	created, err := admin.CreateKey(c, &awskms.CreateKeyInput{Description: aws.String("cmkdb test")})
	if err != nil {
		t.Fatal(err)
	}
	md := created.KeyMetadata
	if md.KeySpec != types.KeySpecSymmetricDefault || md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.KeyState != types.KeyStateEnabled || md.CreationDate == nil {
		t.Fatalf("CreateKey metadata: %+v", md)
	}
	p, err := New(h.config(*md.KeyId))
	if err != nil {
		t.Fatal(err)
	}
	st := p.Check(c)
	if st.Validity != kms.Valid || st.Key.KeyID != *md.Arn || st.Key.Provider != "aws" || st.Key.KeyVersion != "" {
		t.Fatalf("Check = %+v, want VALID on %s", st, *md.Arn)
	}
	pt := kmstest.Canary(32)
	w, err := p.Wrap(c, pt, []byte("aad"))
	if err != nil || w.Key != st.Key {
		t.Fatalf("Wrap: %v, key %s", err, w.Key)
	}

	// GenerateDataKey blobs decrypt through the same path.
	gdk, err := admin.GenerateDataKey(c, &awskms.GenerateDataKeyInput{KeyId: md.KeyId, KeySpec: types.DataKeySpecAes256,
		EncryptionContext: encryptionContext([]byte("gdk"))})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Unwrap(c, kms.Wrapped{Key: st.Key, Ciphertext: gdk.CiphertextBlob}, []byte("gdk"))
	if err != nil || !bytes.Equal(got, gdk.Plaintext) {
		t.Fatalf("unwrap GenerateDataKey blob: %v", err)
	}

	expect := func(what string, r kms.Reason) {
		t.Helper()
		st := p.Check(c)
		if st.Reason != r {
			t.Fatalf("%s: Check = %v %s (%s), want %s", what, st.Validity, st.Reason, st.Detail, r)
		}
	}
	if _, err := admin.DisableKey(c, &awskms.DisableKeyInput{KeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	expect("DisableKey", kms.ReasonKeyDisabled)
	var de *types.DisabledException
	if _, err := admin.Encrypt(c, &awskms.EncryptInput{KeyId: md.KeyId, Plaintext: pt}); !errors.As(err, &de) {
		t.Errorf("Encrypt on a disabled key: %v, want *types.DisabledException", err)
	}
	if _, err := admin.EnableKey(c, &awskms.EnableKeyInput{KeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	expect("EnableKey", "")
	sched, err := admin.ScheduleKeyDeletion(c, &awskms.ScheduleKeyDeletionInput{KeyId: md.KeyId, PendingWindowInDays: aws.Int32(7)})
	if err != nil || sched.DeletionDate == nil || sched.KeyState != types.KeyStatePendingDeletion {
		t.Fatalf("ScheduleKeyDeletion: %v %+v", err, sched)
	}
	expect("ScheduleKeyDeletion", kms.ReasonKeyPendingDeletion)
	var ise *types.KMSInvalidStateException
	if _, err := admin.Decrypt(c, &awskms.DecryptInput{CiphertextBlob: w.Ciphertext, EncryptionContext: encryptionContext([]byte("aad"))}); !errors.As(err, &ise) {
		t.Errorf("Decrypt on a key pending deletion: %v, want *types.KMSInvalidStateException", err)
	}
	_, err = p.Unwrap(c, w, []byte("aad"))
	if !errors.Is(err, kms.ErrKeyPendingDeletion) || !strings.Contains(err.Error(), "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION") {
		t.Errorf("Unwrap pending deletion: %v", err)
	}
	if _, err := admin.CancelKeyDeletion(c, &awskms.CancelKeyDeletionInput{KeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	expect("CancelKeyDeletion (leaves the key Disabled)", kms.ReasonKeyDisabled)
	if _, err := admin.EnableKey(c, &awskms.EnableKeyInput{KeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RotateKeyOnDemand(c, &awskms.RotateKeyOnDemandInput{KeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	st2 := p.Check(c)
	if st2.Validity != kms.Valid || !st2.LastRotated.After(md.CreationDate.Add(-time.Second)) {
		t.Fatalf("after rotation: %+v", st2)
	}
	got, err = p.Unwrap(c, w, []byte("aad"))
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("unwrap after the whole lifecycle: %v", err)
	}

	// Errors the SDK does not model come back as smithy.APIError codes.
	h.srv.DenyAction("kms:DescribeKey", true)
	var api smithy.APIError
	if _, err := admin.DescribeKey(c, &awskms.DescribeKeyInput{KeyId: md.KeyId}); !errors.As(err, &api) || api.ErrorCode() != "AccessDeniedException" {
		t.Errorf("denied DescribeKey: %v", err)
	}
}

func TestOtherKeyBlobIsDecryptError(t *testing.T) {
	h := newHarness(t)
	p1 := h.Provider(t)
	p2 := h.Provider(t)
	w, err := p1.Wrap(ctx(t), kmstest.Canary(32), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = p2.Unwrap(ctx(t), w, nil)
	if !errors.Is(err, kms.ErrDecrypt) || errors.Is(err, kms.ErrInvalid) {
		t.Fatalf("blob of another key: %v", err)
	}
}

// TestOfficialSDKTalks checks that what reaches the server is the official
// SDK (its User-Agent, and a SigV4 signature the server verified).
func TestOfficialSDKTalks(t *testing.T) {
	h := newHarness(t)
	p := h.Provider(t)
	if st := p.Check(ctx(t)); st.Validity != kms.Valid {
		t.Fatal(st)
	}
	agents := h.srv.UserAgents()
	if len(agents) == 0 {
		t.Fatal("no request reached the server")
	}
	for _, a := range agents {
		if !strings.Contains(a, "aws-sdk-go-v2/") || !strings.Contains(a, "api/kms#") {
			t.Errorf("User-Agent %q is not aws-sdk-go-v2's KMS client", a)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{KeyID: "k", AccessKeyID: "a", SecretAccessKey: "s"},
		{Region: "r", AccessKeyID: "a", SecretAccessKey: "s"},
		{Region: "r", KeyID: "k", SecretAccessKey: "s"},
		{Region: "r", KeyID: "k", AccessKeyID: "a"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%v) succeeded", c)
		}
	}
}
