// Package azure is the Azure Key Vault provider: it wraps cmkdb's keys under
// a customer's RSA key in Key Vault through the official SDK (azkeys, with an
// azidentity client secret credential).
//
// RSA-OAEP-256 has no associated data, so the aad is bound in our own
// envelope: every Wrap draws a fresh 256-bit data key, has Key Vault wrap it
// with RSA-OAEP-256 under the CMK version in use, and seals the plaintext
// locally with AES-256-GCM under that data key, the aad (and the key
// reference) as GCM additional data. Unwrap reverses it, so the wrapped
// record is useless without both the CMK and the exact aad.
package azure

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this provider.
const ProviderName = "azure"

// Defaults for Config's zero values.
const (
	DefaultCallTimeout   = 10 * time.Second
	DefaultMaxRetries    = 2
	DefaultRetryDelay    = 200 * time.Millisecond
	DefaultMaxRetryDelay = 2 * time.Second
	// ExpiryWarning is how close to its expiry a key is reported as
	// expiring (AZURE_KEY_VAULT_KEY_EXPIRING); the key stays VALID.
	ExpiryWarning = 48 * time.Hour
)

// Atlas error codes reported in Detail.
const (
	AtlasKeyNotEnabled      = "AZURE_KEY_VAULT_KEY_NOT_ENABLED"
	AtlasKeyExpired         = "AZURE_KEY_VAULT_KEY_EXPIRED"
	AtlasKeyExpiring        = "AZURE_KEY_VAULT_KEY_EXPIRING"
	AtlasKeyNotActive       = "AZURE_KEY_VAULT_KEY_NOT_ACTIVE"
	AtlasKeyNotFound        = "AZURE_KEY_VAULT_KEY_NOT_FOUND"
	AtlasInvalidCredentials = "INVALID_AZURE_CREDENTIALS"
	AtlasNoPermission       = "NO_PERMISSION_TO_ENCRYPT_DECRYPT"
)

// Config configures a Provider.
type Config struct {
	// VaultURL is https://<vault>.vault.azure.net (other clouds: their
	// vault domain).
	VaultURL string
	KeyName  string
	// KeyVersion pins a key version. Empty means version-less: the
	// provider wraps under whatever version is current, and Check reports it.
	KeyVersion   string
	TenantID     string
	ClientID     string
	ClientSecret string
	// AuthorityHost overrides the Azure AD authority
	// (https://login.microsoftonline.com/ by default).
	AuthorityHost string
	// Transport overrides the HTTP client for both Key Vault and Azure AD
	// (tests: a client trusting the test server's certificate).
	Transport policy.Transporter
	// CallTimeout bounds every call whose context has no earlier deadline,
	// retries included. Zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// MaxRetries is the number of retries of UNREACHABLE-class failures
	// (429, 5xx, network). Zero means DefaultMaxRetries, negative none.
	MaxRetries int
	// RetryDelay and MaxRetryDelay shape azcore's jittered exponential
	// backoff. A Retry-After longer than MaxRetryDelay is not waited for.
	RetryDelay, MaxRetryDelay time.Duration
	// Now is the clock for nbf/exp checks (tests). Nil means time.Now.
	Now func() time.Time
}

// String redacts the client secret.
func (c Config) String() string {
	sec := `""`
	if c.ClientSecret != "" {
		sec = "[REDACTED]"
	}
	return fmt.Sprintf("azure.Config{VaultURL:%q KeyName:%q KeyVersion:%q TenantID:%q ClientID:%q ClientSecret:%s}",
		c.VaultURL, c.KeyName, c.KeyVersion, c.TenantID, c.ClientID, sec)
}

// GoString redacts the secret from %#v too.
func (c Config) GoString() string { return c.String() }

// Provider implements kms.Provider over Azure Key Vault.
type Provider struct {
	client   *azkeys.Client
	name     string
	version  string
	keyID    string // vault URL + /keys/ + name
	timeout  time.Duration
	now      func() time.Time
	tenantID string
}

// String names the key, never the secret.
func (p *Provider) String() string { return "azure key vault provider " + p.keyID }

// GoString keeps %#v free of the credential.
func (p *Provider) GoString() string { return p.String() }

// New validates cfg and builds a provider. It makes no network call.
func New(cfg Config) (*Provider, error) {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("azure kms: invalid config: "+f, a...)
	}
	u, err := url.Parse(strings.TrimRight(cfg.VaultURL, "/"))
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, bad("VaultURL %q must be https://<vault>.vault.azure.net", cfg.VaultURL)
	}
	if cfg.KeyName == "" || strings.ContainsAny(cfg.KeyName, "/?#") {
		return nil, bad("KeyName %q", cfg.KeyName)
	}
	if strings.ContainsAny(cfg.KeyVersion, "/?#") {
		return nil, bad("KeyVersion %q", cfg.KeyVersion)
	}
	if cfg.TenantID == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, bad("TenantID, ClientID and ClientSecret are required")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = -1 // azcore: no retries
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = DefaultRetryDelay
	}
	if cfg.MaxRetryDelay <= 0 {
		cfg.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	co := azcore.ClientOptions{
		Retry: policy.RetryOptions{
			MaxRetries:    int32(cfg.MaxRetries),
			RetryDelay:    cfg.RetryDelay,
			MaxRetryDelay: cfg.MaxRetryDelay,
			// Only UNREACHABLE-class answers: never a 4xx other than 429.
			StatusCodes: []int{http.StatusTooManyRequests, http.StatusInternalServerError,
				http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout},
		},
		Transport: cfg.Transport,
	}
	if cfg.AuthorityHost != "" {
		co.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: cfg.AuthorityHost}
	}
	cred, err := azidentity.NewClientSecretCredential(cfg.TenantID, cfg.ClientID, cfg.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: true})
	if err != nil {
		// azidentity validates the tenant id; its message has no secret.
		return nil, bad("credential: %s", sanitize(err.Error(), cfg.ClientSecret))
	}
	vault := u.Scheme + "://" + u.Host
	client, err := azkeys.NewClient(vault, cred, &azkeys.ClientOptions{ClientOptions: co})
	if err != nil {
		return nil, bad("key vault client: %s", sanitize(err.Error(), cfg.ClientSecret))
	}
	return &Provider{
		client:   client,
		name:     cfg.KeyName,
		version:  cfg.KeyVersion,
		keyID:    vault + "/keys/" + cfg.KeyName,
		timeout:  cfg.CallTimeout,
		now:      cfg.Now,
		tenantID: cfg.TenantID,
	}, nil
}

func (p *Provider) ref(version string) kms.KeyRef {
	return kms.KeyRef{Provider: ProviderName, KeyID: p.keyID, KeyVersion: version}
}

func (p *Provider) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.timeout)
}

// keyInfo is what a GET of the key told us.
type keyInfo struct {
	version  string
	created  time.Time
	expiring string // warning, when the key expires within ExpiryWarning
}

// getKey fetches a key version ("" = current) and enforces the key
// requirements: enabled, active, not expired, RSA 2048/3072/4096.
func (p *Provider) getKey(ctx context.Context, op, version string) (keyInfo, error) {
	ref := p.ref(version)
	resp, err := p.client.GetKey(ctx, p.name, version, nil)
	if err != nil {
		err = p.classify(ctx, op, ref, err)
		if errors.Is(err, kms.ErrKeyNotFound) {
			err = p.deletedOrMissing(ctx, op, ref, err)
		}
		return keyInfo{}, err
	}
	kb := resp.KeyBundle
	if kb.Key == nil || kb.Key.KID == nil {
		return keyInfo{}, p.fail(op, ref, kms.ReasonServerError, "", "Key Vault returned a key bundle without a key")
	}
	info := keyInfo{version: kb.Key.KID.Version()}
	if info.version == "" || (version != "" && info.version != version) || kb.Key.KID.Name() != p.name {
		return keyInfo{}, p.fail(op, ref, kms.ReasonServerError, "", "Key Vault returned a key bundle for another key")
	}
	ref = p.ref(info.version)
	now := p.now()
	a := kb.Attributes
	if a == nil {
		a = &azkeys.KeyAttributes{}
	}
	if a.Created != nil {
		info.created = a.Created.UTC()
	}
	kty := ""
	if kb.Key.Kty != nil {
		kty = string(*kb.Key.Kty)
	}
	bits := new(big.Int).SetBytes(kb.Key.N).BitLen()
	switch {
	case kty != string(azkeys.KeyTypeRSA) && kty != string(azkeys.KeyTypeRSAHSM):
		return keyInfo{}, p.fail(op, ref, kms.ReasonWrongKeyType, "",
			fmt.Sprintf("key type is %s; the key must be RSA or RSA-HSM of 2048, 3072 or 4096 bits", kty))
	case bits != 2048 && bits != 3072 && bits != 4096:
		return keyInfo{}, p.fail(op, ref, kms.ReasonWrongKeyType, "",
			fmt.Sprintf("key is %s of %d bits; the key must be RSA or RSA-HSM of 2048, 3072 or 4096 bits", kty, bits))
	case a.Enabled != nil && !*a.Enabled:
		return keyInfo{}, p.fail(op, ref, kms.ReasonKeyDisabled, AtlasKeyNotEnabled, "the key is disabled in Key Vault")
	case a.NotBefore != nil && now.Before(*a.NotBefore):
		return keyInfo{}, p.fail(op, ref, kms.ReasonKeyNotYetActive, AtlasKeyNotActive,
			"the key's activation date "+a.NotBefore.UTC().Format(time.RFC3339)+" is in the future")
	case a.Expires != nil && !now.Before(*a.Expires):
		return keyInfo{}, p.fail(op, ref, kms.ReasonKeyExpired, AtlasKeyExpired,
			"the key expired at "+a.Expires.UTC().Format(time.RFC3339))
	case a.Expires != nil && a.Expires.Sub(now) < ExpiryWarning:
		info.expiring = AtlasKeyExpiring + ": the key expires at " + a.Expires.UTC().Format(time.RFC3339) +
			", within 48 hours; extend its expiry date or rotate to a new key"
	}
	return info, nil
}

// deletedOrMissing tells a soft-deleted key from one that does not exist.
func (p *Provider) deletedOrMissing(ctx context.Context, op string, ref kms.KeyRef, notFound error) error {
	if ref.KeyVersion != "" {
		// A version is missing. If the name still holds a key, say what is
		// wrong with it (another key with the same name, disabled...), or
		// just that the version is gone.
		if _, err := p.getKey(ctx, op, ""); err != nil {
			return err
		}
		return notFound
	}
	resp, err := p.client.GetDeletedKey(ctx, p.name, nil)
	if err != nil {
		return notFound
	}
	detail := "the key was deleted (soft delete); recover it with `az keyvault key recover` before it is purged"
	if resp.ScheduledPurgeDate != nil {
		detail += " on " + resp.ScheduledPurgeDate.UTC().Format(time.RFC3339)
	}
	return p.fail(op, ref, kms.ReasonKeyDeleted, AtlasKeyNotFound, detail)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The envelope: version byte, uint16 length and the wrapped data key, the
// GCM nonce, the GCM ciphertext and tag, and a CRC32C of all that.
const (
	envelopeV1 = 1
	dekLen     = 32
	nonceLen   = 12
)

// envelopeAAD is the GCM additional data: the key reference and the
// wrapped data key, then the caller's aad, each length-prefixed.
func envelopeAAD(ref kms.KeyRef, wrappedDEK, aad []byte) []byte {
	var b []byte
	b = append(b, "cmkdb/azure/v1"...)
	for _, f := range [][]byte{[]byte(ref.KeyID), []byte(ref.KeyVersion), wrappedDEK, aad} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// Wrap implements kms.Provider.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return kms.Wrapped{}, p.ctxError("wrap", p.ref(p.version), err)
	}
	ctx, cancel := p.callCtx(ctx)
	defer cancel()
	info, err := p.getKey(ctx, "wrap", p.version)
	if err != nil {
		return kms.Wrapped{}, err
	}
	ref := p.ref(info.version)
	dek := make([]byte, dekLen)
	if _, err := rand.Read(dek); err != nil {
		return kms.Wrapped{}, p.fail("wrap", ref, kms.ReasonServerError, "", "no randomness")
	}
	defer clear(dek)
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	resp, err := p.client.WrapKey(ctx, p.name, info.version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: dek}, nil)
	if err != nil {
		return kms.Wrapped{}, p.classify(ctx, "wrap", ref, err)
	}
	if resp.KID != nil && resp.KID.Version() != info.version {
		return kms.Wrapped{}, p.fail("wrap", ref, kms.ReasonServerError, "", "Key Vault wrapped under another key version")
	}
	wrapped := resp.Result
	if len(wrapped) == 0 || len(wrapped) > 0xffff {
		return kms.Wrapped{}, p.fail("wrap", ref, kms.ReasonServerError, "", "Key Vault returned an empty wrapped key")
	}
	gcm := newGCM(dek)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return kms.Wrapped{}, p.fail("wrap", ref, kms.ReasonServerError, "", "no randomness")
	}
	out := []byte{envelopeV1}
	out = binary.BigEndian.AppendUint16(out, uint16(len(wrapped)))
	out = append(out, wrapped...)
	out = append(out, nonce...)
	out = gcm.Seal(out, nonce, plaintext, envelopeAAD(ref, wrapped, aad))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli))
	return kms.Wrapped{Key: ref, Ciphertext: out}, nil
}

func newGCM(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key length is fixed
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

func decryptErr(what string) error {
	return fmt.Errorf("azure kms unwrap: %s: %w", what, kms.ErrDecrypt)
}

// Unwrap implements kms.Provider.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, p.ctxError("unwrap", w.Key, err)
	}
	if w.Key.Provider != ProviderName || w.Key.KeyID != p.keyID || w.Key.KeyVersion == "" ||
		strings.ContainsAny(w.Key.KeyVersion, "/?#") {
		return nil, decryptErr(fmt.Sprintf("record names key %s, this provider uses %s", w.Key, p.ref("")))
	}
	ct := w.Ciphertext
	// The checksum catches corrupted records locally, before they cost a
	// Key Vault call (and quota); security rests on RSA-OAEP and GCM.
	if len(ct) < 4 || crc32.Checksum(ct[:len(ct)-4], castagnoli) != binary.BigEndian.Uint32(ct[len(ct)-4:]) {
		return nil, decryptErr("checksum mismatch (corrupted record)")
	}
	ct = ct[:len(ct)-4]
	if len(ct) < 3 || ct[0] != envelopeV1 {
		return nil, decryptErr("malformed envelope")
	}
	n := int(binary.BigEndian.Uint16(ct[1:3]))
	if n == 0 || len(ct) < 3+n+nonceLen+16 {
		return nil, decryptErr("malformed envelope")
	}
	wrapped, nonce, sealed := ct[3:3+n], ct[3+n:3+n+nonceLen], ct[3+n+nonceLen:]

	ctx, cancel := p.callCtx(ctx)
	defer cancel()
	if _, err := p.getKey(ctx, "unwrap", w.Key.KeyVersion); err != nil {
		return nil, err
	}
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	resp, err := p.client.UnwrapKey(ctx, p.name, w.Key.KeyVersion, azkeys.KeyOperationParameters{Algorithm: &alg, Value: wrapped}, nil)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusBadRequest && ctx.Err() == nil {
			// Key Vault could not decrypt the wrapped data key: the
			// record was altered, the key is fine.
			return nil, decryptErr("Key Vault rejected the wrapped data key")
		}
		return nil, p.classify(ctx, "unwrap", w.Key, err)
	}
	dek := resp.Result
	defer clear(dek)
	if len(dek) != dekLen {
		return nil, decryptErr("wrapped data key has the wrong length")
	}
	pt, err := newGCM(dek).Open(nil, nonce, sealed, envelopeAAD(w.Key, wrapped, aad))
	if err != nil {
		return nil, decryptErr("authentication failed (altered, or wrong associated data)")
	}
	return pt, nil
}

// Check implements kms.Provider: it reads the key, enforces the key
// requirements, and proves wrapKey and unwrapKey with a probe.
func (p *Provider) Check(ctx context.Context) kms.Status {
	ref := p.ref(p.version)
	if err := ctx.Err(); err != nil {
		return kms.StatusFromError(ref, p.ctxError("check", ref, err))
	}
	ctx, cancel := p.callCtx(ctx)
	defer cancel()
	info, err := p.getKey(ctx, "check", p.version)
	if err != nil {
		return kms.StatusFromError(ref, err)
	}
	ref = p.ref(info.version)
	probe := make([]byte, dekLen)
	_, _ = rand.Read(probe)
	alg := azkeys.EncryptionAlgorithmRSAOAEP256
	wr, err := p.client.WrapKey(ctx, p.name, info.version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: probe}, nil)
	if err != nil {
		return kms.StatusFromError(ref, p.classify(ctx, "check", ref, err))
	}
	ur, err := p.client.UnwrapKey(ctx, p.name, info.version, azkeys.KeyOperationParameters{Algorithm: &alg, Value: wr.Result}, nil)
	if err != nil {
		return kms.StatusFromError(ref, p.classify(ctx, "check", ref, err))
	}
	if !bytes.Equal(ur.Result, probe) {
		return kms.StatusFromError(ref, p.fail("check", ref, kms.ReasonKeyMalformed, "",
			"unwrapKey did not return what wrapKey wrapped"))
	}
	st := kms.StatusFromError(ref, nil)
	st.Detail = info.expiring
	st.LastRotated = info.created
	return st
}

func (p *Provider) fail(op string, ref kms.KeyRef, r kms.Reason, atlas, detail string) *kms.Error {
	if atlas == "" {
		atlas = atlasCode(r)
	}
	if atlas != "" {
		detail = atlas + ": " + detail
	}
	return &kms.Error{Op: op, Key: ref, Reason: r, Detail: detail}
}

func atlasCode(r kms.Reason) string {
	switch r {
	case kms.ReasonCredentialsRejected:
		return AtlasInvalidCredentials
	case kms.ReasonPermissionDenied:
		return AtlasNoPermission
	case kms.ReasonKeyDisabled:
		return AtlasKeyNotEnabled
	case kms.ReasonKeyExpired:
		return AtlasKeyExpired
	case kms.ReasonKeyNotYetActive:
		return AtlasKeyNotActive
	case kms.ReasonKeyNotFound, kms.ReasonKeyDeleted:
		return AtlasKeyNotFound
	}
	return ""
}

// ctxError classifies a dead context: never a verdict on the key.
func (p *Provider) ctxError(op string, ref kms.KeyRef, err error) *kms.Error {
	return &kms.Error{Op: op, Key: ref, Reason: kms.ReasonTimeout, Detail: "the call's context ended before Key Vault answered", Err: err}
}

// kvErrorBody is Key Vault's error body.
type kvErrorBody struct {
	Error struct {
		Code       string `json:"code"`
		Message    string `json:"message"`
		InnerError *struct {
			Code string `json:"code"`
		} `json:"innererror"`
	} `json:"error"`
}

// aadErrorBody is Azure AD's token error body.
type aadErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
}

func readBody(resp *http.Response) []byte {
	if resp == nil || resp.Body == nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return b
}

// classify turns an SDK error into a *kms.Error. The SDK error itself is
// never kept: only the status, codes and the service's message, so no
// request detail can leak.
func (p *Provider) classify(ctx context.Context, op string, ref kms.KeyRef, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return p.ctxError(op, ref, cause)
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		return p.classifyAuth(op, ref, afe)
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		var body kvErrorBody
		_ = json.Unmarshal(readBody(re.RawResponse), &body)
		code, inner, msg := body.Error.Code, "", sanitize(body.Error.Message, "")
		if code == "" {
			code = re.ErrorCode
		}
		if body.Error.InnerError != nil {
			inner = body.Error.InnerError.Code
		}
		detail := fmt.Sprintf("Key Vault answered %d %s", re.StatusCode, code)
		if inner != "" {
			detail += "/" + inner
		}
		if msg != "" {
			detail += ": " + msg
		}
		switch {
		case re.StatusCode == http.StatusUnauthorized:
			return p.fail(op, ref, kms.ReasonCredentialsRejected, "", detail)
		case re.StatusCode == http.StatusForbidden && inner == "KeyDisabled":
			return p.fail(op, ref, kms.ReasonKeyDisabled, "", detail)
		case re.StatusCode == http.StatusForbidden && inner == "KeyExpired":
			return p.fail(op, ref, kms.ReasonKeyExpired, "", detail)
		case re.StatusCode == http.StatusForbidden && inner == "KeyNotYetValid":
			return p.fail(op, ref, kms.ReasonKeyNotYetActive, "", detail)
		case re.StatusCode == http.StatusForbidden:
			return p.fail(op, ref, kms.ReasonPermissionDenied, "", detail)
		case re.StatusCode == http.StatusNotFound:
			return p.fail(op, ref, kms.ReasonKeyNotFound, "", detail)
		case re.StatusCode == http.StatusTooManyRequests:
			return p.fail(op, ref, kms.ReasonThrottled, "", detail)
		case re.StatusCode == http.StatusRequestTimeout || re.StatusCode == http.StatusGatewayTimeout:
			return p.fail(op, ref, kms.ReasonTimeout, "", detail)
		default:
			// 5xx, and 4xx answers that say nothing about the key: when in
			// doubt, do not shut clusters down.
			return p.fail(op, ref, kms.ReasonServerError, "", detail)
		}
	}
	var ne net.Error
	var oe *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &ne) && ne.Timeout(), os.IsTimeout(err):
		return p.fail(op, ref, kms.ReasonTimeout, "", "Key Vault did not answer in time")
	case errors.As(err, &dnsErr):
		return p.fail(op, ref, kms.ReasonNetwork, "", "cannot resolve the Key Vault or Azure AD host: "+dnsErr.Err)
	case errors.As(err, &oe):
		return p.fail(op, ref, kms.ReasonNetwork, "", "cannot reach Key Vault or Azure AD: "+oe.Op+" "+sanitize(oe.Err.Error(), ""))
	case errors.As(err, &ne):
		return p.fail(op, ref, kms.ReasonNetwork, "", "network error talking to Key Vault or Azure AD")
	}
	return p.fail(op, ref, kms.ReasonServerError, "", "unexpected error from the Azure SDK: "+errShape(err))
}

func (p *Provider) classifyAuth(op string, ref kms.KeyRef, afe *azidentity.AuthenticationFailedError) error {
	resp := afe.RawResponse
	if resp == nil {
		// No answer from Azure AD: the cause is the network.
		return p.fail(op, ref, kms.ReasonNetwork, "", "cannot get a token from Azure AD (no response)")
	}
	var body aadErrorBody
	_ = json.Unmarshal(readBody(resp), &body)
	desc := body.Description
	if i := strings.Index(desc, " Trace ID:"); i >= 0 {
		desc = desc[:i]
	}
	detail := fmt.Sprintf("Azure AD answered %d %s", resp.StatusCode, body.Error)
	if desc != "" {
		detail += ": " + sanitize(desc, "")
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return p.fail(op, ref, kms.ReasonThrottled, "", detail)
	case resp.StatusCode >= 500:
		return p.fail(op, ref, kms.ReasonServerError, "", detail)
	case resp.StatusCode >= 400:
		// invalid_client (bad secret, AADSTS7000215), unauthorized_client
		// (unknown application, AADSTS700016), invalid_request on an
		// unknown tenant (AADSTS90002): the credentials are rejected.
		return p.fail(op, ref, kms.ReasonCredentialsRejected, "", detail)
	}
	return p.fail(op, ref, kms.ReasonServerError, "", detail)
}

// errShape names an unexpected error's type, not its text: the text of an
// unknown error could carry anything.
func errShape(err error) string { return fmt.Sprintf("%T", err) }

// sanitize bounds a service message and removes the secret if it somehow
// appears in it.
func sanitize(s, secret string) string {
	if secret != "" {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}
