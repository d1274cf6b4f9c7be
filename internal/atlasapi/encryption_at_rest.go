package atlasapi

import (
	"encoding/json"
	"net/http"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// writeOnlyAttrs are the credential attributes of the provider objects;
// their values are scrubbed from any error a PATCH answers.
func writeOnlyAttrs() []string {
	return []string{"secretAccessKey", "secret", "serviceAccountKey", "token", "pin"}
}

// getEAR runs a fresh key check first, as Atlas's GET does ("try again"
// through the API).
func (h *handler) getEAR(c *call) (int, any, error) {
	ear, err := h.svc.EncryptionAtRest(c.r.Context(), c.param("groupId"), true)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c.withEARLinks(ear), nil
}

func (h *handler) patchEAR(c *call) (int, any, error) {
	b, err := c.body()
	if err != nil {
		return 0, nil, err
	}
	secrets := secretValues(b)
	p, err := controlplane.ParseEARPatch(b)
	if err != nil {
		return 0, nil, redacted(controlplane.AsAPIError(err), scrubSecrets(secrets))
	}
	ear, err := h.svc.PatchEncryptionAtRest(c.r.Context(), c.actor, c.param("groupId"), p)
	if err != nil {
		return 0, nil, redacted(controlplane.AsAPIError(err), scrubSecrets(secrets))
	}
	return http.StatusOK, c.withEARLinks(ear), nil
}

// validateEAR is cmkdb's "Try Again": check the key now and answer the
// resource with the verdict.
func (h *handler) validateEAR(c *call) (int, any, error) {
	gid := c.param("groupId")
	if _, err := h.svc.CheckNow(c.r.Context(), gid); err != nil {
		return 0, nil, err
	}
	ear, err := h.svc.EncryptionAtRest(c.r.Context(), gid, false)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c.withEARLinks(ear), nil
}

func (c *call) withEARLinks(ear map[string]any) map[string]any {
	ear["links"] = []link{{Href: c.href("/groups/"+c.param("groupId")+"/encryptionAtRest", nil), Rel: "self"}}
	return ear
}

// secretValues collects the credential values of a PATCH body, so errors
// can be scrubbed of them. Short values are skipped: replacing "ab"
// everywhere would mangle the message and hide nothing.
func secretValues(body []byte) []string {
	var objs map[string]map[string]any
	if json.Unmarshal(body, &objs) != nil {
		// Not all objects; collect per object instead.
		var raw map[string]json.RawMessage
		if json.Unmarshal(body, &raw) != nil {
			return nil
		}
		objs = map[string]map[string]any{}
		for k, v := range raw {
			var o map[string]any
			if json.Unmarshal(v, &o) == nil {
				objs[k] = o
			}
		}
	}
	var out []string
	for _, o := range objs {
		for _, name := range writeOnlyAttrs() {
			if s, ok := o[name].(string); ok && len(s) >= 4 {
				out = append(out, s)
			}
		}
	}
	return out
}
