package atlasapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/atlasapi"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// TestWebhookTargetsRefused: alert configurations naming link-local or
// metadata targets are refused with 400 INVALID_ATTRIBUTE whatever the
// control plane allows; loopback and private ones only without the opt-in.
func TestWebhookTargetsRefused(t *testing.T) {
	tests := []struct {
		url          string
		allowPrivate bool
		want         int
	}{
		{"https://hooks.example.com/alerts", false, http.StatusCreated},
		{"http://169.254.169.254/latest/meta-data/iam/security-credentials/", true, http.StatusBadRequest},
		{"http://metadata.google.internal/computeMetadata/v1/", true, http.StatusBadRequest},
		{"http://100.100.100.200/latest/meta-data/", true, http.StatusBadRequest},
		{"http://[fd00:ec2::254]/latest/meta-data/", true, http.StatusBadRequest},
		{"http://[fe80::1%25eth0]/", true, http.StatusBadRequest},
		{"http://127.0.0.1:8080/hook", false, http.StatusBadRequest},
		{"http://127.0.0.1:8080/hook", true, http.StatusCreated},
		{"http://10.0.0.5/hook", false, http.StatusBadRequest},
		{"http://10.0.0.5/hook", true, http.StatusCreated},
		{"http://localhost/hook", false, http.StatusBadRequest},
	}
	envs := map[bool]*env{}
	for _, allow := range []bool{false, true} {
		svc, err := controlplane.Open(context.Background(), controlplane.Options{Dir: t.TempDir(), MinCheckInterval: time.Second,
			AllowPrivateWebhooks: allow, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(atlasapi.New(svc))
		t.Cleanup(func() { srv.Close(); _ = svc.Close() })
		k, _ := svc.CreateAPIKey(context.Background(), "root", []controlplane.RoleAssignment{{RoleName: controlplane.RoleOrgOwner}})
		envs[allow] = &env{t: t, svc: svc, srv: srv, api: srv.URL + "/api/atlas/v2", root: key{k.PublicKey, k.PrivateKey}}
	}
	gids := map[bool]string{false: envs[false].project("p"), true: envs[true].project("p")}
	for _, tt := range tests {
		e := envs[tt.allowPrivate]
		body := map[string]any{"eventTypeName": "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED", "enabled": true,
			"notifications": []map[string]any{{"typeName": "WEBHOOK", "webhookUrl": tt.url}}}
		r := e.call(e.root, "POST", "/groups/"+gids[tt.allowPrivate]+"/alertConfigs", body)
		if r.status != tt.want {
			t.Errorf("%s (allowPrivate %v): %d %s, want %d", tt.url, tt.allowPrivate, r.status, r.body, tt.want)
			continue
		}
		if tt.want == http.StatusBadRequest {
			if code := r.errorCode(t); code != "INVALID_ATTRIBUTE" {
				t.Errorf("%s: error code %s", tt.url, code)
			}
		}
	}
}
