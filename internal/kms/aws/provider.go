// Package aws is the AWS KMS provider: it wraps cmkdb's keys with Encrypt
// and Decrypt on a customer's symmetric KMS key through the official SDK
// (aws-sdk-go-v2/service/kms), binding the associated data as the
// encryption context.
package aws

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/cmkdb/cmkdb/internal/backoff"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this provider.
const ProviderName = "aws"

// aadContextKey is the encryption-context key that carries the aad.
const aadContextKey = "cmkdb-aad"

// Defaults for Config's zero values.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultMaxAttempts = 3
	DefaultMaxBackoff  = 2 * time.Second
)

// Config configures a Provider.
type Config struct {
	Region string
	// KeyID is the key ARN or key id. An ARN is recommended: it is what
	// Wrapped records name.
	KeyID           string
	AccessKeyID     string
	SecretAccessKey string
	// Endpoint overrides the regional endpoint (tests, VPC endpoints).
	Endpoint string
	// HTTPClient overrides the SDK's HTTP client.
	HTTPClient *http.Client
	// CallTimeout bounds every call whose context has no earlier deadline
	// (retries included). Zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// MaxAttempts is the number of attempts for errors that leave the key
	// UNREACHABLE (throttling, 5xx, network). INVALID answers are never
	// retried. Zero means DefaultMaxAttempts.
	MaxAttempts int
	// MaxBackoff caps the jittered exponential backoff between attempts.
	// Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// String redacts the secret.
func (c Config) String() string {
	return fmt.Sprintf("aws.Config{Region:%q KeyID:%q AccessKeyID:%q SecretAccessKey:%s Endpoint:%q}",
		c.Region, c.KeyID, c.AccessKeyID, redacted(c.SecretAccessKey), c.Endpoint)
}

// GoString redacts the secret from %#v too.
func (c Config) GoString() string { return c.String() }

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[REDACTED]"
}

// Provider implements kms.Provider on an AWS KMS key.
type Provider struct {
	cfg    Config
	client *awskms.Client

	mu  sync.Mutex
	arn string // learned from the service when cfg.KeyID is not an ARN
}

var _ kms.Provider = (*Provider)(nil)

// String describes the provider without its secret.
func (p *Provider) String() string { return "aws kms provider " + p.keyRef().String() }

// GoString keeps %#v free of the secret too.
func (p *Provider) GoString() string { return p.String() }

// New builds a provider. It does not contact AWS; call Check for that.
func New(cfg Config) (*Provider, error) {
	switch {
	case cfg.Region == "":
		return nil, errors.New("aws kms: Region is required")
	case cfg.KeyID == "":
		return nil, errors.New("aws kms: KeyID is required")
	case cfg.AccessKeyID == "" || cfg.SecretAccessKey == "":
		return nil, errors.New("aws kms: AccessKeyID and SecretAccessKey are required")
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	opts := awskms.Options{
		Region:      cfg.Region,
		Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Retryer:     newRetryer(cfg.MaxAttempts, cfg.MaxBackoff),
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	p := &Provider{cfg: cfg, client: awskms.New(opts)}
	if strings.HasPrefix(cfg.KeyID, "arn:") {
		p.arn = cfg.KeyID
	}
	return p, nil
}

// newRetryer retries only what the SDK's standard retryer deems transient
// (throttling, 5xx, connection errors, timeouts), with full-jitter
// exponential backoff and no client-side retry quota (a quota would turn a
// long throttling episode into a non-retryable error of its own).
func newRetryer(attempts int, maxBackoff time.Duration) aws.Retryer {
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = attempts
		o.MaxBackoff = maxBackoff
		o.RateLimiter = ratelimit.None
		o.Backoff = jitterBackoff{max: maxBackoff}
	})
}

// jitterBackoff is full jitter below (max/8)·2^(attempt-1), capped at max;
// the SDK numbers the first retry attempt 1.
type jitterBackoff struct{ max time.Duration }

func (j jitterBackoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	return backoff.Full(j.max/8, j.max).Delay(attempt), nil
}

func (p *Provider) keyRef() kms.KeyRef {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.arn
	if id == "" {
		id = p.cfg.KeyID
	}
	return kms.KeyRef{Provider: ProviderName, KeyID: id}
}

func (p *Provider) learnARN(arn *string) {
	if arn == nil || !strings.HasPrefix(*arn, "arn:") {
		return
	}
	p.mu.Lock()
	if p.arn == "" {
		p.arn = *arn
	}
	p.mu.Unlock()
}

func (p *Provider) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.cfg.CallTimeout)
}

func encryptionContext(aad []byte) map[string]string {
	if len(aad) == 0 {
		return nil
	}
	return map[string]string{aadContextKey: base64.StdEncoding.EncodeToString(aad)}
}

// Wrap encrypts plaintext under the key, with aad as encryption context.
func (p *Provider) Wrap(ctx context.Context, plaintext, aad []byte) (kms.Wrapped, error) {
	if err := ctx.Err(); err != nil {
		return kms.Wrapped{}, p.ctxError("wrap", err)
	}
	ctx, cancel := p.callCtx(ctx)
	defer cancel()
	out, err := p.client.Encrypt(ctx, &awskms.EncryptInput{
		KeyId:             aws.String(p.cfg.KeyID),
		Plaintext:         bytes.Clone(plaintext),
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return kms.Wrapped{}, p.classify(ctx, "wrap", err)
	}
	p.learnARN(out.KeyId)
	return kms.Wrapped{Key: p.keyRef(), Ciphertext: out.CiphertextBlob}, nil
}

// Unwrap decrypts w with the same encryption context, pinned to the
// configured key: a blob made under another key fails.
func (p *Provider) Unwrap(ctx context.Context, w kms.Wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, p.ctxError("unwrap", err)
	}
	if w.Key.Provider != ProviderName {
		return nil, fmt.Errorf("kms unwrap %s: record names provider %q, not %q: %w", p.keyRef(), w.Key.Provider, ProviderName, kms.ErrDecrypt)
	}
	if len(w.Ciphertext) == 0 {
		return nil, fmt.Errorf("kms unwrap %s: empty ciphertext: %w", w.Key, kms.ErrDecrypt)
	}
	ctx, cancel := p.callCtx(ctx)
	defer cancel()
	out, err := p.client.Decrypt(ctx, &awskms.DecryptInput{
		KeyId:             aws.String(p.cfg.KeyID),
		CiphertextBlob:    w.Ciphertext,
		EncryptionContext: encryptionContext(aad),
	})
	if err != nil {
		return nil, p.classify(ctx, "unwrap", err)
	}
	p.learnARN(out.KeyId)
	return out.Plaintext, nil
}

// Check describes the key, verifies its type and state, and makes a real
// Encrypt/Decrypt round trip of a random probe.
func (p *Provider) Check(ctx context.Context) kms.Status {
	st := p.check(ctx)
	st.CheckedAt = time.Now().UTC()
	return st
}

func (p *Provider) check(ctx context.Context) kms.Status {
	fail := func(err error) kms.Status {
		var ke *kms.Error
		if errors.As(err, &ke) {
			return kms.Status{Validity: ke.Validity(), Reason: ke.Reason, Detail: ke.Detail, Key: p.keyRef()}
		}
		return kms.StatusFromError(p.keyRef(), err)
	}
	if err := ctx.Err(); err != nil {
		return fail(p.ctxError("check", err))
	}
	cctx, cancel := p.callCtx(ctx)
	defer cancel()
	out, err := p.client.DescribeKey(cctx, &awskms.DescribeKeyInput{KeyId: aws.String(p.cfg.KeyID)})
	if err != nil {
		return fail(p.classify(cctx, "describe", err))
	}
	md := out.KeyMetadata
	if md == nil {
		return fail(p.newError("describe", kms.ReasonServerError, "DescribeKey returned no KeyMetadata", nil))
	}
	p.learnARN(md.Arn)
	if e := p.stateError("describe", md.KeyState); e != nil {
		return fail(e)
	}
	if md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || md.KeySpec != types.KeySpecSymmetricDefault {
		return fail(p.newError("describe", kms.ReasonWrongKeyType,
			fmt.Sprintf("key spec %s, usage %s: a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key is required", md.KeySpec, md.KeyUsage), nil))
	}
	probe := make([]byte, 32)
	rand.Read(probe)
	aad := []byte("cmkdb-check-probe")
	w, err := p.Wrap(ctx, probe, aad)
	if err != nil {
		return fail(err)
	}
	got, err := p.Unwrap(ctx, w, aad)
	if err != nil {
		if errors.Is(err, kms.ErrDecrypt) {
			err = p.newError("check", kms.ReasonServerError, "the probe encrypted under the key did not decrypt", nil)
		}
		return fail(err)
	}
	if !bytes.Equal(got, probe) {
		return fail(p.newError("check", kms.ReasonServerError, "the probe decrypted to different bytes", nil))
	}
	st := kms.Status{Validity: kms.Valid, Key: p.keyRef()}
	if md.CreationDate != nil {
		st.LastRotated = md.CreationDate.UTC()
	}
	if t, ok := p.lastRotation(cctx); ok && t.After(st.LastRotated) {
		st.LastRotated = t
	}
	return st
}

// lastRotation is the date of the key's latest rotation, when the caller may
// list rotations (kms:ListKeyRotations is optional: failure is ignored).
func (p *Provider) lastRotation(ctx context.Context) (time.Time, bool) {
	out, err := p.client.ListKeyRotations(ctx, &awskms.ListKeyRotationsInput{KeyId: aws.String(p.cfg.KeyID)})
	if err != nil {
		return time.Time{}, false
	}
	var last time.Time
	for _, r := range out.Rotations {
		if r.RotationDate != nil && r.RotationDate.After(last) {
			last = *r.RotationDate
		}
	}
	return last.UTC(), !last.IsZero()
}

// Atlas error codes (atlas-ear-api.md) reported in Detail.
const (
	atlasNotEnabled      = "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED"
	atlasPendingDeletion = "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION"
	atlasPendingImport   = "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_IMPORT"
	atlasNotFound        = "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND"
	atlasBadCredentials  = "INVALID_AWS_CREDENTIALS"
	atlasNoPermission    = "NO_PERMISSION_TO_ENCRYPT_DECRYPT"
)

func atlasCode(r kms.Reason) string {
	switch r {
	case kms.ReasonKeyDisabled:
		return atlasNotEnabled
	case kms.ReasonKeyPendingDeletion:
		return atlasPendingDeletion
	case kms.ReasonKeyNotFound:
		return atlasNotFound
	case kms.ReasonCredentialsRejected:
		return atlasBadCredentials
	case kms.ReasonPermissionDenied:
		return atlasNoPermission
	}
	return ""
}

func (p *Provider) newError(op string, r kms.Reason, detail string, cause error) *kms.Error {
	code := atlasCode(r)
	if detail != "" && code != "" {
		detail += " [atlas: " + code + "]"
	} else if code != "" {
		detail = "[atlas: " + code + "]"
	}
	return &kms.Error{Op: op, Key: p.keyRef(), Reason: r, Detail: detail, Err: cause}
}

func (p *Provider) ctxError(op string, err error) *kms.Error {
	return p.newError(op, kms.ReasonTimeout, "the caller's context ended before AWS KMS answered", err)
}

// stateError classifies a KeyState that is not Enabled.
func (p *Provider) stateError(op string, s types.KeyState) *kms.Error {
	switch s {
	case types.KeyStateEnabled:
		return nil
	case types.KeyStateDisabled:
		return p.newError(op, kms.ReasonKeyDisabled, "key state is Disabled", nil)
	case types.KeyStatePendingDeletion, types.KeyStatePendingReplicaDeletion:
		return p.newError(op, kms.ReasonKeyPendingDeletion, "key state is "+string(s), nil)
	case types.KeyStatePendingImport:
		e := p.newError(op, kms.ReasonKeyNotYetActive, "key state is PendingImport: the key has no key material", nil)
		e.Detail += " [atlas: " + atlasPendingImport + "]"
		return e
	}
	// Creating, Updating, Unavailable (custom key store disconnected):
	// transient or outside the key's own lifecycle; do not shut down.
	return p.newError(op, kms.ReasonServerError, "key state is "+string(s), nil)
}

// classify turns an SDK error into a *kms.Error (or an ErrDecrypt error).
// The SDK error itself is not kept as the cause: only its code and the
// service's message are, so nothing from the request can leak through it.
func (p *Provider) classify(ctx context.Context, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return p.newError(op, kms.ReasonTimeout, "no answer from AWS KMS before the deadline", ctxErr)
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		r := kms.ReasonOf(err)
		if r != kms.ReasonTimeout && r != kms.ReasonNetwork {
			r = kms.ReasonNetwork
		}
		return p.newError(op, r, "could not reach AWS KMS: "+sanitize(err.Error()), nil)
	}
	code, msg := api.ErrorCode(), api.ErrorMessage()
	detail := code
	if msg != "" {
		detail += ": " + msg
	}
	detail = sanitize(detail)
	switch code {
	case "InvalidCiphertextException", "IncorrectKeyException":
		return fmt.Errorf("kms %s %s: AWS KMS %s: %w", op, p.keyRef(), code, kms.ErrDecrypt)
	case "DisabledException":
		return p.newError(op, kms.ReasonKeyDisabled, detail, nil)
	case "KMSInvalidStateException":
		return p.invalidState(ctx, op, detail, msg)
	case "NotFoundException":
		return p.newError(op, kms.ReasonKeyNotFound, detail, nil)
	case "AccessDeniedException", "AccessDenied":
		return p.newError(op, kms.ReasonPermissionDenied, detail, nil)
	case "UnrecognizedClientException", "InvalidSignatureException", "IncorrectSignatureException",
		"SignatureDoesNotMatch", "InvalidClientTokenId", "MissingAuthenticationTokenException",
		"IncompleteSignatureException", "ExpiredTokenException", "InvalidAccessKeyId":
		return p.newError(op, kms.ReasonCredentialsRejected, detail, nil)
	case "InvalidKeyUsageException", "UnsupportedOperationException":
		return p.newError(op, kms.ReasonWrongKeyType, detail, nil)
	case "ThrottlingException", "Throttling", "TooManyRequestsException", "LimitExceededException":
		return p.newError(op, kms.ReasonThrottled, detail, nil)
	case "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException",
		"ServiceUnavailableException", "InternalFailure":
		return p.newError(op, kms.ReasonServerError, detail, nil)
	}
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return p.newError(op, kms.ReasonServerError, detail, nil)
	}
	if api.ErrorFault() == smithy.FaultServer {
		return p.newError(op, kms.ReasonServerError, detail, nil)
	}
	// Anything else (ValidationException...) is a malformed request: it
	// says nothing definite about the key, so do not shut down on it.
	return p.newError(op, kms.ReasonServerError, detail, nil)
}

// invalidState refines KMSInvalidStateException (which covers
// PendingDeletion, PendingImport, Unavailable...) by describing the key.
func (p *Provider) invalidState(ctx context.Context, op, detail, msg string) error {
	out, err := p.client.DescribeKey(ctx, &awskms.DescribeKeyInput{KeyId: aws.String(p.cfg.KeyID)})
	if err == nil && out.KeyMetadata != nil {
		if e := p.stateError(op, out.KeyMetadata.KeyState); e != nil {
			e.Detail = detail + "; " + e.Detail
			return e
		}
	}
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "pending deletion"):
		return p.newError(op, kms.ReasonKeyPendingDeletion, detail, nil)
	case strings.Contains(lower, "pending import"), strings.Contains(lower, "pendingimport"):
		return p.newError(op, kms.ReasonKeyNotYetActive, detail+" [atlas: "+atlasPendingImport+"]", nil)
	case strings.Contains(lower, "disabled"):
		return p.newError(op, kms.ReasonKeyDisabled, detail, nil)
	}
	return p.newError(op, kms.ReasonServerError, detail, nil)
}

// sanitize bounds a service-provided text.
func sanitize(s string) string {
	const max = 512
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}
