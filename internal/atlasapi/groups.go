package atlasapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// groupCreate is the body of POST /groups: Atlas's Group, whose read-only
// fields a client may send back and cmkdb ignores.
type groupCreate struct {
	Name                      string          `json:"name"`
	OrgID                     string          `json:"orgId"`
	ID                        string          `json:"id"`
	ClusterCount              int             `json:"clusterCount"`
	Created                   string          `json:"created"`
	RegionUsageRestrictions   string          `json:"regionUsageRestrictions"`
	WithDefaultAlertsSettings *bool           `json:"withDefaultAlertsSettings"`
	Links                     json.RawMessage `json:"links"`
	Tags                      json.RawMessage `json:"tags"`
}

// org is Atlas's Organization.
type org struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	IsDeleted bool   `json:"isDeleted"`
	Links     []link `json:"links"`
}

func (c *call) orgView(o controlplane.Org) org {
	return org{ID: o.ID, Name: o.Name, Links: []link{{Href: c.href("/orgs/"+o.ID, nil), Rel: "self"}}}
}

// checkOrg answers 404 for an org other than the one the control plane serves.
func (c *call) checkOrg() error {
	if id := c.param("orgId"); id != c.h.svc.Org().ID {
		return newErr(http.StatusNotFound, "ORG_NOT_FOUND", fmt.Sprintf("No organization with ID %s exists.", truncate(id)), truncate(id))
	}
	return nil
}

func (h *handler) listOrgs(c *call) (int, any, error) {
	page, err := paginate(c, []org{c.orgView(h.svc.Org())})
	return http.StatusOK, page, err
}

func (h *handler) getOrg(c *call) (int, any, error) {
	if err := c.checkOrg(); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, c.orgView(h.svc.Org()), nil
}

// listGroups lists the projects the key may read (all of them for org roles).
func (h *handler) listGroups(c *call) (int, any, error) {
	var out []controlplane.Group
	for _, g := range h.svc.Groups() {
		if c.canRead(g.ID) {
			out = append(out, g)
		}
	}
	page, err := paginate(c, out)
	return http.StatusOK, page, err
}

// createGroup answers 200 with the project, as Atlas's createProject does.
func (h *handler) createGroup(c *call) (int, any, error) {
	var in groupCreate
	if err := c.decode(&in, true); err != nil {
		return 0, nil, err
	}
	g, err := h.svc.CreateGroup(c.r.Context(), c.actor, in.Name, in.OrgID)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(g, "/groups/"+g.ID)
	return http.StatusOK, body, err
}

func (h *handler) getGroup(c *call) (int, any, error) {
	g, err := h.svc.GetGroup(c.param("groupId"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(g, c.selfPath())
	return http.StatusOK, body, err
}

// getGroupByName authorizes after the lookup: the role is on the project
// the name resolves to.
func (h *handler) getGroupByName(c *call) (int, any, error) {
	g, err := h.svc.GroupByName(c.param("groupName"))
	if err != nil {
		if !c.canReadAny() {
			return 0, nil, errForbidden()
		}
		return 0, nil, err
	}
	if !c.canRead(g.ID) {
		return 0, nil, errForbidden()
	}
	body, err := c.resource(g, "/groups/"+g.ID)
	return http.StatusOK, body, err
}

// canReadAny reports whether the key reads every project (an org role), so
// telling it a name does not exist reveals nothing it could not list.
func (c *call) canReadAny() bool {
	return controlplane.Allowed(c.roles, "", controlplane.RoleOrgReadOnly)
}

// deleteGroup answers 204, as Atlas's deleteProject does.
func (h *handler) deleteGroup(c *call) (int, any, error) {
	if err := h.svc.DeleteGroup(c.r.Context(), c.actor, c.param("groupId")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
