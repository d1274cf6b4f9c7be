package config

import (
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "keyCheckInterval": "30s"}`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != DefaultPort || c.Bind != DefaultBind || c.KeyCheckInterval.Duration != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	bad := map[string]string{
		"not json":            `{`,
		"unknown field":       `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "prot": 1}`,
		"no dir":              `{"kms": {"provider": "local", "local": {"keyFile": "/k"}}}`,
		"no provider":         `{"dir": "/d"}`,
		"unknown provider":    `{"dir": "/d", "kms": {"provider": "nope"}}`,
		"local without key":   `{"dir": "/d", "kms": {"provider": "local"}}`,
		"bad duration":        `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "keyCheckInterval": "soon"}`,
		"interval too low":    `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "keyCheckInterval": "1ms"}`,
		"bad port":            `{"dir": "/d", "port": 70000, "kms": {"provider": "local", "local": {"keyFile": "/k"}}}`,
		"trailing":            good + `{}`,
		"aws without secret":  `{"dir": "/d", "kms": {"provider": "aws", "aws": {"region": "r", "keyId": "k", "accessKeyId": "a"}}}`,
		"vault without token": `{"dir": "/d", "kms": {"provider": "vault", "vault": {"address": "https://v", "key": "k"}}}`,
		"inline secret":       `{"dir": "/d", "kms": {"provider": "aws", "aws": {"region": "r", "keyId": "k", "accessKeyId": "a", "secretAccessKey": "s"}}}`,
		"tls without key":     `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "tls": {"certFile": "c"}}`,
		"unknown kms block":   `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}, "hsm": {}}}`,
		"unknown kms setting": `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k", "keyfile": "/k"}}}`,
		"aws bad region":      `{"dir": "/d", "kms": {"provider": "aws", "aws": {"region": "moon", "keyId": "k", "accessKeyId": "a", "secretAccessKeyFile": "/s"}}}`,
		"kmip list entry with comma": `{"dir": "/d", "kms": {"provider": "kmip", "kmip": {"address": "a:1", "caFile": "/c", "clientCertFile": "/c",
			"clientKeyFile": "/k", "keyId": "2", "previousKeyIds": ["1,3"]}}}`,
		"kmip empty previous key id": `{"dir": "/d", "kms": {"provider": "kmip", "kmip": {"address": "a:1", "caFile": "/c", "clientCertFile": "/c",
			"clientKeyFile": "/k", "keyId": "2", "previousKeyIds": [""]}}}`,
		"kmip keyId and keyName": `{"dir": "/d", "kms": {"provider": "kmip", "kmip": {"address": "a:1", "caFile": "/c", "clientCertFile": "/c",
			"clientKeyFile": "/k", "keyId": "2", "keyName": "n"}}}`,
		"azure api-only setting": `{"dir": "/d", "kms": {"provider": "azure", "azure": {"vaultUrl": "https://v.vault.azure.net", "keyName": "k",
			"tenantId": "t", "clientId": "c", "clientSecretFile": "/s", "keyIdentifier": "https://v.vault.azure.net/keys/k"}}}`,
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(in))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%s) = %v, want ErrInvalid", in, err)
			}
			if !strings.Contains(err.Error(), "invalid configuration") {
				t.Fatalf("message %q", err)
			}
			if name == "inline secret" && !strings.Contains(err.Error(), "secretAccessKeyFile") {
				t.Fatalf("an inline secret is refused without naming the file setting: %q", err)
			}
		})
	}
}

// TestParseProviderSettings: a node file's provider block is read by the
// provider's own settings, names as the file spells them, lists joined.
func TestParseProviderSettings(t *testing.T) {
	cases := map[string]struct {
		in   string
		want map[string]string
	}{
		"kmip previous key ids": {
			in: `{"dir": "/d", "kms": {"provider": "kmip", "kmip": {"address": "a:1", "caFile": "/c", "clientCertFile": "/cc",
				"clientKeyFile": "/k", "keyId": "3", "previousKeyIds": ["1", "2"]}}}`,
			want: map[string]string{"address": "a:1", "caFile": "/c", "clientCertFile": "/cc", "clientKeyFile": "/k", "keyId": "3", "previousKeyIds": "1,2"},
		},
		"azure endpoint": {
			in: `{"dir": "/d", "kms": {"provider": "azure", "azure": {"vaultUrl": "https://v.vault.azure.net", "keyName": "k",
				"tenantId": "t", "clientId": "c", "clientSecretFile": "/s", "endpoint": "127.0.0.1:8443", "caFile": "/ca"}}}`,
			want: map[string]string{"vaultUrl": "https://v.vault.azure.net", "keyName": "k", "tenantId": "t", "clientId": "c",
				"clientSecretFile": "/s", "endpoint": "127.0.0.1:8443", "caFile": "/ca"},
		},
		"aws region in Atlas spelling": {
			in:   `{"dir": "/d", "kms": {"provider": "aws", "aws": {"region": "EU_WEST_1", "keyId": "k", "accessKeyId": "a", "secretAccessKeyFile": "/s"}}}`,
			want: map[string]string{"region": "EU_WEST_1", "keyId": "k", "accessKeyId": "a", "secretAccessKeyFile": "/s"},
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			cfg, err := Parse([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(cfg.KMS.Settings, c.want) {
				t.Fatalf("settings %v, want %v", cfg.KMS.Settings, c.want)
			}
			// Written back, the configuration reads the same.
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(js)
			if err != nil || !maps.Equal(again.KMS.Settings, c.want) {
				t.Fatalf("round trip %s: %v, %v", js, again, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}}`))
	f.Add([]byte(`{"dir": "/d", "port": -1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if c.Dir == "" || c.KMS.Provider == "" || c.Port <= 0 {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}

// TestOplogLimits: replication.oplogSizeMB and oplogRetentionHours are
// read, converted, and refused out of range.
func TestOplogLimits(t *testing.T) {
	file := func(extra string) string {
		return `{"dir": "/d", "kms": {"provider": "local", "local": {"keyFile": "/k"}}, "replication": {"setName": "rs", "project": "p",
			"me": "m0", "certFile": "/c", "keyFile": "/k", "caFile": "/ca", "members": [{"name": "m0", "host": "h:1", "raftAddr": "h:2"}]` + extra + `}}`
	}
	good := map[string]struct {
		extra string
		bytes int64
		ret   time.Duration
	}{
		"defaults":  {"", 0, 0},
		"size":      {`, "oplogSizeMB": 990`, 990 << 20, 0},
		"retention": {`, "oplogRetentionHours": 0.5`, 0, 30 * time.Minute},
	}
	for name, c := range good {
		cfg, err := Parse([]byte(file(c.extra)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, r := cfg.Replication.OplogLimits()
		if b != c.bytes || r != c.ret {
			t.Fatalf("%s: limits %d bytes, %s; want %d, %s", name, b, r, c.bytes, c.ret)
		}
	}
	for _, extra := range []string{`, "oplogSizeMB": -1`, `, "oplogSizeMB": 2000000000`, `, "oplogRetentionHours": -2`, `, "oplogRetentionHours": 100000`, `, "oplogRetentionHours": 0.001`, `, "oplogRetentionHours": "24h"`} {
		if _, err := Parse([]byte(file(extra))); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", extra, err)
		}
	}
}
