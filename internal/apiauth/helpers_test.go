package apiauth

import (
	"context"
	"crypto/md5" //nolint:gosec // digest clients use MD5
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mongodb-forks/digest"
)

// Test keys: the public key is the digest username, the private key its
// password, as in Atlas programmatic API keys.
const (
	pubA  = "pubkeyA"
	privA = "4e2a-private-key-A"
	pubB  = "pubkeyB"
	privB = "9f1c-private-key-B"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// harness is an httptest server guarded by an Authenticator the way the
// admin API will use it. It records every Authenticate error so tests can
// assert on the typed error, not only on the status code.
type harness struct {
	a     *Authenticator
	srv   *httptest.Server
	clock *fakeClock

	mu      sync.Mutex
	errs    []error
	lookups []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{clock: &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	keys := map[string][]byte{pubA: []byte(privA), pubB: []byte(privB)}
	h.a = New(Realm, func(_ context.Context, pk string) ([]byte, bool) {
		h.mu.Lock()
		h.lookups = append(h.lookups, pk)
		h.mu.Unlock()
		s, ok := keys[pk]
		return s, ok
	})
	h.a.now = h.clock.Now
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pk, err := h.a.Authenticate(r)
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
		if err != nil {
			h.a.Challenge(w, errors.Is(err, ErrStaleNonce))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, pk)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) lastErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errs[len(h.errs)-1]
}

func (h *harness) allErrs() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...)
}

// viaDigest performs a request through the Atlas client's digest transport.
func (h *harness) viaDigest(t *testing.T, pub, priv, method, path string) (*http.Response, string) {
	t.Helper()
	tr := digest.NewTransportWithHTTPRoundTripper(pub, priv, h.srv.Client().Transport)
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// mintHeader lets the digest transport answer a real challenge from the
// server but intercepts the authenticated request, returning the
// Authorization header it would have sent. The nonce count is therefore not
// yet consumed on the server.
func (h *harness) mintHeader(t *testing.T, pub, priv, method, path string) string {
	t.Helper()
	var captured string
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if a := r.Header.Get("Authorization"); a != "" {
			captured = a
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		}
		return h.srv.Client().Transport.RoundTrip(r)
	})
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := digest.NewTransportWithHTTPRoundTripper(pub, priv, inner).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if captured == "" {
		t.Fatal("digest transport sent no Authorization header")
	}
	return captured
}

// send issues one request with a literal Authorization header (or none).
func (h *harness) send(t *testing.T, method, path, authz string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// clientDigest is an independent RFC 7616 MD5/qop=auth client computation,
// used to forge headers with chosen nc values.
func clientDigest(user, realm, pass, method, uri, nonce, nc, cnonce string) string {
	hx := func(s string) string { return fmt.Sprintf("%x", md5.Sum([]byte(s))) } //nolint:gosec
	ha1 := hx(user + ":" + realm + ":" + pass)
	ha2 := hx(method + ":" + uri)
	resp := hx(strings.Join([]string{ha1, nonce, nc, cnonce, "auth", ha2}, ":"))
	return fmt.Sprintf(`Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=MD5, qop=auth, nc=%s, cnonce=%q`,
		user, realm, nonce, uri, resp, nc, cnonce)
}

// headerParam extracts one parameter from a Digest header for test surgery.
func headerParam(t *testing.T, h, name string) string {
	t.Helper()
	_, p, err := parseAuthorization(h)
	if err != nil {
		t.Fatalf("parse %q: %v", h, err)
	}
	return p[name]
}
