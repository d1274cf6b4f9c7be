package vaulttest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// call makes a raw HTTP request, to pin the wire shapes the official client
// relies on.
func call(t *testing.T, s *Server, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body %q is not JSON", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

func wantErrors(t *testing.T, what string, status int, body map[string]any, wantStatus int, want ...string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("%s: status %d, want %d (%v)", what, status, wantStatus, body)
	}
	errs, ok := body["errors"].([]any)
	if !ok || len(errs) != len(want) {
		t.Fatalf("%s: errors %v, want %q", what, body["errors"], want)
	}
	for i, w := range want {
		if errs[i] != w {
			t.Fatalf("%s: errors[%d] = %q, want %q", what, i, errs[i], w)
		}
	}
}

func TestWireShapes(t *testing.T) {
	s := New()
	defer s.Close()
	root := s.RootToken

	st, b := call(t, s, "GET", "/v1/transit/keys/k", "bogus", "")
	wantErrors(t, "unknown token", st, b, 403, "permission denied")
	st, b = call(t, s, "GET", "/v1/auth/token/lookup-self", "bogus", "")
	wantErrors(t, "lookup-self, unknown token", st, b, 403, "permission denied")
	st, b = call(t, s, "GET", "/v1/transit/keys/k", root, "")
	wantErrors(t, "missing key", st, b, 404)

	st, _ = call(t, s, "POST", "/v1/transit/keys/k", root, `{"type":"aes256-gcm96"}`)
	if st != 204 {
		t.Fatalf("create: %d", st)
	}
	st, b = call(t, s, "GET", "/v1/transit/keys/k", root, "")
	data, _ := b["data"].(map[string]any)
	if st != 200 || data["type"] != "aes256-gcm96" || data["latest_version"] != 1.0 || data["min_decryption_version"] != 1.0 || data["deletion_allowed"] != false {
		t.Fatalf("read key: %d %v", st, b)
	}
	keys, _ := data["keys"].(map[string]any)
	if ts, ok := keys["1"].(float64); !ok || time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Fatalf("keys = %v", data["keys"])
	}

	pt := base64.StdEncoding.EncodeToString([]byte("hello"))
	aad := base64.StdEncoding.EncodeToString([]byte("ctx"))
	st, b = call(t, s, "PUT", "/v1/transit/encrypt/k", root, `{"plaintext":"`+pt+`","associated_data":"`+aad+`"}`)
	data, _ = b["data"].(map[string]any)
	ct, _ := data["ciphertext"].(string)
	if st != 200 || !strings.HasPrefix(ct, "vault:v1:") || data["key_version"] != 1.0 {
		t.Fatalf("encrypt: %d %v", st, b)
	}
	st, b = call(t, s, "POST", "/v1/transit/decrypt/k", root, `{"ciphertext":"`+ct+`","associated_data":"`+aad+`"}`)
	data, _ = b["data"].(map[string]any)
	if st != 200 || data["plaintext"] != pt {
		t.Fatalf("decrypt: %d %v", st, b)
	}
	st, b = call(t, s, "POST", "/v1/transit/decrypt/k", root, `{"ciphertext":"`+ct+`"}`)
	wantErrors(t, "decrypt without aad", st, b, 400, "cipher: message authentication failed")
	st, b = call(t, s, "POST", "/v1/transit/decrypt/k", root, `{"ciphertext":"nope"}`)
	wantErrors(t, "decrypt garbage", st, b, 400, "invalid ciphertext: no prefix")
	st, b = call(t, s, "POST", "/v1/transit/decrypt/k", root, `{"ciphertext":"vault:v7:AAAA"}`)
	wantErrors(t, "decrypt too new", st, b, 400, "invalid ciphertext: version is too new")
	st, b = call(t, s, "POST", "/v1/transit/decrypt/missing", root, `{"ciphertext":"`+ct+`"}`)
	wantErrors(t, "decrypt missing key", st, b, 400, "encryption key not found")

	// Rotation, min_decryption_version.
	if st, _ = call(t, s, "POST", "/v1/transit/keys/k/rotate", root, ""); st != 200 {
		t.Fatalf("rotate: %d", st)
	}
	st, b = call(t, s, "POST", "/v1/transit/keys/k/config", root, `{"min_decryption_version":2}`)
	if st != 200 {
		t.Fatalf("config: %d %v", st, b)
	}
	st, b = call(t, s, "POST", "/v1/transit/decrypt/k", root, `{"ciphertext":"`+ct+`","associated_data":"`+aad+`"}`)
	wantErrors(t, "decrypt too old", st, b, 400, ErrTooOld)

	// Policies: least privilege on k, nothing on other keys.
	tok := s.NewToken(TransitPolicy("transit", "k"))
	st, b = call(t, s, "POST", "/v1/transit/encrypt/k", tok, `{"plaintext":"`+pt+`"}`)
	if st != 200 {
		t.Fatalf("encrypt with policy: %d %v", st, b)
	}
	st, b = call(t, s, "POST", "/v1/transit/keys/k/rotate", tok, "")
	wantErrors(t, "rotate without policy", st, b, 403, "permission denied")
	st, b = call(t, s, "POST", "/v1/transit/encrypt/new", tok, `{"plaintext":"`+pt+`"}`)
	wantErrors(t, "encrypt upsert without create", st, b, 403, "permission denied")
	st, _ = call(t, s, "GET", "/v1/auth/token/lookup-self", tok, "")
	if st != 200 {
		t.Fatalf("lookup-self: %d", st)
	}

	// Deletion needs deletion_allowed.
	st, b = call(t, s, "DELETE", "/v1/transit/keys/k", root, "")
	wantErrors(t, "delete not allowed", st, b, 400, "deletion is not allowed for this key")
	call(t, s, "POST", "/v1/transit/keys/k/config", root, `{"deletion_allowed":true}`)
	if st, _ = call(t, s, "DELETE", "/v1/transit/keys/k", root, ""); st != 204 {
		t.Fatalf("delete: %d", st)
	}

	// Sealed and injected faults.
	s.Seal()
	st, b = call(t, s, "GET", "/v1/transit/keys/k", root, "")
	wantErrors(t, "sealed", st, b, 503, "Vault is sealed")
	s.Unseal()
	s.SetFault(Throttle)
	if st, _ = call(t, s, "GET", "/v1/transit/keys/k", root, ""); st != 429 {
		t.Fatalf("throttle: %d", st)
	}
	s.SetFault(Fail5xx)
	if st, _ = call(t, s, "GET", "/v1/transit/keys/k", root, ""); st != 500 {
		t.Fatalf("5xx: %d", st)
	}
	s.SetFault(NoFault)
}

func TestPolicyMatching(t *testing.T) {
	p := Policy{"transit/*": {CapRead}, "transit/keys/secret": {CapDeny}, "transit/encrypt/k": {CapUpdate}}
	for _, c := range []struct {
		path, cap string
		want      bool
	}{
		{"transit/keys/k", CapRead, true},
		{"transit/keys/secret", CapRead, false},
		{"transit/encrypt/k", CapUpdate, true},
		{"transit/encrypt/k", CapRead, false}, // exact match wins over the glob
		{"transit/encrypt/k2", CapUpdate, false},
		{"sys/health", CapRead, false},
	} {
		if got := p.allows(c.path, c.cap); got != c.want {
			t.Errorf("allows(%s, %s) = %v, want %v", c.path, c.cap, got, c.want)
		}
	}
}
