package kmip

import (
	"context"
	"errors"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe a KMIP configuration: cmkdb's kmip API object and a
// node file's "kmip" block. keyName follows rotation (the newest Active key
// of that name); keyId pins one key; previousKeyIds are earlier keys whose
// records may still be unwrapped.
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "kmip", Kind: "KMIP",
		Fields: []kms.Setting{
			{Name: "address", On: kms.Both, Required: kms.Both},
			{Name: "caFile", On: kms.Both, Required: kms.Both, Path: true},
			{Name: "clientCertificateFile", Node: "clientCertFile", On: kms.Both, Required: kms.Both, Path: true},
			{Name: "clientKeyFile", On: kms.Both, Required: kms.Both, Path: true},
			{Name: "keyId", On: kms.Both},
			{Name: "keyName", On: kms.Both},
			{Name: "previousKeyIds", On: kms.Both, List: true, Check: checkKeyIDs},
		},
		Validate: func(v map[string]string) error {
			if (v["keyId"] == "") == (v["keyName"] == "") {
				return errors.New("kmip needs exactly one of keyId or keyName")
			}
			return nil
		},
		Open: func(ctx context.Context, v map[string]string) (kms.Provider, error) {
			return New(ctx, Config{Address: v["address"], CAFile: v["caFile"], ClientCertFile: v["clientCertificateFile"],
				ClientKeyFile: v["clientKeyFile"], KeyID: v["keyId"], KeyName: v["keyName"], PreviousKeyIDs: kms.SplitList(v["previousKeyIds"])})
		},
	}
}

// checkKeyIDs refuses an empty entry in a list of key ids ("1,,2"): it would
// name no key.
func checkKeyIDs(v string) error {
	for _, id := range kms.SplitList(v) {
		if id == "" {
			return errors.New("an empty key id in the list")
		}
	}
	return nil
}
