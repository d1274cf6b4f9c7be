package local

import (
	"context"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe the local key file provider: cmkdb's local API object
// and a node file's "local" block.
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "local", Kind: "LOCAL",
		Fields: []kms.Setting{{Name: "keyFile", On: kms.Both, Required: kms.Both, Path: true}},
		Open: func(_ context.Context, v map[string]string) (kms.Provider, error) {
			return Open(v["keyFile"])
		},
	}
}
