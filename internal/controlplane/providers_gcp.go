package controlplane

import (
	"context"
	"errors"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// openGCP is replaced when the gcp provider lands.
func openGCP(_ context.Context, _ map[string]string) (kms.Provider, error) {
	return nil, errors.New("gcp: not yet wired")
}
