package atlasapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/webhook"
)

// senderNotifier adapts webhook.Sender to controlplane.Notifier.
type senderNotifier struct{ s *webhook.Sender }

func (n senderNotifier) Notify(ctx context.Context, url string, secret []byte, body []byte, id string) {
	event := "alert.open"
	if strings.HasSuffix(id, "-CLOSED") {
		event = "alert.close"
	}
	// Send only queues; a full queue would block the control plane, which
	// a test never reaches.
	_ = n.s.Send(ctx, webhook.Delivery{URL: url, Secret: secret, Body: body, ID: id, Event: event})
}

// received is one webhook POST.
type received struct {
	signature string
	body      []byte
}

// receiver is a webhook endpoint collecting POSTs.
type receiver struct {
	mu   sync.Mutex
	got  []received
	srv  *httptest.Server
	seen chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{seen: make(chan struct{}, 16)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{signature: r.Header.Get(webhook.SignatureHeader), body: b})
		rc.mu.Unlock()
		rc.seen <- struct{}{}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// wait returns the n-th POST (1-based), failing after a few seconds.
func (rc *receiver) wait(t *testing.T, n int) received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		rc.mu.Lock()
		if len(rc.got) >= n {
			r := rc.got[n-1]
			rc.mu.Unlock()
			return r
		}
		rc.mu.Unlock()
		select {
		case <-rc.seen:
		case <-deadline:
			t.Fatalf("webhook POST %d never arrived", n)
		}
	}
}

// TestKeyLifecycleAndWebhook disables a local key under a running
// configuration and follows it through the API: the resource, the
// cluster, events, an alert and its webhook; then restores it with
// "try again".
func TestKeyLifecycleAndWebhook(t *testing.T) {
	sender := webhook.New(webhook.Options{MaxAttempts: 1, AllowPrivate: true})
	t.Cleanup(func() { _ = sender.Close(context.Background()) })
	e := newEnv(t, senderNotifier{sender})
	rc := newReceiver(t)
	const hookSecret = "webhook-secret-0123456789"

	gid := e.project("lifecycle")
	keyFile := localKey(t)
	g := "/groups/" + gid
	e.must(e.root, 200, http.MethodPatch, g+"/encryptionAtRest", map[string]any{"local": map[string]any{"keyFile": keyFile}})
	e.must(e.root, 201, http.MethodPost, g+"/clusters", map[string]any{"name": "c1", "encryptionAtRestProvider": "LOCAL"})
	cfg := e.must(e.root, 201, http.MethodPost, g+"/alertConfigs", map[string]any{
		"eventTypeName": "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "enabled": true,
		"notifications": []any{map[string]any{"typeName": "WEBHOOK", "intervalMin": 5,
			"webhookUrl": rc.srv.URL + "/hook", "webhookSecret": hookSecret}},
	}).json(t)
	cfgID := cfg["id"].(string)

	// Alert configurations never show the webhook secret.
	for _, path := range []string{g + "/alertConfigs", g + "/alertConfigs/" + cfgID} {
		if r := e.must(e.root, 200, http.MethodGet, path, nil); strings.Contains(string(r.body), hookSecret) || !strings.Contains(string(r.body), "****") {
			t.Fatalf("GET %s does not mask the webhook secret: %s", path, r.body)
		}
	}

	if _, err := local.Disable(keyFile); err != nil {
		t.Fatal(err)
	}
	ear := e.must(e.root, 200, http.MethodGet, g+"/encryptionAtRest", nil).json(t)
	if obj := ear["local"].(map[string]any); obj["valid"] != false || obj["enabled"] != true {
		t.Fatalf("after disabling the key: %v", obj)
	}
	cl := e.must(e.root, 200, http.MethodGet, g+"/clusters/c1", nil).json(t)
	if st := cl["encryptionAtRestStatus"].(map[string]any); st["state"] != "DISABLED" {
		t.Fatalf("cluster status %v", st)
	}
	for _, et := range []string{"LOCAL_ENCRYPTION_KEY_INVALID", "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "CLUSTER_ENCRYPTION_AT_REST_DISABLED"} {
		ev := e.must(e.root, 200, http.MethodGet, g+"/events?eventType="+et, nil).json(t)
		if ev["totalCount"].(float64) < 1 {
			t.Fatalf("no %s event: %v", et, ev)
		}
	}
	open := e.must(e.root, 200, http.MethodGet, g+"/alerts?status=OPEN", nil).json(t)
	var alertID string
	for _, a := range open["results"].([]any) {
		if m := a.(map[string]any); m["alertConfigId"] == cfgID {
			alertID = m["id"].(string)
		}
	}
	if alertID == "" {
		t.Fatalf("no open alert for the configuration: %v", open)
	}

	hook := rc.wait(t, 1)
	if want := webhook.Signature([]byte(hookSecret), hook.body); hook.signature != want {
		t.Fatalf("X-MMS-Signature %q, want %q", hook.signature, want)
	}
	var payload map[string]any
	if err := json.Unmarshal(hook.body, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["eventTypeName"] != "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID" || payload["status"] != "OPEN" || payload["id"] != alertID {
		t.Fatalf("webhook payload %v", payload)
	}
	if strings.Contains(string(hook.body), hookSecret) {
		t.Fatalf("webhook payload carries its secret")
	}

	// A disabled cluster cannot rotate.
	if code := e.must(e.root, 409, http.MethodPost, g+"/clusters/c1/encryptionAtRest/rotateMasterKey", nil).errorCode(t); code != "CANNOT_ROTATE_KEY_ENCRYPTION_DISABLED" {
		t.Fatalf("rotate while disabled: %s", code)
	}

	// Restore the key and press "try again".
	if _, err := local.Enable(keyFile); err != nil {
		t.Fatal(err)
	}
	ear = e.must(e.root, 200, http.MethodPost, g+"/encryptionAtRest/validate", nil).json(t)
	if obj := ear["local"].(map[string]any); obj["valid"] != true {
		t.Fatalf("after try again: %v", obj)
	}
	cl = e.must(e.root, 200, http.MethodGet, g+"/clusters/c1", nil).json(t)
	if st := cl["encryptionAtRestStatus"].(map[string]any); st["state"] != "AVAILABLE" {
		t.Fatalf("cluster status after try again %v", st)
	}
	alert := e.must(e.root, 200, http.MethodGet, g+"/alerts/"+alertID, nil).json(t)
	if alert["status"] != "CLOSED" {
		t.Fatalf("alert after try again %v", alert)
	}
	closed := rc.wait(t, 2)
	if err := json.Unmarshal(closed.body, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["status"] != "CLOSED" || closed.signature != webhook.Signature([]byte(hookSecret), closed.body) {
		t.Fatalf("closing webhook %v (signature %q)", payload, closed.signature)
	}
	e.must(e.root, 202, http.MethodPost, g+"/clusters/c1/encryptionAtRest/rotateMasterKey", nil)
	nodes := e.must(e.root, 200, http.MethodGet, g+"/clusters/c1/nodes", nil).json(t)
	if nodes["totalCount"].(float64) != 0 {
		t.Fatalf("nodes %v", nodes)
	}

	// PATCH toggles the configuration; PUT accepts back what GET answered
	// (the masked secret included); DELETE removes it.
	e.must(e.root, 200, http.MethodPatch, g+"/alertConfigs/"+cfgID, map[string]any{"enabled": false})
	put := e.must(e.root, 200, http.MethodGet, g+"/alertConfigs/"+cfgID, nil).json(t)
	if put["enabled"] != false {
		t.Fatalf("toggle: %v", put)
	}
	e.must(e.root, 200, http.MethodPut, g+"/alertConfigs/"+cfgID, put)
	e.must(e.root, 204, http.MethodDelete, g+"/alertConfigs/"+cfgID, nil)
	e.must(e.root, 404, http.MethodGet, g+"/alertConfigs/"+cfgID, nil)
}

// TestMaintenanceWindow sets, reads and defers the window.
func TestMaintenanceWindow(t *testing.T) {
	e := newEnv(t, nil)
	g := "/groups/" + e.project("mw")
	e.must(e.root, 200, http.MethodPatch, g+"/maintenanceWindow", map[string]any{"dayOfWeek": 3, "hourOfDay": 4, "autoDeferOnceEnabled": false})
	e.must(e.root, 200, http.MethodPatch, g+"/maintenanceWindow", map[string]any{"hourOfDay": 5})
	mw := e.must(e.root, 200, http.MethodGet, g+"/maintenanceWindow", nil).json(t)
	if mw["dayOfWeek"].(float64) != 3 || mw["hourOfDay"].(float64) != 5 {
		t.Fatalf("window %v", mw)
	}
	if code := e.must(e.root, 400, http.MethodPatch, g+"/maintenanceWindow", map[string]any{"dayOfWeek": 9}).errorCode(t); code != "INVALID_ATTRIBUTE" {
		t.Fatalf("dayOfWeek 9: %s", code)
	}
	e.must(e.root, 204, http.MethodPost, g+"/maintenanceWindow/defer", nil)
	if mw := e.must(e.root, 200, http.MethodGet, g+"/maintenanceWindow", nil).json(t); mw["deferredUntil"] == nil {
		t.Fatalf("defer left no trace: %v", mw)
	}
}
