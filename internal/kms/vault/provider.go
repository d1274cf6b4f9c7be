// Package vault is the kms.Provider for HashiCorp Vault's Transit secrets
// engine (and API-compatible servers such as OpenBao), through the official
// client github.com/hashicorp/vault/api.
//
// Wrap is transit/encrypt with associated_data = the aad (AEAD keys only,
// Vault ≥ 1.13); Unwrap is transit/decrypt. The wrapped ciphertext is
// Vault's own "vault:v<N>:<base64>" string, so an operator can decrypt it
// with the vault CLI; the KeyRef is {Provider "vault", KeyID
// "<mount>/<key>", KeyVersion "<N>"}.
//
// Classification of Vault's answers:
//
//   - 403 "permission denied": Vault gives the same answer for a bad token
//     and for a missing policy. The provider asks auth/token/lookup-self,
//     which every valid token may read: 403 there too →
//     CREDENTIALS_REJECTED, otherwise PERMISSION_DENIED.
//   - 404 on the key, or "encryption key not found" → KEY_NOT_FOUND.
//     Vault deletes keys outright, so a deleted key is KEY_NOT_FOUND.
//   - key type other than aes256-gcm96, aes128-gcm96, chacha20-poly1305 →
//     WRONG_KEY_TYPE (we need an AEAD cipher to bind the aad).
//   - a ciphertext whose version is below the key's min_decryption_version
//     ("…disallowed by policy (too old)") → KEY_DISABLED: Vault has no
//     "disabled" state; this is the key version being disabled for
//     decryption, which is exactly what the customer did.
//   - 503 (sealed, standby…) and other 5xx → SERVER_ERROR; 429 →
//     THROTTLED; transport failures → NETWORK_ERROR; the caller's deadline
//     → TIMEOUT. These are retried with jittered exponential backoff; INVALID
//     answers never are. The api client's own retries are disabled.
//   - anything else about the ciphertext (authentication failure, bad
//     prefix, version too new, bad base64) → kms.ErrDecrypt.
//
// The token is never logged and never part of an error or of String().
package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/cmkdb/cmkdb/internal/backoff"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this package.
const ProviderName = "vault"

// Config configures a Vault Transit provider.
type Config struct {
	// Address is the Vault server URL ("https://vault.example.com:8200").
	Address string
	// Token is the Vault token. It is a secret.
	Token string
	// Namespace is the Vault Enterprise namespace, if any.
	Namespace string
	// Mount is the transit mount path; default "transit".
	Mount string
	// Key is the transit key name.
	Key string
	// HTTPClient, if set, is the HTTP client the api client uses (TLS
	// configuration, test transports).
	HTTPClient *http.Client
	// Timeout bounds each HTTP request (default 30s); the caller's context
	// bounds the whole call including retries.
	Timeout time.Duration
	// MaxAttempts is the number of attempts on UNREACHABLE-class errors
	// (default 3; 1 disables retries).
	MaxAttempts int
	// Backoff is the first retry delay (default 200ms); it doubles on each
	// retry up to 5s, and each wait is drawn from its upper half (equal
	// jitter: [delay/2, delay)).
	Backoff time.Duration
}

// String never shows the token.
func (c Config) String() string {
	tok := "<none>"
	if c.Token != "" {
		tok = "<redacted>"
	}
	return fmt.Sprintf("vault.Config{Address:%q Namespace:%q Mount:%q Key:%q Token:%s}", c.Address, c.Namespace, c.Mount, c.Key, tok)
}

// GoString never shows the token either.
func (c Config) GoString() string { return c.String() }

// Provider is a kms.Provider over one Vault Transit key.
type Provider struct {
	client      *vaultapi.Client
	mount, key  string
	keyID       string
	maxAttempts int
	backoff     time.Duration
}

var _ kms.Provider = (*Provider)(nil)

// New builds a provider. It makes no request.
func New(cfg Config) (*Provider, error) {
	if cfg.Address == "" || cfg.Key == "" {
		return nil, errors.New("vault: Address and Key are required")
	}
	if cfg.Token == "" {
		return nil, errors.New("vault: Token is required")
	}
	mount := strings.Trim(cfg.Mount, "/")
	if mount == "" {
		mount = "transit"
	}
	if strings.ContainsAny(cfg.Key, "/?#") {
		return nil, fmt.Errorf("vault: invalid key name %q", cfg.Key)
	}
	ac := vaultapi.DefaultConfig()
	if ac.Error != nil {
		return nil, fmt.Errorf("vault: client config: %v", ac.Error)
	}
	ac.Address = cfg.Address
	// Our own retry loop classifies errors first; the client's would retry
	// 5xx and 429 behind our back and ignore our backoff policy.
	ac.MaxRetries = 0
	ac.Timeout = cfg.Timeout
	if ac.Timeout <= 0 {
		ac.Timeout = 30 * time.Second
	}
	if cfg.HTTPClient != nil {
		ac.HttpClient = cfg.HTTPClient
	}
	client, err := vaultapi.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("vault: new client: %v", err)
	}
	// NewClient picks up VAULT_TOKEN and VAULT_NAMESPACE from the
	// environment; the configuration is the only source we honour.
	client.SetToken(cfg.Token)
	client.ClearNamespace()
	if cfg.Namespace != "" {
		client.SetNamespace(cfg.Namespace)
	}
	p := &Provider{
		client:      client,
		mount:       mount,
		key:         cfg.Key,
		keyID:       mount + "/" + cfg.Key,
		maxAttempts: cfg.MaxAttempts,
		backoff:     cfg.Backoff,
	}
	if p.maxAttempts <= 0 {
		p.maxAttempts = 3
	}
	if p.backoff <= 0 {
		p.backoff = 200 * time.Millisecond
	}
	return p, nil
}

// String never shows the token.
func (p *Provider) String() string {
	return fmt.Sprintf("vault.Provider{%s at %s}", p.keyID, p.client.Address())
}

// GoString never shows the token either.
func (p *Provider) GoString() string { return p.String() }

func (p *Provider) ref(version int) kms.KeyRef {
	r := kms.KeyRef{Provider: ProviderName, KeyID: p.keyID}
	if version > 0 {
		r.KeyVersion = strconv.Itoa(version)
	}
	return r
}

// aeadTypes are the transit key types that authenticate associated data.
var aeadTypes = map[string]bool{
	"aes256-gcm96":      true,
	"aes128-gcm96":      true,
	"chacha20-poly1305": true,
}

// keyInfo is what we use of GET transit/keys/:name.
type keyInfo struct {
	typ           string
	latest        int
	minDecryption int
	lastRotated   time.Time
}

func (p *Provider) readKey(ctx context.Context, op string) (keyInfo, error) {
	var ki keyInfo
	sec, err := p.do(ctx, op, func(ctx context.Context) (*vaultapi.Secret, error) {
		return p.client.Logical().ReadWithContext(ctx, p.mount+"/keys/"+p.key)
	})
	if err != nil {
		return ki, err
	}
	if sec == nil || sec.Data == nil {
		return ki, p.errorf(op, 0, kms.ReasonKeyNotFound, "transit key %s does not exist", p.keyID)
	}
	ki.typ, _ = sec.Data["type"].(string)
	ki.latest = jsonInt(sec.Data["latest_version"])
	ki.minDecryption = jsonInt(sec.Data["min_decryption_version"])
	if keys, ok := sec.Data["keys"].(map[string]any); ok {
		switch v := keys[strconv.Itoa(ki.latest)].(type) {
		case json.Number:
			if n, err := v.Int64(); err == nil {
				ki.lastRotated = time.Unix(n, 0).UTC()
			}
		case map[string]any: // asymmetric keys
			if s, ok := v["creation_time"].(string); ok {
				ki.lastRotated, _ = time.Parse(time.RFC3339Nano, s)
			}
		}
	}
	if !aeadTypes[ki.typ] {
		return ki, p.errorf(op, 0, kms.ReasonWrongKeyType,
			"transit key %s is of type %q; an AEAD key (aes256-gcm96, aes128-gcm96 or chacha20-poly1305) is required", p.keyID, ki.typ)
	}
	if d, _ := sec.Data["derived"].(bool); d {
		return ki, p.errorf(op, 0, kms.ReasonWrongKeyType,
			"transit key %s is a derived key (it needs a per-request context); cmkdb binds its aad with associated_data on a non-derived AEAD key", p.keyID)
	}
	if ki.latest < 1 {
		return ki, p.errorf(op, 0, kms.ReasonKeyMalformed, "transit key %s reports no latest_version", p.keyID)
	}
	return ki, nil
}

func jsonInt(v any) int {
	switch x := v.(type) {
	case json.Number:
		n, _ := strconv.Atoi(x.String())
		return n
	case float64:
		return int(x)
	case int:
		return x
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

func (p *Provider) encrypt(ctx context.Context, op string, plaintext, aad []byte) (kms.Wrapped, error) {
	body := map[string]any{"plaintext": base64.StdEncoding.EncodeToString(plaintext)}
	if len(aad) > 0 {
		body["associated_data"] = base64.StdEncoding.EncodeToString(aad)
	}
	sec, err := p.do(ctx, op, func(ctx context.Context) (*vaultapi.Secret, error) {
		return p.client.Logical().WriteWithContext(ctx, p.mount+"/encrypt/"+p.key, body)
	})
	if err != nil {
		return kms.Wrapped{}, err
	}
	if sec == nil || sec.Data == nil {
		return kms.Wrapped{}, p.errorf(op, 0, kms.ReasonKeyNotFound, "transit key %s does not exist", p.keyID)
	}
	ct, _ := sec.Data["ciphertext"].(string)
	ver, ok := parseCiphertext(ct)
	if !ok {
		return kms.Wrapped{}, p.errorf(op, 0, kms.ReasonServerError, "Vault returned a malformed ciphertext")
	}
	if kv := jsonInt(sec.Data["key_version"]); kv != 0 && kv != ver {
		return kms.Wrapped{}, p.errorf(op, 0, kms.ReasonServerError, "Vault returned key_version %d for a v%d ciphertext", kv, ver)
	}
	return kms.Wrapped{Key: p.ref(ver), Ciphertext: []byte(ct)}, nil
}

// Wrap encrypts plaintext under the key's latest version. It reads the key
// first: Vault would happily RSA-encrypt under a key of the wrong type, and
// a wrapped key that cannot be bound to its aad must never be written.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	if _, err := p.readKey(ctx, "wrap"); err != nil {
		return kms.Wrapped{}, err
	}
	return p.encrypt(ctx, "wrap", plaintext, aad)
}

// ciphertextRE is the canonical form Vault produces. Vault itself is
// lenient (v0 means v1, non-canonical base64 decodes), so a record altered
// into a lenient form could unwrap: we accept only the canonical one.
var ciphertextRE = regexp.MustCompile(`^vault:v([1-9][0-9]{0,8}):([A-Za-z0-9+/]+={0,2})$`)

func parseCiphertext(ct string) (int, bool) {
	m := ciphertextRE.FindStringSubmatch(ct)
	if m == nil {
		return 0, false
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(m[2])
	if err != nil || base64.StdEncoding.EncodeToString(raw) != m[2] {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	return v, true
}

func (p *Provider) decryptErr(ref kms.KeyRef, detail string) error {
	return &decryptError{ref: ref, detail: detail}
}

// decryptError matches kms.ErrDecrypt and is not a verdict on the key.
type decryptError struct {
	ref    kms.KeyRef
	detail string
}

func (e *decryptError) Error() string {
	return fmt.Sprintf("kms unwrap %s: %v: %s", e.ref, kms.ErrDecrypt, e.detail)
}
func (e *decryptError) Unwrap() error { return kms.ErrDecrypt }

// Unwrap decrypts w with the version its ciphertext names.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, p.ctxError("unwrap", err)
	}
	if w.Key.Provider != ProviderName || w.Key.KeyID != p.keyID {
		return nil, p.decryptErr(w.Key, fmt.Sprintf("wrapped under %s, this provider holds %s", w.Key, p.ref(0)))
	}
	ct := string(w.Ciphertext)
	ver, ok := parseCiphertext(ct)
	if !ok {
		return nil, p.decryptErr(w.Key, "not a canonical Vault transit ciphertext")
	}
	if w.Key.KeyVersion != strconv.Itoa(ver) {
		return nil, p.decryptErr(w.Key, "key version in the record does not match the ciphertext")
	}
	body := map[string]any{"ciphertext": ct}
	if len(aad) > 0 {
		body["associated_data"] = base64.StdEncoding.EncodeToString(aad)
	}
	sec, err := p.do(ctx, "unwrap", func(ctx context.Context) (*vaultapi.Secret, error) {
		return p.client.Logical().WriteWithContext(ctx, p.mount+"/decrypt/"+p.key, body)
	})
	var ke *kms.Error
	if err != nil && errors.As(err, &ke) && ke.Reason == reasonBadRequest {
		// Vault said no about this ciphertext. Before blaming the
		// ciphertext, make sure it is not the key.
		if _, kerr := p.readKey(ctx, "unwrap"); kerr != nil {
			return nil, kerr
		}
		return nil, p.decryptErr(w.Key, ke.Detail)
	}
	if err != nil {
		return nil, err
	}
	if sec == nil || sec.Data == nil {
		return nil, p.errorf("unwrap", ver, kms.ReasonKeyNotFound, "transit key %s does not exist", p.keyID)
	}
	ptB64, _ := sec.Data["plaintext"].(string)
	pt, derr := base64.StdEncoding.DecodeString(ptB64)
	if derr != nil {
		return nil, p.errorf("unwrap", ver, kms.ReasonServerError, "Vault returned a malformed plaintext")
	}
	return pt, nil
}

// Check reads the key (type, versions, last rotation) and runs an
// encrypt/decrypt probe through the same paths Wrap and Unwrap use.
func (p *Provider) Check(ctx context.Context) kms.Status {
	now := time.Now().UTC()
	ki, err := p.readKey(ctx, "check")
	if err != nil {
		st := kms.StatusFromError(p.ref(0), err)
		st.CheckedAt = now
		return st
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	aad := []byte("cmkdb/kms-check")
	w, err := p.encrypt(ctx, "check", probe, aad)
	if err == nil {
		var got []byte
		got, err = p.Unwrap(ctx, w, aad)
		if err == nil && !bytes.Equal(got, probe) {
			err = p.errorf("check", ki.latest, kms.ReasonServerError, "Vault decrypted the probe to different bytes")
		}
		if errors.Is(err, kms.ErrDecrypt) {
			err = p.errorf("check", ki.latest, kms.ReasonServerError, "Vault could not decrypt its own probe ciphertext")
		}
	}
	ref := p.ref(ki.latest)
	if err == nil {
		ref = w.Key
	}
	st := kms.StatusFromError(ref, err)
	st.CheckedAt = now
	st.LastRotated = ki.lastRotated
	return st
}

// reasonBadRequest marks a 400 from decrypt before it is resolved into
// ErrDecrypt or a key verdict; it never leaves the package.
const reasonBadRequest kms.Reason = "vault-bad-request"

func (p *Provider) errorf(op string, version int, r kms.Reason, format string, a ...any) *kms.Error {
	return &kms.Error{Op: op, Key: p.ref(version), Reason: r, Detail: fmt.Sprintf(format, a...)}
}

func (p *Provider) ctxError(op string, err error) *kms.Error {
	return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonTimeout, Detail: "the caller's context ended before Vault answered", Err: err}
}

// do runs call with retries on UNREACHABLE-class failures.
func (p *Provider) do(ctx context.Context, op string, call func(context.Context) (*vaultapi.Secret, error)) (*vaultapi.Secret, error) {
	// Equal jitter: after failed attempt n the wait is uniform in
	// [d/2, d), d = backoff·2^(n-1) capped at 5 s.
	policy := backoff.Policy{Base: p.backoff, Max: 5 * time.Second, Low: 0.5, High: 1}
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, p.ctxError(op, err)
		}
		sec, err := call(ctx)
		if err == nil {
			return sec, nil
		}
		kerr := p.classify(ctx, op, err)
		if kerr.Reason.Validity() != kms.Unreachable || kerr.Reason == kms.ReasonTimeout ||
			kerr.Reason == reasonBadRequest || attempt >= p.maxAttempts {
			return nil, kerr
		}
		if !backoff.Wait(ctx, policy.Delay(attempt)) {
			return nil, p.ctxError(op, ctx.Err())
		}
	}
}

var tooOld = "disallowed by policy (too old)"

// classify turns a vault/api error into a *kms.Error carrying no secret.
func (p *Provider) classify(ctx context.Context, op string, err error) *kms.Error {
	if ctx.Err() != nil {
		return p.ctxError(op, ctx.Err())
	}
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		// Transport failures. The url.Error text holds the URL, never
		// the token (which travels in a header).
		r := kms.ReasonOf(err)
		if r != kms.ReasonTimeout {
			r = kms.ReasonNetwork
		}
		return &kms.Error{Op: op, Key: p.ref(0), Reason: r, Detail: "could not reach Vault at " + p.client.Address(), Err: sanitized(err)}
	}
	msg := strings.Join(re.Errors, "; ")
	if re.RawError {
		msg = "unparsable error body"
	}
	detail := fmt.Sprintf("Vault answered %d", re.StatusCode)
	if msg != "" {
		detail += ": " + msg
	}
	switch {
	case re.StatusCode == http.StatusForbidden:
		if p.tokenRejected(ctx) {
			return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonCredentialsRejected, Detail: detail + " (the token is not valid: auth/token/lookup-self is denied)"}
		}
		return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonPermissionDenied, Detail: detail + " (the token is valid but its policies do not allow this)"}
	case re.StatusCode == http.StatusNotFound:
		return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonKeyNotFound, Detail: detail}
	case re.StatusCode == http.StatusTooManyRequests:
		return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonThrottled, Detail: detail}
	case re.StatusCode >= 500:
		return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonServerError, Detail: detail}
	case re.StatusCode == http.StatusBadRequest:
		switch {
		case strings.Contains(msg, "encryption key not found"), strings.Contains(msg, "key not found"):
			return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonKeyNotFound, Detail: detail}
		case strings.Contains(msg, tooOld):
			return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonKeyDisabled,
				Detail: detail + " (the key version that wrapped this key is below the transit key's min_decryption_version)"}
		case strings.Contains(msg, "non-AEAD cipher suite"):
			return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonWrongKeyType, Detail: detail}
		}
		if op == "unwrap" {
			return &kms.Error{Op: op, Key: p.ref(0), Reason: reasonBadRequest, Detail: detail}
		}
	}
	// Any other 4xx on an encrypt or read: Vault refused our request
	// as malformed, which says nothing certain about the key.
	return &kms.Error{Op: op, Key: p.ref(0), Reason: kms.ReasonServerError, Detail: detail}
}

// tokenRejected tells a bad token from a missing policy: every valid token
// may look itself up (Vault's default policy).
func (p *Provider) tokenRejected(ctx context.Context) bool {
	_, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// sanitized keeps an error's text and its timeout/network nature, but not
// its chain (which could hold request objects).
func sanitized(err error) error {
	return &netError{msg: err.Error(), timeout: kms.ReasonOf(err) == kms.ReasonTimeout}
}

type netError struct {
	msg     string
	timeout bool
}

func (e *netError) Error() string   { return e.msg }
func (e *netError) Timeout() bool   { return e.timeout }
func (e *netError) Temporary() bool { return true }
