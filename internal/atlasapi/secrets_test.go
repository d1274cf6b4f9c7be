package atlasapi_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/atlasapi"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// bodies records every webhook body the control plane hands over.
type bodies struct {
	mu  sync.Mutex
	got [][]byte
}

func (b *bodies) Notify(_ context.Context, _ string, _ []byte, body []byte, _ string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, append([]byte(nil), body...))
}

func (b *bodies) all() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Join(b.got, []byte("\n"))
}

// syncBuf is a log sink safe for concurrent writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// echoingKMS sits in front of the faithful AWS KMS and, when told to,
// answers every call with an error whose message quotes the secret access
// key, as a careless KMS (or proxy) might.
type echoingKMS struct {
	srv  *httptest.Server
	mode atomic.Value // "", "5xx" or "4xx"
}

func newEchoingKMS(t *testing.T, backend, secret string) *echoingKMS {
	e := &echoingKMS{}
	e.mode.Store("")
	u, _ := url.Parse(backend)
	proxy := httputil.NewSingleHostReverseProxy(u)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch e.mode.Load().(string) {
		case "5xx":
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, `{"__type":"KMSInternalException","message":"internal failure for credential %s"}`, secret)
		case "4xx":
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"__type":"AccessDeniedException","message":"the secret %s is not authorized to perform kms:Encrypt"}`, secret)
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// TestSecretsNeverLeave: a KMS whose error messages quote the secret access
// key drives the project through a failed validation, an unreachable KMS
// and an invalid key. The secret appears in no API answer (read-only key
// included), no event, no alert, no webhook body and no log line.
func TestSecretsNeverLeave(t *testing.T) {
	a := newAWS(t)
	echo := newEchoingKMS(t, a.srv.URL, a.secret)
	logs := &syncBuf{}
	hooks := &bodies{}
	svc, err := controlplane.Open(context.Background(), controlplane.Options{
		Dir: t.TempDir(), MinCheckInterval: time.Second, Notifier: hooks, ProviderPaths: []string{os.TempDir()},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(atlasapi.New(svc))
	t.Cleanup(func() { srv.Close(); _ = svc.Close() })
	rk, _ := svc.CreateAPIKey(context.Background(), "root", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
	e := &env{t: t, svc: svc, srv: srv, api: srv.URL + "/api/atlas/v2", root: key{rk.PublicKey, rk.PrivateKey}}
	gid := e.project("secrets")
	reader := e.keyWith(controlplane.RoleAssignment{RoleName: controlplane.RoleGroupReadOnly, GroupID: gid})

	_, arn := a.srv.CreateSymmetricKey()
	obj := a.awsKms(arn)
	obj["endpoint"] = echo.srv.URL
	var answers [][]byte
	// A validation that fails with the secret in the KMS's message.
	echo.mode.Store("4xx")
	r := e.call(e.root, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"awsKms": obj})
	if r.status != http.StatusBadRequest {
		t.Fatalf("PATCH against a refusing KMS: %d %s", r.status, r.body)
	}
	answers = append(answers, r.body)
	// A working configuration, a cluster on it, and an alert with a webhook
	// for the invalid key.
	echo.mode.Store("")
	e.must(e.root, http.StatusOK, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"awsKms": obj})
	e.must(e.root, http.StatusCreated, "POST", "/groups/"+gid+"/clusters", map[string]any{"name": "c1", "encryptionAtRestProvider": "AWS"})
	e.must(e.root, http.StatusCreated, "POST", "/groups/"+gid+"/alertConfigs", map[string]any{
		"eventTypeName": "AWS_ENCRYPTION_KEY_INVALID", "enabled": true,
		"notifications": []map[string]any{{"typeName": "WEBHOOK", "webhookUrl": "https://hooks.example.com/h"}}})
	// Unreachable, then invalid, each with the secret in the message.
	for _, mode := range []string{"5xx", "4xx"} {
		echo.mode.Store(mode)
		r := e.call(e.root, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil)
		answers = append(answers, r.body)
	}
	ks, err := svc.CheckNow(context.Background(), gid)
	if err != nil || ks.Validity != "INVALID" {
		t.Fatalf("key state %+v %v, want INVALID", ks, err)
	}
	for _, k := range []key{reader, e.root} {
		for _, p := range []string{"/encryptionAtRest", "/events?itemsPerPage=500", "/alerts", "/clusters", "/clusters/c1", "/clusters/c1/nodes"} {
			r := e.call(k, "GET", "/groups/"+gid+p, nil)
			if r.status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p, r.status, r.body)
			}
			answers = append(answers, r.body)
		}
	}
	// The test did reach the paths it means to: the events and alerts exist.
	all := bytes.Join(answers, []byte("\n"))
	for _, want := range []string{"ENCRYPTION_AT_REST_CONFIGURATION_VALIDATION_FAILED", "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED",
		"AWS_ENCRYPTION_KEY_INVALID", "[redacted]"} {
		if !bytes.Contains(all, []byte(want)) {
			t.Fatalf("the answers lack %s:\n%s", want, all)
		}
	}
	if len(hooks.all()) == 0 || !strings.Contains(logs.String(), "AWS_ENCRYPTION_KEY_INVALID") {
		t.Fatalf("no webhook body or no event log line:\nwebhooks: %s\nlogs: %s", hooks.all(), logs.String())
	}
	for what, text := range map[string][]byte{"API answers": all, "webhook bodies": hooks.all(), "logs": []byte(logs.String())} {
		if bytes.Contains(text, []byte(a.secret)) {
			t.Errorf("the secret access key is in the %s:\n%s", what, text)
		}
	}
}
