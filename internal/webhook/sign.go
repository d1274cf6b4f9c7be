package webhook

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what Atlas receivers verify.
	"encoding/base64"
)

// Headers Atlas sets on webhook requests.
const (
	// SignatureHeader carries Signature(secret, body) when a secret is set.
	SignatureHeader = "X-MMS-Signature"
	// EventHeader carries the alert state, e.g. "alert.open".
	EventHeader = "X-MMS-Event"
)

// Signature returns the X-MMS-Signature value for body: the base64-encoded
// HMAC-SHA1 of the exact body bytes keyed with the webhook secret. Atlas
// sends the bare base64 value, with no "sha1=" prefix, so receivers written
// for Atlas verify it unchanged.
func Signature(secret, body []byte) string {
	m := hmac.New(sha1.New, secret)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
