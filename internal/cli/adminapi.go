package cli

import (
	"net/http"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// adminAPI is the control plane's admin API handler.
func adminAPI(_ *controlplane.Service) http.Handler { return http.NotFoundHandler() }
