package gcp

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
)

// serviceAccount is the part of a service account key file we check.
type serviceAccount struct {
	Type           string `json:"type"`
	PrivateKeyID   string `json:"private_key_id"`
	PrivateKey     string `json:"private_key"`
	ClientEmail    string `json:"client_email"`
	UniverseDomain string `json:"universe_domain"`
}

// parseServiceAccount accepts a service account key JSON and nothing else.
//
// Google's client accepts any credential configuration, including
// external_account ones that make it run a command or fetch a URL; a key
// handed in by a customer must be checked first (Google's advice on
// externally sourced credentials). Errors name fields, never values.
func parseServiceAccount(js []byte) (serviceAccount, error) {
	var sa serviceAccount
	if len(js) == 0 {
		return sa, errors.New("empty: a service account key JSON is required")
	}
	if err := json.Unmarshal(js, &sa); err != nil {
		return serviceAccount{}, errors.New("not a JSON object (a service account key file is expected)")
	}
	switch {
	case sa.Type != "service_account":
		return serviceAccount{}, fmt.Errorf("credential type %q: only a service account key (\"service_account\") is accepted", truncate(sa.Type, 40))
	case sa.ClientEmail == "":
		return serviceAccount{}, errors.New("client_email is missing")
	case sa.PrivateKeyID == "":
		return serviceAccount{}, errors.New("private_key_id is missing")
	case sa.UniverseDomain != "" && sa.UniverseDomain != "googleapis.com":
		return serviceAccount{}, fmt.Errorf("universe_domain %q is not supported", truncate(sa.UniverseDomain, 80))
	}
	block, _ := pem.Decode([]byte(sa.PrivateKey))
	if block == nil {
		return serviceAccount{}, errors.New("private_key is not a PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return serviceAccount{}, fmt.Errorf("private_key is a %q PEM block, not a private key", truncate(block.Type, 40))
	}
	if err != nil {
		return serviceAccount{}, errors.New("private_key does not parse as a PKCS#8 or PKCS#1 key")
	}
	if _, ok := key.(*rsa.PrivateKey); !ok {
		return serviceAccount{}, errors.New("private_key is not an RSA key")
	}
	sa.PrivateKey = "" // not kept
	return sa, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
