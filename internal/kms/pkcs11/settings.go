package pkcs11

import (
	"context"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe a PKCS#11 configuration: cmkdb's pkcs11 API object and
// a node file's "pkcs11" block.
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "pkcs11", Kind: "PKCS11",
		Fields: []kms.Setting{
			{Name: "modulePath", On: kms.Both, Required: kms.Both, Path: true},
			{Name: "tokenLabel", On: kms.Both, Required: kms.Both},
			{Name: "keyLabel", On: kms.Both, Required: kms.Both},
			{Name: "pin", Node: "pinFile", On: kms.Both, Required: kms.Both, Secret: true},
		},
		Open: func(_ context.Context, v map[string]string) (kms.Provider, error) {
			return New(Config{ModulePath: v["modulePath"], TokenLabel: v["tokenLabel"], KeyLabel: v["keyLabel"], PIN: v["pin"]})
		},
	}
}
