// Package config reads a node's configuration file (`cmkdb node --config
// FILE`): where its data lives, where it listens, and which KMS holds its
// customer master key. Unknown fields are errors, so a typo never silently
// falls back to a default.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Config is a node's configuration. Zero values take the defaults below.
type Config struct {
	// Dir is the node's data directory.
	Dir string `json:"dir"`
	// Bind and Port are where the MongoDB wire protocol listens.
	Bind string `json:"bind,omitempty"`
	Port int    `json:"port,omitempty"`
	// KeyCheckInterval is how often the node checks its CMK ("15m").
	KeyCheckInterval Duration `json:"keyCheckInterval,omitempty"`
	// KMS selects and configures the provider holding the CMK.
	KMS KMS `json:"kms"`
	// TLS and Auth configure the listener.
	TLS  *TLS  `json:"tls,omitempty"`
	Auth *Auth `json:"auth,omitempty"`
}

// KMS names one provider and its settings. Exactly the block matching
// Provider must be present.
type KMS struct {
	Provider string           `json:"provider"`
	Local    *LocalKMS        `json:"local,omitempty"`
	AWS      *AWSKMS          `json:"aws,omitempty"`
	Vault    *VaultTransitKMS `json:"vault,omitempty"`
	KMIP     *KMIPKMS         `json:"kmip,omitempty"`
	PKCS11   *PKCS11KMS       `json:"pkcs11,omitempty"`
	Azure    *AzureKMS        `json:"azure,omitempty"`
	GCP      *GCPKMS          `json:"gcp,omitempty"`
	// ControlPlane makes the node a managed node: its master key is
	// wrapped and unwrapped by the control plane's key service, which alone
	// holds the KMS credentials.
	ControlPlane *ControlPlaneKMS `json:"controlPlane,omitempty"`
}

// GCPKMS is a Google Cloud KMS key. KeyName is a cryptoKey resource name
// (the node follows its primary version) or a cryptoKeyVersion resource
// name (pinned). The service account key JSON is read from a file.
type GCPKMS struct {
	KeyName         string `json:"keyName"`
	CredentialsFile string `json:"credentialsFile"`
	// Endpoint and CAFile point the client at a non-Google endpoint (the
	// dev KMS server); empty means Google's.
	Endpoint string `json:"endpoint,omitempty"`
	CAFile   string `json:"caFile,omitempty"`
}

// ControlPlaneKMS is the control plane's key service, reached over mutually
// authenticated TLS.
type ControlPlaneKMS struct {
	URL      string `json:"url"`
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// GroupID and Cluster say which project and cluster the node belongs
	// to; the control plane checks them against the client certificate.
	GroupID string `json:"groupId"`
	Cluster string `json:"cluster"`
}

// AzureKMS is an RSA key in Azure Key Vault, reached with a service
// principal. The client secret is read from a file. Without keyVersion the
// node follows the key's current version.
type AzureKMS struct {
	VaultURL         string `json:"vaultUrl"`
	KeyName          string `json:"keyName"`
	KeyVersion       string `json:"keyVersion,omitempty"`
	TenantID         string `json:"tenantId"`
	ClientID         string `json:"clientId"`
	ClientSecretFile string `json:"clientSecretFile"`
}

// PKCS11KMS is an AES-256 key in an HSM reached through its PKCS#11
// module. The PIN is read from a file, never written in the configuration.
type PKCS11KMS struct {
	ModulePath string `json:"modulePath"`
	TokenLabel string `json:"tokenLabel"`
	KeyLabel   string `json:"keyLabel"`
	PINFile    string `json:"pinFile"`
}

// KMIPKMS is a key on a KMIP server, reached over mutual TLS. KeyName
// follows rotation (the newest Active key of that name); KeyID pins one key.
type KMIPKMS struct {
	Address        string   `json:"address"`
	CAFile         string   `json:"caFile"`
	ClientCertFile string   `json:"clientCertFile"`
	ClientKeyFile  string   `json:"clientKeyFile"`
	KeyID          string   `json:"keyId,omitempty"`
	KeyName        string   `json:"keyName,omitempty"`
	PreviousKeyIDs []string `json:"previousKeyIds,omitempty"`
}

// AWSKMS is an AWS KMS customer master key. The secret access key is read
// from a file (mode 0600), never written in the configuration itself.
type AWSKMS struct {
	Region              string `json:"region"`
	KeyID               string `json:"keyId"`
	AccessKeyID         string `json:"accessKeyId"`
	SecretAccessKeyFile string `json:"secretAccessKeyFile"`
	// Endpoint overrides the regional endpoint (VPC endpoints, tests).
	Endpoint string `json:"endpoint,omitempty"`
}

// VaultTransitKMS is a HashiCorp Vault Transit key. The token is read from
// a file, never written in the configuration itself.
type VaultTransitKMS struct {
	Address   string `json:"address"`
	Mount     string `json:"mount,omitempty"`
	Key       string `json:"key"`
	Namespace string `json:"namespace,omitempty"`
	TokenFile string `json:"tokenFile"`
}

// LocalKMS is the local key-file provider.
type LocalKMS struct {
	KeyFile string `json:"keyFile"`
}

// TLS is the listener's certificate.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// CAFile, when set, requires client certificates signed by it.
	CAFile string `json:"caFile,omitempty"`
}

// Auth turns authentication on. On first start the node creates
// AdminUser (default "admin") with role root, with the password in
// AdminPasswordFile, or a random one written only to DIR/up.json.
type Auth struct {
	Enabled           bool   `json:"enabled"`
	AdminUser         string `json:"adminUser,omitempty"`
	AdminPasswordFile string `json:"adminPasswordFile,omitempty"`
}

// Duration is a time.Duration written as "15m" in JSON.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"15m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.Duration.String()) }

// Defaults.
const (
	DefaultBind             = "127.0.0.1"
	DefaultPort             = 27017
	DefaultKeyCheckInterval = 15 * time.Minute
	MinKeyCheckInterval     = time.Second
)

// ErrInvalid is matched by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Load reads and parses a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a configuration, filling in defaults.
func Parse(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the configuration object", ErrInvalid)
	}
	if c.Bind == "" {
		c.Bind = DefaultBind
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.KeyCheckInterval.Duration == 0 {
		c.KeyCheckInterval.Duration = DefaultKeyCheckInterval
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	switch {
	case c.Dir == "":
		return errors.New("dir is required")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("port %d out of range", c.Port)
	case c.KeyCheckInterval.Duration < MinKeyCheckInterval:
		return fmt.Errorf("keyCheckInterval %s is below the minimum %s", c.KeyCheckInterval.Duration, MinKeyCheckInterval)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return errors.New("tls needs certFile and keyFile")
	}
	switch c.KMS.Provider {
	case "":
		return errors.New("kms.provider is required")
	case "local":
		if c.KMS.Local == nil || c.KMS.Local.KeyFile == "" {
			return errors.New("kms.local.keyFile is required for the local provider")
		}
	case "aws":
		a := c.KMS.AWS
		if a == nil || a.Region == "" || a.KeyID == "" || a.AccessKeyID == "" || a.SecretAccessKeyFile == "" {
			return errors.New("kms.aws needs region, keyId, accessKeyId and secretAccessKeyFile")
		}
	case "vault":
		v := c.KMS.Vault
		if v == nil || v.Address == "" || v.Key == "" || v.TokenFile == "" {
			return errors.New("kms.vault needs address, key and tokenFile")
		}
	case "kmip":
		k := c.KMS.KMIP
		if k == nil || k.Address == "" || k.CAFile == "" || k.ClientCertFile == "" || k.ClientKeyFile == "" || (k.KeyID == "") == (k.KeyName == "") {
			return errors.New("kms.kmip needs address, caFile, clientCertFile, clientKeyFile and one of keyId or keyName")
		}
	case "pkcs11":
		k := c.KMS.PKCS11
		if k == nil || k.ModulePath == "" || k.TokenLabel == "" || k.KeyLabel == "" || k.PINFile == "" {
			return errors.New("kms.pkcs11 needs modulePath, tokenLabel, keyLabel and pinFile")
		}
	case "azure":
		k := c.KMS.Azure
		if k == nil || k.VaultURL == "" || k.KeyName == "" || k.TenantID == "" || k.ClientID == "" || k.ClientSecretFile == "" {
			return errors.New("kms.azure needs vaultUrl, keyName, tenantId, clientId and clientSecretFile")
		}
	case "gcp":
		k := c.KMS.GCP
		if k == nil || k.KeyName == "" || k.CredentialsFile == "" {
			return errors.New("kms.gcp needs keyName and credentialsFile")
		}
	case "controlplane":
		k := c.KMS.ControlPlane
		if k == nil || k.URL == "" || k.CAFile == "" || k.CertFile == "" || k.KeyFile == "" || k.GroupID == "" || k.Cluster == "" {
			return errors.New("kms.controlPlane needs url, caFile, certFile, keyFile, groupId and cluster")
		}
	default:
		return fmt.Errorf("kms.provider %q is not supported by this build (supported: local, aws, azure, gcp, vault, kmip, pkcs11, controlplane)", c.KMS.Provider)
	}
	return nil
}
