package gcp

import (
	"context"
	"errors"
	"strings"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe a Google Cloud KMS configuration: the API's
// googleCloudKms object and a node file's "gcp" block. The key is a
// cryptoKey (follow its primary version) or a cryptoKeyVersion (pinned).
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "googleCloudKms", Kind: "GCP",
		Fields: []kms.Setting{
			{Name: "keyVersionResourceID", Node: "keyName", On: kms.Both, Required: kms.Both, Check: checkResource},
			{Name: "serviceAccountKey", Node: "credentialsFile", On: kms.Both, Required: kms.Both, Secret: true},
			{Name: "roleId", On: kms.API, Check: func(string) error {
				return errors.New("cloud provider access roles are not available in cmkdb; use serviceAccountKey")
			}},
			{Name: "endpoint", On: kms.Both}, // cmkdb: a non-Google endpoint
			{Name: "caFile", On: kms.Both, Path: true},
		},
		Codes: map[kms.Reason]string{
			kms.ReasonKeyDisabled: "GOOGLE_CLOUD_KMS_KEY_VERSION_DISABLED", kms.ReasonKeyDeleted: "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROYED",
			kms.ReasonKeyPendingDeletion: "GOOGLE_CLOUD_KMS_KEY_VERSION_DESTROY_SCHEDULED", kms.ReasonKeyNotFound: "GOOGLE_CLOUD_KMS_KEY_VERSION_NOT_FOUND",
			kms.ReasonKeyNotYetActive: "GOOGLE_CLOUD_KMS_KEY_VERSION_PENDING_GENERATION", kms.ReasonCredentialsRejected: "INVALID_GOOGLE_CLOUD_CREDENTIALS",
		},
		Open: func(ctx context.Context, v map[string]string) (kms.Provider, error) {
			return New(ctx, Config{KeyName: v["keyVersionResourceID"], CredentialsJSON: []byte(v["serviceAccountKey"]),
				Endpoint: v["endpoint"], CAFile: v["caFile"]})
		},
	}
}

func checkResource(v string) error {
	p := strings.Split(v, "/")
	if len(p) < 8 || p[0] != "projects" || p[2] != "locations" || p[4] != "keyRings" || p[6] != "cryptoKeys" ||
		(len(p) != 8 && (len(p) != 10 || p[8] != "cryptoKeyVersions")) {
		return errors.New("want projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>[/cryptoKeyVersions/<n>]")
	}
	return nil
}
