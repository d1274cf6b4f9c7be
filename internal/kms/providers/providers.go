// Package providers turns a KMS configuration into a kms.Provider. It is the
// one place that knows every provider package; each provider stays
// independent of the others and of the configuration format.
package providers

import (
	"fmt"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// Open builds the provider a configuration names.
func Open(c config.KMS) (kms.Provider, error) {
	switch c.Provider {
	case "local":
		if c.Local == nil {
			return nil, fmt.Errorf("kms: local provider needs kms.local")
		}
		return local.Open(c.Local.KeyFile)
	}
	return nil, fmt.Errorf("kms: provider %q is not supported by this build", c.Provider)
}
