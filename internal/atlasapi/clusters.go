package atlasapi

import (
	"net/http"
	"strings"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Cluster bodies are decoded leniently: Atlas clients send the whole
// cluster description (replicationSpecs, backupEnabled, autoScaling, …),
// which cmkdb accepts and ignores; a known attribute of the wrong type is
// still refused.

func (h *handler) listClusters(c *call) (int, any, error) {
	cs, err := h.svc.Clusters(c.param("groupId"))
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, cs)
	return http.StatusOK, page, err
}

// createCluster answers 201, as Atlas does. Enabling customer key
// management on a cluster is a Project Owner action, so a provider other
// than NONE needs more than GROUP_CLUSTER_MANAGER.
func (h *handler) createCluster(c *call) (int, any, error) {
	var in controlplane.Cluster
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	if p := strings.ToUpper(in.EncryptionAtRestProvider); p != "" && p != controlplane.ProviderNone {
		if err := c.require(controlplane.RoleGroupOwner); err != nil {
			return 0, nil, err
		}
	}
	cl, err := h.svc.CreateCluster(c.r.Context(), c.actor, c.param("groupId"), in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cl, "/groups/"+cl.GroupID+"/clusters/"+cl.Name)
	return http.StatusCreated, body, err
}

func (h *handler) getCluster(c *call) (int, any, error) {
	cl, err := h.svc.GetCluster(c.param("groupId"), c.param("clusterName"))
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cl, c.selfPath())
	return http.StatusOK, body, err
}

// updateCluster needs GROUP_OWNER when the update sets
// encryptionAtRestProvider to anything but NONE or changes it.
func (h *handler) updateCluster(c *call) (int, any, error) {
	var in controlplane.ClusterPatch
	if err := c.decode(&in, false); err != nil {
		return 0, nil, err
	}
	gid, name := c.param("groupId"), c.param("clusterName")
	if in.EncryptionAtRestProvider != nil {
		cur, err := h.svc.GetCluster(gid, name)
		if err != nil {
			return 0, nil, err
		}
		next := strings.ToUpper(*in.EncryptionAtRestProvider)
		if next != controlplane.ProviderNone || cur.EncryptionAtRestProvider != controlplane.ProviderNone {
			if err := c.require(controlplane.RoleGroupOwner); err != nil {
				return 0, nil, err
			}
		}
	}
	cl, err := h.svc.UpdateCluster(c.r.Context(), c.actor, gid, name, in)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cl, c.selfPath())
	return http.StatusOK, body, err
}

// deleteCluster answers 202, as Atlas does: the nodes stop afterwards.
func (h *handler) deleteCluster(c *call) (int, any, error) {
	if err := h.svc.DeleteCluster(c.r.Context(), c.actor, c.param("groupId"), c.param("clusterName")); err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, nil, nil
}

// rotateMasterKey asks for a rolling rotation of the cluster's node master
// keys and answers 202 with the cluster: the nodes rotate one at a time.
func (h *handler) rotateMasterKey(c *call) (int, any, error) {
	gid, name := c.param("groupId"), c.param("clusterName")
	if err := h.svc.RotateMasterKeys(c.r.Context(), c.actor, gid, name); err != nil {
		return 0, nil, err
	}
	cl, err := h.svc.GetCluster(gid, name)
	if err != nil {
		return 0, nil, err
	}
	body, err := c.resource(cl, "/groups/"+gid+"/clusters/"+name)
	return http.StatusAccepted, body, err
}

func (h *handler) listNodes(c *call) (int, any, error) {
	gid, name := c.param("groupId"), c.param("clusterName")
	if _, err := h.svc.GetCluster(gid, name); err != nil {
		return 0, nil, err
	}
	nodes, err := h.svc.Nodes(gid, name)
	if err != nil {
		return 0, nil, err
	}
	page, err := paginate(c, nodes)
	return http.StatusOK, page, err
}
