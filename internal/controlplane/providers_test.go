package controlplane

import (
	"errors"
	"testing"
)

// TestAPIProviderObjectsFollowTheRegistry: the API refuses what a provider's
// settings refuse and accepts the settings a node file accepts too (the
// formerly node-only kmip previousKeyIds), with the same checks.
func TestAPIProviderObjectsFollowTheRegistry(t *testing.T) {
	cases := map[string]struct {
		body string
		ok   bool
	}{
		"kmip previousKeyIds":           {`{"kmip":{"enabled":true,"previousKeyIds":"1,2"}}`, true},
		"azure endpoint and caFile":     {`{"azureKeyVault":{"enabled":true,"endpoint":"127.0.0.1:1","caFile":"/x"}}`, true},
		"aws region in either spelling": {`{"awsKms":{"enabled":true,"region":"EU_WEST_1"}}`, true},
		"node-only azure vaultUrl":      {`{"azureKeyVault":{"enabled":true,"vaultUrl":"https://v.vault.azure.net"}}`, false},
		"node file name of a secret":    {`{"awsKms":{"enabled":true,"secretAccessKeyFile":"/s"}}`, false},
		"unknown attribute":             {`{"vaultTransit":{"enabled":true,"tokn":"x"}}`, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseEARPatch([]byte(c.body))
			var ae *APIError
			switch {
			case c.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !c.ok && (err == nil || !errors.As(err, &ae)):
				t.Fatalf("accepted (or not an API error): %v", err)
			}
		})
	}
	// Values are checked by the provider's own checks when applied.
	for _, s := range specs() {
		if s.object != "kmip" {
			continue
		}
		f, ok := s.field("previousKeyIds")
		if !ok || f.check == nil || f.check("1,,2") == nil || f.check("1,2") != nil {
			t.Fatalf("kmip previousKeyIds check: %+v", f)
		}
	}
}
