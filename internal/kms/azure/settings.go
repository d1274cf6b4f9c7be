package azure

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// ErrKeyIdentifierFormat is matched by a keyIdentifier that is not a Key
// Vault key URL; the API answers it with Atlas's own error code.
var ErrKeyIdentifierFormat = errors.New("AZURE_KEY_VAULT_KEY_IDENTIFIER_INVALID_FORMAT: want https://<vault>.vault.azure.net/keys/<name>[/<version>]")

// Settings describe an Azure Key Vault configuration. The API's
// azureKeyVault object names the key by its URL (keyIdentifier) next to
// Atlas's informational subscription fields; a node file names the vault,
// key and version apart. Both may point every request at another endpoint
// trusting another CA (the dev KMS server, a private endpoint).
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "azureKeyVault", Kind: "AZURE",
		Fields: []kms.Setting{
			{Name: "azureEnvironment", On: kms.API, Required: kms.API, Check: kms.OneOf("AZURE", "AZURE_CHINA", "AZURE_GERMANY", "AZURE_US_GOVERNMENT")},
			{Name: "clientID", Node: "clientId", On: kms.Both, Required: kms.Both},
			{Name: "tenantID", Node: "tenantId", On: kms.Both, Required: kms.Both},
			{Name: "subscriptionID", On: kms.API, Required: kms.API},
			{Name: "resourceGroupName", On: kms.API, Required: kms.API},
			{Name: "keyVaultName", On: kms.API, Required: kms.API},
			{Name: "keyIdentifier", On: kms.API, Required: kms.API, Check: checkKeyIdentifier},
			{Name: "vaultUrl", On: kms.NodeFile, Required: kms.NodeFile},
			{Name: "keyName", On: kms.NodeFile, Required: kms.NodeFile},
			{Name: "keyVersion", On: kms.NodeFile},
			{Name: "secret", Node: "clientSecretFile", On: kms.Both, Required: kms.Both, Secret: true},
			{Name: "authorityHost", On: kms.Both}, // cmkdb: a non-Azure AD endpoint
			{Name: "endpoint", On: kms.Both},      // cmkdb: host:port every Key Vault and Azure AD request goes to
			{Name: "caFile", On: kms.Both, Path: true},
		},
		Codes: map[kms.Reason]string{
			kms.ReasonKeyDisabled: "AZURE_KEY_VAULT_KEY_NOT_ENABLED", kms.ReasonKeyExpired: "AZURE_KEY_VAULT_KEY_EXPIRED",
			kms.ReasonKeyNotYetActive: "AZURE_KEY_VAULT_KEY_NOT_ACTIVE", kms.ReasonKeyNotFound: "AZURE_KEY_VAULT_KEY_NOT_FOUND",
			kms.ReasonKeyDeleted: "AZURE_KEY_VAULT_KEY_NOT_FOUND", kms.ReasonCredentialsRejected: "INVALID_AZURE_CREDENTIALS",
		},
		Validate: func(v map[string]string) error {
			if v["keyIdentifier"] == "" && (v["vaultUrl"] == "" || v["keyName"] == "") {
				return errors.New("name the key: keyIdentifier, or vaultUrl and keyName")
			}
			return nil
		},
		Open: openSettings,
	}
}

func openSettings(_ context.Context, v map[string]string) (kms.Provider, error) {
	vaultURL, name, version := v["vaultUrl"], v["keyName"], v["keyVersion"]
	if id := v["keyIdentifier"]; id != "" {
		var err error
		if vaultURL, name, version, err = ParseKeyIdentifier(id); err != nil {
			return nil, err
		}
	}
	cfg := Config{VaultURL: vaultURL, KeyName: name, KeyVersion: version, TenantID: v["tenantID"],
		ClientID: v["clientID"], ClientSecret: v["secret"], AuthorityHost: v["authorityHost"]}
	client, err := endpointClient(v["caFile"], v["endpoint"])
	if err != nil {
		return nil, err
	}
	if client != nil {
		cfg.Transport = policy.Transporter(client)
	}
	return New(cfg)
}

func checkKeyIdentifier(v string) error {
	_, _, _, err := ParseKeyIdentifier(v)
	return err
}

// ParseKeyIdentifier splits https://<vault>/keys/<name>[/<version>].
func ParseKeyIdentifier(v string) (vaultURL, name, version string, err error) {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", "", "", ErrKeyIdentifierFormat
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" || parts[1] == "" {
		return "", "", "", ErrKeyIdentifierFormat
	}
	if len(parts) == 3 {
		version = parts[2]
	}
	return u.Scheme + "://" + u.Host, parts[1], version, nil
}

// endpointClient returns an HTTP client trusting caFile (system roots when
// empty) and, with endpoint set, connecting every request to that address
// whatever the URL's host (a dev server standing in for Azure's many host
// names; TLS still verifies the URL's host name). Nil when neither is set.
func endpointClient(caFile, endpoint string) (*http.Client, error) {
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
