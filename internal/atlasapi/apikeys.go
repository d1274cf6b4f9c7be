package atlasapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// apiKeyCreate is the body of both API key creations: Atlas takes role
// names and scopes them to the org or project of the path.
type apiKeyCreate struct {
	Desc  string   `json:"desc"`
	Roles []string `json:"roles"`
}

func (in apiKeyCreate) validate() error {
	if strings.TrimSpace(in.Desc) == "" {
		return errMissingAttr("desc")
	}
	if len(in.Desc) > 250 {
		return errInvalidAttr("desc")
	}
	if len(in.Roles) == 0 {
		return errMissingAttr("roles")
	}
	return nil
}

func errInvalidRole(role string) error {
	role = truncate(role)
	return newErr(http.StatusBadRequest, "INVALID_ROLE", fmt.Sprintf("Invalid role %s.", role), role)
}

func (h *handler) listAPIKeys(c *call) (int, any, error) {
	if err := c.checkOrg(); err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, h.svc.APIKeys())
	return http.StatusOK, page, err
}

// createOrgAPIKey creates a key with org roles. It answers 200 with the
// private key, shown this once, as Atlas's createApiKey does.
func (h *handler) createOrgAPIKey(c *call) (int, any, error) {
	if err := c.checkOrg(); err != nil {
		return 0, nil, err
	}
	var in apiKeyCreate
	if err := c.decode(&in, true); err != nil {
		return 0, nil, err
	}
	if err := in.validate(); err != nil {
		return 0, nil, err
	}
	roles := make([]controlplane.RoleAssignment, 0, len(in.Roles))
	for _, r := range in.Roles {
		if r != controlplane.RoleOrgOwner && r != controlplane.RoleOrgReadOnly {
			return 0, nil, errInvalidRole(r)
		}
		roles = append(roles, controlplane.RoleAssignment{RoleName: r, OrgID: c.param("orgId")})
	}
	return h.createAPIKey(c, in.Desc, roles)
}

// createGroupAPIKey creates a key with roles on the path's project only:
// a project owner must not be able to mint an org-wide key.
func (h *handler) createGroupAPIKey(c *call) (int, any, error) {
	var in apiKeyCreate
	if err := c.decode(&in, true); err != nil {
		return 0, nil, err
	}
	if err := in.validate(); err != nil {
		return 0, nil, err
	}
	roles := make([]controlplane.RoleAssignment, 0, len(in.Roles))
	for _, r := range in.Roles {
		switch r {
		case controlplane.RoleGroupOwner, controlplane.RoleGroupReadOnly, controlplane.RoleGroupClusterManager:
		default:
			return 0, nil, errInvalidRole(r)
		}
		roles = append(roles, controlplane.RoleAssignment{RoleName: r, GroupID: c.param("groupId")})
	}
	return h.createAPIKey(c, in.Desc, roles)
}

func (h *handler) createAPIKey(c *call, desc string, roles []controlplane.RoleAssignment) (int, any, error) {
	k, err := h.svc.CreateAPIKey(c.r.Context(), desc, roles)
	if err != nil {
		return 0, nil, err
	}
	h.log.Info("API key created", "publicKey", k.PublicKey, "by", c.actor)
	body, err := c.resource(k, "/orgs/"+h.svc.Org().ID+"/apiKeys/"+k.ID)
	return http.StatusOK, body, err
}

// deleteAPIKey answers 204, as Atlas's deleteApiKey does.
func (h *handler) deleteAPIKey(c *call) (int, any, error) {
	if err := c.checkOrg(); err != nil {
		return 0, nil, err
	}
	if err := h.svc.DeleteAPIKey(c.param("apiUserId")); err != nil {
		return 0, nil, err
	}
	h.log.Info("API key deleted", "id", c.param("apiUserId"), "by", c.actor)
	return http.StatusNoContent, nil, nil
}
