package keyservice_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// TestClientRefusesAnswersWithoutABody: a 2xx with no body or a body that
// is not JSON (a proxy, or a server giving up on a cancelled request) is an
// error, never an empty key or a zero directive.
func TestClientRefusesAnswersWithoutABody(t *testing.T) {
	for _, tc := range []struct{ name, body string }{{"empty", ""}, {"not json", "<html>ok</html>"}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			pool := x509.NewCertPool()
			pool.AddCert(srv.Certificate())
			c, err := keyservice.NewClient(srv.URL, &tls.Config{RootCAs: pool})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if out, err := c.Unwrap(ctx, kms.Wrapped{Ciphertext: []byte("x")}, nil); err == nil || kms.ReasonOf(err) != kms.ReasonServerError {
				t.Errorf("Unwrap = %d bytes, %v; want a %s error", len(out), err, kms.ReasonServerError)
			}
			if _, err := c.Wrap(ctx, []byte("0123456789abcdef"), nil); err == nil || kms.ReasonOf(err) != kms.ReasonServerError {
				t.Errorf("Wrap error = %v; want a %s error", err, kms.ReasonServerError)
			}
			if st := c.Check(ctx); st.Validity != kms.Unreachable || st.Reason != kms.ReasonServerError {
				t.Errorf("Check = %v %s; want UNREACHABLE %s", st.Validity, st.Reason, kms.ReasonServerError)
			}
		})
	}
}
