// Package gcp is the Google Cloud KMS provider: it wraps cmkdb's keys with
// Encrypt and Decrypt on a customer's ENCRYPT_DECRYPT key through the
// official client (cloud.google.com/go/kms/apiv1), binding the associated
// data as Cloud KMS's additional_authenticated_data.
//
// The key is named by its resource name: a cryptoKey (the provider follows
// the key's primary version) or a cryptoKeyVersion (pinned to it, as
// Atlas's keyVersionResourceID). It authenticates with a service account
// key JSON (Atlas's serviceAccountKey).
//
// The official client does not check Cloud KMS's CRC32C integrity fields,
// so this provider sets them on every request and verifies every response;
// a response that fails verification is treated as a transient server
// error and retried.
package gcp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	kmsapi "cloud.google.com/go/kms/apiv1"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// ProviderName is the KeyRef.Provider of this provider.
const ProviderName = "gcp"

// Defaults for Config's zero values.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 3
	DefaultMaxBackoff  = 2 * time.Second
)

// Config configures a Provider.
type Config struct {
	// KeyName is a cryptoKey resource name
	// (projects/P/locations/L/keyRings/R/cryptoKeys/K) to follow its
	// primary version, or a cryptoKeyVersion resource name
	// (…/cryptoKeyVersions/N) to pin one version.
	KeyName string
	// CredentialsJSON is a service account key file's content.
	CredentialsJSON []byte
	// Endpoint overrides cloudkms.googleapis.com:443 (host:port; an
	// https:// prefix is accepted). Used for private endpoints and the dev
	// KMS server.
	Endpoint string
	// RootCAs, or the PEM bundle in CAFile, is trusted instead of the
	// system roots.
	RootCAs *x509.CertPool
	CAFile  string
	// Timeout bounds every call whose context has no earlier deadline,
	// retries included. Zero means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts is the number of attempts for errors that leave the key
	// UNREACHABLE (network, timeouts, throttling, server errors, integrity
	// failures). INVALID answers are never retried. Zero means
	// DefaultMaxAttempts.
	MaxAttempts int
	// MaxBackoff caps the jittered exponential backoff between attempts.
	// Zero means DefaultMaxBackoff.
	MaxBackoff time.Duration

	// dialOptions are extra gRPC dial options (tests: a switchable dialer
	// and fast reconnects).
	dialOptions []grpc.DialOption
}

// String redacts the credentials.
func (c Config) String() string {
	creds := `""`
	if len(c.CredentialsJSON) > 0 {
		creds = "[REDACTED]"
	}
	return fmt.Sprintf("gcp.Config{KeyName:%q CredentialsJSON:%s Endpoint:%q CAFile:%q Timeout:%v}",
		c.KeyName, creds, c.Endpoint, c.CAFile, c.Timeout)
}

// GoString redacts the credentials from %#v too.
func (c Config) GoString() string { return c.String() }

// Provider implements kms.Provider on a Cloud KMS key.
type Provider struct {
	client *kmsapi.KeyManagementClient
	// keyName is the cryptoKey; pinned is the version number when the
	// configuration names a version ("" to follow the primary).
	keyName     string
	pinned      string
	account     string
	timeout     time.Duration
	maxAttempts int
	maxBackoff  time.Duration
}

var _ kms.Provider = (*Provider)(nil)

// String names the key and the account, never the credentials.
func (p *Provider) String() string {
	return "gcp kms provider " + p.ref(p.pinned).String() + " as " + p.account
}

// GoString keeps %#v free of the credentials.
func (p *Provider) GoString() string { return p.String() }

var keyNameRE = regexp.MustCompile(`^(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+)(?:/cryptoKeyVersions/([1-9][0-9]*))?$`)

// New validates cfg and builds a provider. It makes no network call (the
// gRPC connection is made on first use); call Check to reach Cloud KMS.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	bad := func(f string, a ...any) error { return fmt.Errorf("gcp kms: invalid config: "+f, a...) }
	m := keyNameRE.FindStringSubmatch(cfg.KeyName)
	if m == nil {
		return nil, bad("KeyName %q is not a cryptoKey or cryptoKeyVersion resource name "+
			"(projects/P/locations/L/keyRings/R/cryptoKeys/K[/cryptoKeyVersions/N])", cfg.KeyName)
	}
	sa, err := parseServiceAccount(cfg.CredentialsJSON)
	if err != nil {
		return nil, bad("CredentialsJSON: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	roots := cfg.RootCAs
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, bad("CAFile: %w", err)
		}
		if roots == nil {
			roots = x509.NewCertPool()
		} else {
			roots = roots.Clone()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, bad("CAFile %s holds no PEM certificate", cfg.CAFile)
		}
	}
	opts := []option.ClientOption{
		// Validated above: a service account key, nothing that makes the
		// client run commands or fetch URLs (external_account...).
		option.WithCredentialsJSON(cfg.CredentialsJSON),
		// The client logs requests (plaintexts included) and the JWTs it
		// signs at debug level when GOOGLE_SDK_GO_LOGGING_LEVEL says so;
		// neither may reach a log.
		option.WithLogger(slog.New(slog.DiscardHandler)),
		option.WithGRPCDialOption(grpc.WithConnectParams(grpc.ConnectParams{
			// gRPC's default reconnect backoff grows to two minutes, and
			// calls fail at once meanwhile: a KMS back from an outage
			// would stay unreachable for that long.
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: cfg.Timeout,
		})),
	}
	if cfg.Endpoint != "" {
		ep := strings.TrimSuffix(strings.TrimPrefix(cfg.Endpoint, "https://"), "/")
		if ep == "" || strings.ContainsAny(ep, "/?#") {
			return nil, bad("Endpoint %q must be host:port", cfg.Endpoint)
		}
		opts = append(opts, option.WithEndpoint(ep))
	}
	if roots != nil {
		opts = append(opts, option.WithGRPCDialOption(grpc.WithTransportCredentials(
			credentials.NewTLS(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))))
	}
	for _, o := range cfg.dialOptions {
		opts = append(opts, option.WithGRPCDialOption(o))
	}
	// The connection outlives ctx, which only bounds construction.
	client, err := kmsapi.NewKeyManagementClient(context.WithoutCancel(ctx), opts...)
	if err != nil {
		// The client's errors name options, never their values; still,
		// keep only the shape of a failure that has no reason to happen.
		return nil, fmt.Errorf("gcp kms: cannot build the Cloud KMS client (%s)", errShape(err))
	}
	// Retries are ours (UNREACHABLE-class only, bounded by Timeout): the
	// client's defaults retry for up to 60 s per call.
	client.CallOptions = &kmsapi.KeyManagementCallOptions{}
	return &Provider{
		client:      client,
		keyName:     m[1],
		pinned:      m[2],
		account:     sa.ClientEmail,
		timeout:     cfg.Timeout,
		maxAttempts: cfg.MaxAttempts,
		maxBackoff:  cfg.MaxBackoff,
	}, nil
}

// Close releases the gRPC connection.
func (p *Provider) Close() error {
	if err := p.client.Close(); err != nil {
		return fmt.Errorf("gcp kms: close: %w", err)
	}
	return nil
}

func (p *Provider) ref(version string) kms.KeyRef {
	return kms.KeyRef{Provider: ProviderName, KeyID: p.keyName, KeyVersion: version}
}

// encryptName is what Encrypt is called on: the pinned version, or the
// key (Cloud KMS then uses its primary).
func (p *Provider) encryptName() string {
	if p.pinned != "" {
		return p.keyName + "/cryptoKeyVersions/" + p.pinned
	}
	return p.keyName
}

// versionOf returns the version number in a cryptoKeyVersion name of our
// key, or false if the name is not one.
func (p *Provider) versionOf(name string) (string, bool) {
	n, ok := strings.CutPrefix(name, p.keyName+"/cryptoKeyVersions/")
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return "", false
	}
	return n, true
}
