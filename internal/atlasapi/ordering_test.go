package atlasapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
)

// TestEncryptionAtRestRules walks Atlas's ordering rules and error codes in
// sequence on one project: each step's state is what the previous left.
func TestEncryptionAtRestRules(t *testing.T) {
	e := newEnv(t, nil)
	a := newAWS(t)
	keyID, _ := a.srv.CreateSymmetricKey()
	disabledID, _ := a.srv.CreateSymmetricKey()
	if err := a.srv.SetKeyState(disabledID, awstest.StateDisabled); err != nil {
		t.Fatal(err)
	}
	otherID, _ := a.srv.CreateSymmetricKey()
	gid := e.project("rules")
	ear := "/groups/" + gid + "/encryptionAtRest"
	clusters := "/groups/" + gid + "/clusters"

	without := func(obj map[string]any, field string) map[string]any {
		out := map[string]any{}
		for k, v := range obj {
			if k != field {
				out[k] = v
			}
		}
		return out
	}
	with := func(obj map[string]any, field string, v any) map[string]any {
		out := without(obj, field)
		out[field] = v
		return out
	}

	steps := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		code   string // errorCode, "" on success
	}{
		{"cluster AWS before project config", http.MethodPost, clusters,
			map[string]any{"name": "c1", "encryptionAtRestProvider": "AWS"}, 400, "ENCRYPTION_AT_REST_NOT_ENABLED"},
		{"first PATCH missing a field", http.MethodPatch, ear,
			map[string]any{"awsKms": without(a.awsKms(keyID), "region")}, 400, "MISSING_ATTRIBUTE"},
		{"bad AWS secret", http.MethodPatch, ear,
			map[string]any{"awsKms": with(a.awsKms(keyID), "secretAccessKey", "wrong-secret-value")}, 400, "INVALID_AWS_CREDENTIALS"},
		{"disabled AWS key", http.MethodPatch, ear,
			map[string]any{"awsKms": a.awsKms(disabledID)}, 400, "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED"},
		{"unknown provider value on a cluster", http.MethodPost, clusters,
			map[string]any{"name": "c0", "encryptionAtRestProvider": "BOGUS"}, 400, "INVALID_ENCRYPTION_AT_REST_PROVIDER"},
		{"valid project config", http.MethodPatch, ear, map[string]any{"awsKms": a.awsKms(keyID)}, 200, ""},
		{"cluster with AWS", http.MethodPost, clusters,
			map[string]any{"name": "c1", "encryptionAtRestProvider": "AWS", "replicationSpecs": []any{}, "backupEnabled": false}, 201, ""},
		{"disable while used", http.MethodPatch, ear,
			map[string]any{"awsKms": map[string]any{"enabled": false}}, 409, "CANNOT_DISABLE_ENCRYPTION_AT_REST"},
		{"AWS to AZURE on a cluster", http.MethodPatch, clusters + "/c1",
			map[string]any{"encryptionAtRestProvider": "AZURE"}, 409, "CANNOT_CHANGE_ENCRYPTION_AT_REST_PROVIDER"},
		{"later PATCH with only a changed field", http.MethodPatch, ear,
			map[string]any{"awsKms": map[string]any{"customerMasterKeyID": otherID}}, 200, ""},
		{"cluster back to NONE", http.MethodPatch, clusters + "/c1",
			map[string]any{"encryptionAtRestProvider": "NONE"}, 200, ""},
		{"disable once unused", http.MethodPatch, ear,
			map[string]any{"awsKms": map[string]any{"enabled": false}}, 200, ""},
		{"missing cluster", http.MethodGet, clusters + "/nope", nil, 404, "CLUSTER_NOT_FOUND"},
		{"invalid group id", http.MethodGet, "/groups/not-an-id/clusters", nil, 400, "INVALID_GROUP_ID"},
	}
	for _, s := range steps {
		r := e.call(e.root, s.method, s.path, s.body)
		if r.status != s.status {
			t.Fatalf("%s: status %d, want %d: %s", s.name, r.status, s.status, r.body)
		}
		if s.code != "" {
			if got := r.errorCode(t); got != s.code {
				t.Fatalf("%s: errorCode %s, want %s: %s", s.name, got, s.code, r.body)
			}
		}
	}

	// The later PATCH kept every other attribute and validated the new key.
	got := e.must(e.root, 200, http.MethodGet, ear, nil).json(t)
	aws := got["awsKms"].(map[string]any)
	if aws["enabled"] != false {
		t.Fatalf("after disable: %v", aws)
	}
	var sawOther bool
	events := e.must(e.root, 200, http.MethodGet, "/groups/"+gid+"/events?eventType=ENCRYPTION_AT_REST_CONFIGURATION_UPDATED", nil).json(t)
	for _, ev := range events["results"].([]any) {
		m := ev.(map[string]any)
		if m["eventTypeName"] != "ENCRYPTION_AT_REST_CONFIGURATION_UPDATED" {
			t.Fatalf("eventType filter let through %v", m["eventTypeName"])
		}
		if d, _ := m["detail"].(string); d != "" && strings.Contains(d, otherID) {
			sawOther = true
		}
	}
	if !sawOther {
		t.Fatalf("no configuration event names the changed key: %v", events)
	}
}
