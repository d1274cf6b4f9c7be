// Package providers turns a KMS configuration into a kms.Provider. It is the
// one place that knows every provider package; each provider stays
// independent of the others and of the configuration format.
package providers

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/aws"
	"github.com/cmkdb/cmkdb/internal/kms/azure"
	"github.com/cmkdb/cmkdb/internal/kms/gcp"
	"github.com/cmkdb/cmkdb/internal/kms/kmip"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kms/pkcs11"
	"github.com/cmkdb/cmkdb/internal/kms/vault"
)

// Open builds the provider a configuration names. No provider talks to its
// KMS here (a KMIP keyName too is resolved on first use), so a node whose KMS
// is down or whose key is revoked starts DISABLED rather than not at all;
// each first talks to its KMS when the node unwraps its master key. Secrets (and
// the GCP service account key file) are read from their files here and
// handed to the provider, never logged or echoed.
func Open(ctx context.Context, c config.KMS) (kms.Provider, error) {
	switch c.Provider {
	case "local":
		if c.Local == nil {
			return nil, fmt.Errorf("kms: local provider needs kms.local")
		}
		return local.Open(c.Local.KeyFile)
	case "aws":
		if c.AWS == nil {
			return nil, fmt.Errorf("kms: aws provider needs kms.aws")
		}
		secret, err := readSecret(c.AWS.SecretAccessKeyFile)
		if err != nil {
			return nil, fmt.Errorf("kms: aws secretAccessKeyFile: %w", err)
		}
		return aws.New(aws.Config{Region: c.AWS.Region, KeyID: c.AWS.KeyID, AccessKeyID: c.AWS.AccessKeyID,
			SecretAccessKey: secret, Endpoint: c.AWS.Endpoint})
	case "vault":
		if c.Vault == nil {
			return nil, fmt.Errorf("kms: vault provider needs kms.vault")
		}
		token, err := readSecret(c.Vault.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("kms: vault tokenFile: %w", err)
		}
		return vault.New(vault.Config{Address: c.Vault.Address, Token: token, Namespace: c.Vault.Namespace,
			Mount: c.Vault.Mount, Key: c.Vault.Key})
	case "kmip":
		if c.KMIP == nil {
			return nil, fmt.Errorf("kms: kmip provider needs kms.kmip")
		}
		k := c.KMIP
		return kmip.New(ctx, kmip.Config{Address: k.Address, CAFile: k.CAFile, ClientCertFile: k.ClientCertFile,
			ClientKeyFile: k.ClientKeyFile, KeyID: k.KeyID, KeyName: k.KeyName, PreviousKeyIDs: k.PreviousKeyIDs})
	case "pkcs11":
		if c.PKCS11 == nil {
			return nil, fmt.Errorf("kms: pkcs11 provider needs kms.pkcs11")
		}
		pin, err := readSecret(c.PKCS11.PINFile)
		if err != nil {
			return nil, fmt.Errorf("kms: pkcs11 pinFile: %w", err)
		}
		return pkcs11.New(pkcs11.Config{ModulePath: c.PKCS11.ModulePath, TokenLabel: c.PKCS11.TokenLabel,
			KeyLabel: c.PKCS11.KeyLabel, PIN: pin})
	case "azure":
		if c.Azure == nil {
			return nil, fmt.Errorf("kms: azure provider needs kms.azure")
		}
		secret, err := readSecret(c.Azure.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("kms: azure clientSecretFile: %w", err)
		}
		a := c.Azure
		return azure.New(azure.Config{VaultURL: a.VaultURL, KeyName: a.KeyName, KeyVersion: a.KeyVersion,
			TenantID: a.TenantID, ClientID: a.ClientID, ClientSecret: secret})
	case "gcp":
		if c.GCP == nil {
			return nil, fmt.Errorf("kms: gcp provider needs kms.gcp")
		}
		creds, err := readSecret(c.GCP.CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("kms: gcp credentialsFile: %w", err)
		}
		g := c.GCP
		return gcp.New(ctx, gcp.Config{KeyName: g.KeyName, CredentialsJSON: []byte(creds),
			Endpoint: g.Endpoint, CAFile: g.CAFile})
	}
	return nil, fmt.Errorf("kms: provider %q is not supported by this build", c.Provider)
}

// readSecret reads a one-line secret file. Its contents never appear in an
// error.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
