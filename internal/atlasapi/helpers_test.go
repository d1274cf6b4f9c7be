package atlasapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mongodb-forks/digest"

	"github.com/cmkdb/cmkdb/internal/atlasapi"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
)

// env is a control plane behind the admin API, with an org owner key.
type env struct {
	t    testing.TB
	svc  *controlplane.Service
	srv  *httptest.Server
	api  string // srv.URL + "/api/atlas/v2"
	root key
}

type key struct{ pub, priv string }

func newEnv(t testing.TB, notifier controlplane.Notifier) *env {
	t.Helper()
	svc, err := controlplane.Open(context.Background(), controlplane.Options{
		Dir: t.TempDir(), MinCheckInterval: time.Second, Notifier: notifier, ProviderPaths: []string{os.TempDir()}, AllowPrivateWebhooks: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("controlplane.Open: %v", err)
	}
	srv := httptest.NewServer(atlasapi.New(svc))
	t.Cleanup(func() {
		srv.Close()
		if err := svc.Close(); err != nil {
			t.Errorf("svc.Close: %v", err)
		}
	})
	k, err := svc.CreateAPIKey(context.Background(), "test", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
	if err != nil {
		t.Fatalf("CreateAPIKey: %v", err)
	}
	return &env{t: t, svc: svc, srv: srv, api: srv.URL + "/api/atlas/v2", root: key{k.PublicKey, k.PrivateKey}}
}

// keyWith creates an API key with roles.
func (e *env) keyWith(roles ...controlplane.RoleAssignment) key {
	e.t.Helper()
	k, err := e.svc.CreateAPIKey(context.Background(), "role test", roles)
	if err != nil {
		e.t.Fatalf("CreateAPIKey: %v", err)
	}
	return key{k.PublicKey, k.PrivateKey}
}

// resp is an answer: status, headers and the raw body.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map (numbers as float64).
func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return m
}

// errorCode checks the answer is an Atlas error envelope and returns its code.
func (r resp) errorCode(t testing.TB) string {
	t.Helper()
	m := r.json(t)
	for _, f := range []string{"error", "errorCode", "detail", "reason", "parameters"} {
		if _, ok := m[f]; !ok {
			t.Fatalf("error envelope %s lacks %q", r.body, f)
		}
	}
	if int(m["error"].(float64)) != r.status {
		t.Fatalf("envelope error %v != status %d", m["error"], r.status)
	}
	return m["errorCode"].(string)
}

// call sends method path (relative to /api/atlas/v2) as k, with body
// marshaled unless it is a string or []byte.
func (e *env) call(k key, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, e.api+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/vnd.atlas.2023-01-01+json")
	}
	req.Header.Set("Accept", "application/vnd.atlas.2023-01-01+json")
	client := http.DefaultClient
	if k.pub != "" {
		client = &http.Client{Transport: digest.NewTransport(k.pub, k.priv)}
	}
	res, err := client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// must sends and fails the test unless the status is want.
func (e *env) must(k key, want int, method, path string, body any) resp {
	e.t.Helper()
	r := e.call(k, method, path, body)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// project creates a project and returns its id.
func (e *env) project(name string) string {
	e.t.Helper()
	return e.must(e.root, http.StatusOK, http.MethodPost, "/groups", map[string]any{"name": name}).json(e.t)["id"].(string)
}

// localKey creates a local key file.
func localKey(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cmk.json")
	if _, err := local.Create(path); err != nil {
		t.Fatalf("local.Create: %v", err)
	}
	return path
}

// aws is a faithful AWS KMS test server with one access key.
type aws struct {
	srv            *awstest.Server
	access, secret string
}

func newAWS(t *testing.T) *aws {
	t.Helper()
	a := &aws{access: "AKIACMKDBTESTKEY0001", secret: "cmkdb-test-secret-access-key-0123456789"}
	a.srv = awstest.NewServer(awstest.Options{Credentials: map[string]string{a.access: a.secret}})
	t.Cleanup(a.srv.Close)
	return a
}

// awsKms is a complete awsKms object for key id.
func (a *aws) awsKms(id string) map[string]any {
	return map[string]any{"enabled": true, "customerMasterKeyID": id, "region": "US_EAST_1",
		"accessKeyID": a.access, "secretAccessKey": a.secret, "endpoint": a.srv.URL}
}

// digestTransport authenticates as k.
func digestTransport(k key) http.RoundTripper { return digest.NewTransport(k.pub, k.priv) }
