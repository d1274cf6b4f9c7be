package vault

import (
	"context"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe a Vault Transit configuration: cmkdb's vaultTransit
// API object and a node file's "vault" block.
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "vaultTransit", Kind: "VAULT",
		Fields: []kms.Setting{
			{Name: "address", On: kms.Both, Required: kms.Both},
			{Name: "keyName", Node: "key", On: kms.Both, Required: kms.Both},
			{Name: "mount", On: kms.Both},
			{Name: "namespace", On: kms.Both},
			{Name: "token", Node: "tokenFile", On: kms.Both, Required: kms.Both, Secret: true},
		},
		Open: func(_ context.Context, v map[string]string) (kms.Provider, error) {
			return New(Config{Address: v["address"], Token: v["token"], Namespace: v["namespace"], Mount: v["mount"], Key: v["keyName"]})
		},
	}
}
