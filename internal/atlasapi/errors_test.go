package atlasapi

import (
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// TestRedacted proves a KMS error quoting a credential of the PATCH body is
// scrubbed before it is answered, in detail and parameters alike.
func TestRedacted(t *testing.T) {
	body := []byte(`{"awsKms":{"secretAccessKey":"wJalrXUtnFEMI","accessKeyID":"AKIAEXAMPLE"},"vaultTransit":{"token":"hvs.token"},"settings":{}}`)
	secrets := secretValues(body)
	ae := &controlplane.APIError{Status: 400, Code: "INVALID_AWS_CREDENTIALS",
		Detail: "signature for wJalrXUtnFEMI and hvs.token rejected", Parameters: []any{"wJalrXUtnFEMI", 7}}
	got := redacted(ae, scrubSecrets(secrets))
	if strings.Contains(got.Detail, "wJalrXUtnFEMI") || strings.Contains(got.Detail, "hvs.token") || got.Parameters[0] != "[redacted]" || got.Parameters[1] != 7 {
		t.Fatalf("redacted: %+v", got)
	}
	if !strings.Contains(got.Detail, "rejected") || ae.Detail == got.Detail {
		t.Fatalf("redacted changed the wrong text or the original: %+v / %+v", got, ae)
	}
}

func TestLoggedPathHidesDownloadTokens(t *testing.T) {
	for in, want := range map[string]string{
		"/api/atlas/v2/backup/downloads/abcdef0123": "/api/atlas/v2/backup/downloads/(token)",
		"/api/atlas/v2/groups/x/clusters":           "/api/atlas/v2/groups/x/clusters",
	} {
		if got := loggedPath(in); got != want {
			t.Errorf("loggedPath(%q) = %q, want %q", in, got, want)
		}
	}
}
