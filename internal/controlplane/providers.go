package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/aws"
	"github.com/cmkdb/cmkdb/internal/kms/azure"
	"github.com/cmkdb/cmkdb/internal/kms/kmip"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kms/pkcs11"
	"github.com/cmkdb/cmkdb/internal/kms/vault"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// field describes one attribute of a provider's encryptionAtRest object.
type field struct {
	name string
	// required on the first configuration of the provider.
	required bool
	// writeOnly attributes (credentials) are never returned by the API.
	writeOnly bool
	// check validates a value; nil accepts any non-empty string.
	check func(string) error
	// path marks a file on the control plane's host (a key file, a
	// PKCS#11 module, a CA bundle): it must lie under one of the
	// directories the control plane was started to allow.
	path bool
}

// providerSpec is one encryptionAtRest object: awsKms, azureKeyVault,
// googleCloudKms as Atlas defines them, and cmkdb's own kmip, vaultTransit,
// pkcs11 and local in the same style.
type providerSpec struct {
	object string // JSON object name in the encryptionAtRest resource
	kind   string // encryptionAtRestProvider value on clusters, event prefix
	fields []field
	open   func(ctx context.Context, v map[string]string) (kms.Provider, error)
	// codes maps a KMS reason to the Atlas error code PATCH answers.
	codes map[kms.Reason]string
}

// Provider kinds, as clusters name them in encryptionAtRestProvider.
const (
	ProviderNone   = "NONE"
	ProviderAWS    = "AWS"
	ProviderAzure  = "AZURE"
	ProviderGCP    = "GCP"
	ProviderKMIP   = "KMIP"
	ProviderVault  = "VAULT"
	ProviderPKCS11 = "PKCS11"
	ProviderLocal  = "LOCAL"
)

// specs lists every provider object in the order the API prints them.
func specs() []providerSpec {
	return []providerSpec{
		{object: "awsKms", kind: ProviderAWS, open: openAWS,
			fields: []field{
				{name: "customerMasterKeyID", required: true},
				{name: "region", required: true, check: checkAWSRegion},
				{name: "accessKeyID", required: true},
				{name: "secretAccessKey", required: true, writeOnly: true},
				{name: "roleId", writeOnly: true, check: func(string) error {
					return fmt.Errorf("cloud provider access roles are not available in cmkdb; use accessKeyID and secretAccessKey")
				}},
				{name: "endpoint"}, // cmkdb: a non-AWS endpoint, such as `cmkdb dev kms-server`
			},
			codes: map[kms.Reason]string{
				kms.ReasonKeyDisabled: "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED", kms.ReasonKeyPendingDeletion: "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION",
				kms.ReasonKeyNotYetActive: "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_IMPORT", kms.ReasonKeyNotFound: "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND",
				kms.ReasonKeyDeleted: "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND", kms.ReasonCredentialsRejected: "INVALID_AWS_CREDENTIALS",
			}},
		{object: "azureKeyVault", kind: ProviderAzure, open: openAzure,
			fields: []field{
				{name: "azureEnvironment", required: true, check: oneOf("AZURE", "AZURE_CHINA", "AZURE_GERMANY", "AZURE_US_GOVERNMENT")},
				{name: "clientID", required: true},
				{name: "tenantID", required: true},
				{name: "subscriptionID", required: true},
				{name: "resourceGroupName", required: true},
				{name: "keyVaultName", required: true},
				{name: "keyIdentifier", required: true, check: checkAzureKeyIdentifier},
				{name: "secret", required: true, writeOnly: true},
				{name: "authorityHost"},      // cmkdb: a non-Azure AD endpoint
				{name: "endpoint"},           // cmkdb: host:port every Key Vault and Azure AD request goes to (the dev server)
				{name: "caFile", path: true}, // cmkdb: CA bundle for a non-Azure endpoint
			},
			codes: map[kms.Reason]string{
				kms.ReasonKeyDisabled: "AZURE_KEY_VAULT_KEY_NOT_ENABLED", kms.ReasonKeyExpired: "AZURE_KEY_VAULT_KEY_EXPIRED",
				kms.ReasonKeyNotYetActive: "AZURE_KEY_VAULT_KEY_NOT_ACTIVE", kms.ReasonKeyNotFound: "AZURE_KEY_VAULT_KEY_NOT_FOUND",
				kms.ReasonKeyDeleted: "AZURE_KEY_VAULT_KEY_NOT_FOUND", kms.ReasonCredentialsRejected: "INVALID_AZURE_CREDENTIALS",
			}},
		{object: "googleCloudKms", kind: ProviderGCP, open: openGCP,
			fields: []field{
				{name: "keyVersionResourceID", required: true, check: checkGCPResource},
				{name: "serviceAccountKey", required: true, writeOnly: true},
				{name: "roleId", check: func(string) error {
					return fmt.Errorf("cloud provider access roles are not available in cmkdb; use serviceAccountKey")
				}},
				{name: "endpoint"}, // cmkdb: a non-Google endpoint
				{name: "caFile", path: true},
			},
			codes: map[kms.Reason]string{
				kms.ReasonKeyDisabled: "GOOGLE_CLOUD_KMS_KEY_VERSION_DISABLED", kms.ReasonKeyDeleted: "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROYED",
				kms.ReasonKeyPendingDeletion: "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROY_SCHEDULED", kms.ReasonKeyNotFound: "GOOGLE_CLOUD_KMS_KEY_VERSION_NOT_FOUND",
				kms.ReasonKeyNotYetActive: "GOOGLE_CLOUD_KMS_KEY_VERSION_PENDING_GENERATION", kms.ReasonCredentialsRejected: "INVALID_GOOGLE_CLOUD_CREDENTIALS",
			}},
		{object: "kmip", kind: ProviderKMIP, open: openKMIP,
			fields: []field{
				{name: "address", required: true},
				{name: "caFile", required: true, path: true},
				{name: "clientCertificateFile", required: true, path: true},
				{name: "clientKeyFile", required: true, path: true},
				{name: "keyId"},
				{name: "keyName"},
			}},
		{object: "vaultTransit", kind: ProviderVault, open: openVault,
			fields: []field{
				{name: "address", required: true},
				{name: "keyName", required: true},
				{name: "mount"},
				{name: "namespace"},
				{name: "token", required: true, writeOnly: true},
			}},
		{object: "pkcs11", kind: ProviderPKCS11, open: openPKCS11,
			fields: []field{
				{name: "modulePath", required: true, path: true},
				{name: "tokenLabel", required: true},
				{name: "keyLabel", required: true},
				{name: "pin", required: true, writeOnly: true},
			}},
		{object: "local", kind: ProviderLocal, open: openLocal,
			fields: []field{{name: "keyFile", required: true, path: true}}},
	}
}

func specByObject(object string) (providerSpec, bool) {
	for _, s := range specs() {
		if s.object == object {
			return s, true
		}
	}
	return providerSpec{}, false
}

func specByKind(kind string) (providerSpec, bool) {
	for _, s := range specs() {
		if s.kind == kind {
			return s, true
		}
	}
	return providerSpec{}, false
}

func (s providerSpec) field(name string) (field, bool) {
	for _, f := range s.fields {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// atlasCode is the Atlas error code for a KMS reason: the provider's own
// code when Atlas has one, otherwise the generic ones.
func (s providerSpec) atlasCode(r kms.Reason) string {
	if c, ok := s.codes[r]; ok {
		return c
	}
	switch r {
	case kms.ReasonPermissionDenied:
		return "NO_PERMISSION_TO_ENCRYPT_DECRYPT"
	case kms.ReasonNetwork, kms.ReasonTimeout, kms.ReasonThrottled, kms.ReasonServerError:
		return "ENCRYPTION_AT_REST_SETTINGS_INVALID"
	}
	return "ENCRYPTION_AT_REST_SETTINGS_INVALID"
}

func oneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s", strings.Join(vals, ", "))
	}
}

// checkAWSRegion accepts Atlas's region enum (US_EAST_1) and AWS's own
// spelling (us-east-1).
func checkAWSRegion(v string) error {
	r := awsRegion(v)
	parts := strings.Split(r, "-")
	if len(parts) < 3 {
		return fmt.Errorf("%q is not an AWS region", v)
	}
	return nil
}

func awsRegion(v string) string { return strings.ToLower(strings.ReplaceAll(v, "_", "-")) }

func checkAzureKeyIdentifier(v string) error {
	_, _, _, err := parseAzureKeyIdentifier(v)
	return err
}

// parseAzureKeyIdentifier splits https://<vault>/keys/<name>[/<version>].
func parseAzureKeyIdentifier(v string) (vaultURL, name, version string, err error) {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", "", "", fmt.Errorf("AZURE_KEY_VAULT_KEY_IDENTIFIER_INVALID_FORMAT: want https://<vault>.vault.azure.net/keys/<name>[/<version>]")
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" || parts[1] == "" {
		return "", "", "", fmt.Errorf("AZURE_KEY_VAULT_KEY_IDENTIFIER_INVALID_FORMAT: want https://<vault>.vault.azure.net/keys/<name>[/<version>]")
	}
	if len(parts) == 3 {
		version = parts[2]
	}
	return u.Scheme + "://" + u.Host, parts[1], version, nil
}

func checkGCPResource(v string) error {
	p := strings.Split(v, "/")
	if len(p) < 8 || p[0] != "projects" || p[2] != "locations" || p[4] != "keyRings" || p[6] != "cryptoKeys" ||
		(len(p) != 8 && (len(p) != 10 || p[8] != "cryptoKeyVersions")) {
		return fmt.Errorf("want projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>[/cryptoKeyVersions/<n>]")
	}
	return nil
}

// tlsClient returns an HTTP client trusting caFile (system roots when
// empty) and, with endpoint set, connecting every request to that address
// whatever the URL's host (a dev server standing in for a cloud's many host
// names; TLS still verifies the URL's host name). Nil when neither is set.
func tlsClient(caFile, endpoint string) (*http.Client, error) {
	if caFile == "" && endpoint == "" {
		return nil, nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := tlsutil.LoadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		cfg.RootCAs = pool
	}
	tr.TLSClientConfig = cfg
	if endpoint != "" {
		addr := strings.TrimPrefix(endpoint, "https://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("endpoint %q is not host:port", endpoint)
		}
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}
	}
	return &http.Client{Transport: tr}, nil
}

func openAWS(_ context.Context, v map[string]string) (kms.Provider, error) {
	return aws.New(aws.Config{Region: awsRegion(v["region"]), KeyID: v["customerMasterKeyID"],
		AccessKeyID: v["accessKeyID"], SecretAccessKey: v["secretAccessKey"], Endpoint: v["endpoint"]})
}

func openAzure(_ context.Context, v map[string]string) (kms.Provider, error) {
	vaultURL, name, version, err := parseAzureKeyIdentifier(v["keyIdentifier"])
	if err != nil {
		return nil, err
	}
	cfg := azure.Config{VaultURL: vaultURL, KeyName: name, KeyVersion: version, TenantID: v["tenantID"],
		ClientID: v["clientID"], ClientSecret: v["secret"], AuthorityHost: v["authorityHost"]}
	client, err := tlsClient(v["caFile"], v["endpoint"])
	if err != nil {
		return nil, err
	}
	if client != nil {
		cfg.Transport = policy.Transporter(client)
	}
	return azure.New(cfg)
}

func openKMIP(ctx context.Context, v map[string]string) (kms.Provider, error) {
	if (v["keyId"] == "") == (v["keyName"] == "") {
		return nil, fmt.Errorf("kmip needs exactly one of keyId or keyName")
	}
	return kmip.New(ctx, kmip.Config{Address: v["address"], CAFile: v["caFile"], ClientCertFile: v["clientCertificateFile"],
		ClientKeyFile: v["clientKeyFile"], KeyID: v["keyId"], KeyName: v["keyName"]})
}

func openVault(_ context.Context, v map[string]string) (kms.Provider, error) {
	return vault.New(vault.Config{Address: v["address"], Token: v["token"], Namespace: v["namespace"],
		Mount: v["mount"], Key: v["keyName"]})
}

func openPKCS11(_ context.Context, v map[string]string) (kms.Provider, error) {
	return pkcs11.New(pkcs11.Config{ModulePath: v["modulePath"], TokenLabel: v["tokenLabel"], KeyLabel: v["keyLabel"], PIN: v["pin"]})
}

func openLocal(_ context.Context, v map[string]string) (kms.Provider, error) {
	return local.Open(v["keyFile"])
}

// allowedPath reports whether path lies under one of dirs once symlinks
// are resolved, so an API caller cannot point the control plane at an
// arbitrary library or file on its host.
func allowedPath(path string, dirs []string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = filepath.Clean(path)
	}
	for _, d := range dirs {
		rd, err := filepath.EvalSymlinks(d)
		if err != nil {
			rd = filepath.Clean(d)
		}
		if rel, err := filepath.Rel(rd, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}
