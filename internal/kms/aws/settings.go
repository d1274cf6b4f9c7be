package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Settings describe an AWS KMS configuration: the API's awsKms object
// (Atlas's names) and a node file's "aws" block.
func Settings() kms.Settings {
	return kms.Settings{
		Name: ProviderName, Object: "awsKms", Kind: "AWS",
		Fields: []kms.Setting{
			{Name: "customerMasterKeyID", Node: "keyId", On: kms.Both, Required: kms.Both},
			{Name: "region", On: kms.Both, Required: kms.Both, Check: checkRegion},
			{Name: "accessKeyID", Node: "accessKeyId", On: kms.Both, Required: kms.Both},
			{Name: "secretAccessKey", Node: "secretAccessKeyFile", On: kms.Both, Required: kms.Both, Secret: true},
			{Name: "roleId", On: kms.API, Check: func(string) error {
				return errors.New("cloud provider access roles are not available in cmkdb; use accessKeyID and secretAccessKey")
			}},
			// cmkdb: a non-AWS endpoint (VPC endpoints, `cmkdb dev kms-server`).
			{Name: "endpoint", On: kms.Both},
		},
		Codes: map[kms.Reason]string{
			kms.ReasonKeyDisabled: "AWS_KMS_CUSTOMER_MASTER_KEY_NOT_ENABLED", kms.ReasonKeyPendingDeletion: "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_DELETION",
			kms.ReasonKeyNotYetActive: "AWS_KMS_CUSTOMER_MASTER_KEY_PENDING_IMPORT", kms.ReasonKeyNotFound: "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND",
			kms.ReasonKeyDeleted: "AWS_CUSTOMER_MASTER_KEY_NOT_FOUND", kms.ReasonCredentialsRejected: "INVALID_AWS_CREDENTIALS",
		},
		Open: func(_ context.Context, v map[string]string) (kms.Provider, error) {
			return New(Config{Region: NormalizeRegion(v["region"]), KeyID: v["customerMasterKeyID"],
				AccessKeyID: v["accessKeyID"], SecretAccessKey: v["secretAccessKey"], Endpoint: v["endpoint"]})
		},
	}
}

// NormalizeRegion turns Atlas's region enum (US_EAST_1) into AWS's own
// spelling (us-east-1), which it leaves as it is.
func NormalizeRegion(v string) string { return strings.ToLower(strings.ReplaceAll(v, "_", "-")) }

// checkRegion accepts both spellings of a region.
func checkRegion(v string) error {
	if len(strings.Split(NormalizeRegion(v), "-")) < 3 {
		return fmt.Errorf("%q is not an AWS region", v)
	}
	return nil
}
