package cli

import (
	"net/http"

	"github.com/cmkdb/cmkdb/internal/atlasapi"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// adminAPI is the control plane's admin API handler.
func adminAPI(svc *controlplane.Service) http.Handler {
	return atlasapi.New(svc, atlasapi.Options{Logger: svc.Logger()})
}
