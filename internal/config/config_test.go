package config

import (
	"errors"
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
