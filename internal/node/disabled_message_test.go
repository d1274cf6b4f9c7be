package node

import (
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// TestDisabledClientMessage: a database client reads the cause once and
// the fix, never the internal reason's paths, key-service URLs or KMS
// endpoints.
func TestDisabledClientMessage(t *testing.T) {
	internal := "node: keys: kms unwrap controlplane/key: KEY_DISABLED: Post \"https://127.0.0.1:41234/v1/unwrap\": " +
		"key file /srv/cmkdb-data/kms/local-cmk.json, endpoint https://kms.eu-west-1.amazonaws.com"
	tests := []struct {
		cause    kms.Reason
		wantWord string
		wantFix  string
	}{
		{kms.ReasonKeyDisabled, "KEY_DISABLED", "cmkdb ctl ear validate"},
		{kms.ReasonCredentialsRejected, "CREDENTIALS_REJECTED", "cmkdb ctl ear validate"},
		{kms.ReasonKeyDeleted, "KEY_DELETED", "restore the key"},
		{kms.ReasonServerError, "SERVER_ERROR", "does not answer"},
		{kms.ReasonTimeout, "TIMEOUT", "does not answer"},
		{"", "keys are not loaded", "cmkdb ctl ear validate"},
	}
	for _, tt := range tests {
		e := &DisabledError{State: State{Reason: internal, Cause: tt.cause, Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
		msg := e.ClientMessage()
		if !strings.HasPrefix(msg, "encryption key unavailable: ") || !strings.Contains(msg, tt.wantWord) || !strings.Contains(msg, tt.wantFix) {
			t.Errorf("cause %q: %q lacks the cause or the fix", tt.cause, msg)
		}
		if strings.Count(msg, tt.wantWord) != 1 {
			t.Errorf("cause %q: %q states the cause more than once", tt.cause, msg)
		}
		for _, leak := range []string{"https://", "127.0.0.1", "/srv/", "local-cmk.json", "amazonaws", "/v1/unwrap"} {
			if strings.Contains(msg, leak) {
				t.Errorf("cause %q: %q carries %q", tt.cause, msg, leak)
			}
		}
	}
	if got := mongoerr.Code(41001).Name(); got != "EncryptionKeyUnavailable" {
		t.Errorf("codeName of 41001 = %q", got)
	}
}
