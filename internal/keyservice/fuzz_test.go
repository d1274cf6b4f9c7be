package keyservice_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// FuzzKeyServiceRequests feeds arbitrary bodies to every key service route
// as an authenticated node: the server answers with a classified error or
// a result, never panics, never a 5xx, and keeps serving.
//
// The control plane is set up once per worker, and its store lives in a
// RAM-backed directory: a report that changes the node's record is a synced
// store write, which on a busy machine's disk stalled the fuzzer.
func FuzzKeyServiceRequests(f *testing.F) {
	dir := testenv.RAMDir(f)
	svc, err := controlplane.Open(context.Background(), controlplane.Options{Dir: filepath.Join(dir, "cp"), ProviderPaths: []string{dir}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { svc.Close() })
	keyFile := filepath.Join(dir, "cmk.json")
	if _, err := local.Create(keyFile); err != nil {
		f.Fatal(err)
	}
	g, err := svc.CreateGroup(context.Background(), "fuzz", "fuzz", "")
	if err != nil {
		f.Fatal(err)
	}
	p, _ := controlplane.ParseEARPatch([]byte(`{"local":{"keyFile":"` + keyFile + `"}}`))
	if _, err := svc.PatchEncryptionAtRest(context.Background(), "fuzz", g.ID, p); err != nil {
		f.Fatal(err)
	}
	if _, err := svc.CreateCluster(context.Background(), "fuzz", g.ID, controlplane.Cluster{Name: "C0", EncryptionAtRestProvider: "LOCAL"}); err != nil {
		f.Fatal(err)
	}
	h := keyservice.NewServer(svc, nil)
	peer := &x509.Certificate{Subject: pkix.Name{CommonName: g.ID + "/C0/n1"}}

	f.Add("/v1/wrap", []byte(`{"plaintext":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","aad":"eA=="}`))
	f.Add("/v1/unwrap", []byte(`{"wrapped":{"key":{"provider":"local","keyId":"x","keyVersion":"1"},"ciphertext":"AAAA"},"aad":""}`))
	f.Add("/v1/report", []byte(`{"state":"AVAILABLE","masterKeyVersion":1,"masterKeyCreatedAt":"2026-01-01T00:00:00Z"}`))
	f.Add("/v1/unwrap", []byte(`{"wrapped":null}`))
	f.Add("/v1/wrap", []byte(`[`))
	f.Fuzz(func(t *testing.T, route string, body []byte) {
		switch route {
		case "/v1/wrap", "/v1/unwrap", "/v1/report":
		default:
			route = "/v1/unwrap"
		}
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Timeout(5*time.Second))
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, route, bytes.NewReader(body))
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{peer}}}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q: HTTP %d %s", route, body, w.Code, w.Body.String())
		}
	})
}
