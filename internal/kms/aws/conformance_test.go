package aws

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
)

const (
	testAKID   = "AKIAIOSFODNN7EXAMPLE"
	testRegion = "us-east-1"
)

func TestConformance(t *testing.T) {
	kmstest.Run(t, newHarness(t))
}

// harness drives awstest's controls. The provider's HTTP client dials
// through a switch so the harness can also make the endpoint unreachable.
type harness struct {
	srv    *awstest.Server
	secret string
	keyID  string
	down   atomic.Bool
	client *http.Client
	tr     *http.Transport
}

func newHarness(t *testing.T) *harness {
	h := &harness{}
	h.secret = "wJalrXUtnFEMI/K7MDENG/" + encodeSecret(kmstest.Canary(18))
	h.srv = awstest.NewServer(awstest.Options{Region: testRegion, Credentials: map[string]string{testAKID: h.secret}})
	t.Cleanup(h.srv.Close)
	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h.down.Load() {
				addr = deadAddr
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 16,
	}
	t.Cleanup(tr.CloseIdleConnections)
	h.tr = tr
	h.client = &http.Client{Transport: tr}
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

func (h *harness) config(keyID string) Config {
	return Config{
		Region:          testRegion,
		KeyID:           keyID,
		AccessKeyID:     testAKID,
		SecretAccessKey: h.secret,
		Endpoint:        h.srv.URL,
		HTTPClient:      h.client,
		MaxAttempts:     3,
		MaxBackoff:      20 * time.Millisecond,
	}
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	_, arn := h.srv.CreateSymmetricKey()
	h.keyID = arn
	p, err := New(h.config(arn))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *harness) reset(t testing.TB) {
	h.srv.Reset()
	h.down.Store(false)
	h.srv.SetCredentials(testAKID, h.secret)
	if h.keyID != "" {
		for _, err := range []error{
			h.srv.SetKeyState(h.keyID, awstest.StateEnabled),
			h.srv.SetKeySpec(h.keyID, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"),
			h.srv.HideKey(h.keyID, false),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	var err error
	switch s {
	case kmstest.Enabled:
	case kmstest.Disabled:
		err = h.srv.SetKeyState(h.keyID, awstest.StateDisabled)
	case kmstest.PendingDeletion:
		err = h.srv.SetKeyState(h.keyID, awstest.StatePendingDeletion)
	case kmstest.NotFound:
		err = h.srv.HideKey(h.keyID, true)
	case kmstest.PermissionDenied:
		for _, a := range []string{"kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"} {
			h.srv.DenyAction(a, true)
		}
	case kmstest.CredentialsRejected:
		// The server now expects another secret: our signatures fail
		// verification.
		h.srv.SetCredentials(testAKID, h.secret+"rotated")
	case kmstest.WrongKeyType:
		err = h.srv.SetKeySpec(h.keyID, "RSA_2048", "SIGN_VERIFY")
	case kmstest.Unreachable:
		h.down.Store(true)
		// Kept-alive connections would still reach the server.
		h.tr.CloseIdleConnections()
	case kmstest.Throttled:
		h.srv.Throttle(true)
	case kmstest.ServerError:
		h.srv.Fail5xx(true)
	case kmstest.Timeout:
		h.srv.Stall(true)
	default:
		// Deleted (AWS answers NotFoundException, as for NotFound),
		// Expired, NotYetActive, Malformed: no AWS KMS equivalent.
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	if err := h.srv.RotateKey(h.keyID); err != nil {
		t.Fatal(err)
	}
	return true
}

func (h *harness) Secrets(testing.TB) [][]byte {
	return append(h.srv.KeyMaterial(h.keyID), []byte(h.secret))
}
