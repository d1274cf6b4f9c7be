package atlasapi

import (
	_ "embed"
	"net/http"
)

// openAPIDoc describes exactly the routes of table(). It is written in the
// JSON subset of YAML so that it is both a valid .yaml document and
// readable with encoding/json (the module has no YAML parser). It is
// never written to.
//
//go:embed openapi.yaml
var openAPIDoc []byte

// openAPI serves the document without authentication: it holds no data.
func (h *handler) openAPI(*call) (int, any, error) {
	return http.StatusOK, rawBody{contentType: "application/yaml", data: openAPIDoc}, nil
}
