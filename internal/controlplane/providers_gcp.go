package controlplane

import (
	"context"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/gcp"
)

func openGCP(ctx context.Context, v map[string]string) (kms.Provider, error) {
	return gcp.New(ctx, gcp.Config{KeyName: v["keyVersionResourceID"], CredentialsJSON: []byte(v["serviceAccountKey"]),
		Endpoint: v["endpoint"], CAFile: v["caFile"]})
}
