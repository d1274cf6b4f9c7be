package atlasapi

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Cluster bodies are decoded leniently: Atlas clients send the whole
// cluster description (replicationSpecs, autoScaling, …), which cmkdb
// accepts and ignores where it is informational; a known attribute of the
// wrong type is still refused. backupEnabled and providerBackupEnabled are
// not informational: they turn scheduled snapshots on (or are refused).

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
	if in.ReplicationFactor == 0 {
		n, err := specMembers(c)
		if err != nil {
			return 0, nil, err
		}
		in.ReplicationFactor = n
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
	if in.ReplicationFactor == nil {
		n, err := specMembers(c)
		if err != nil {
			return 0, nil, err
		}
		if n > 0 {
			in.ReplicationFactor = &n
		}
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

// specMembers reads the electable members a cluster description's
// replicationSpecs ask for: v2's regionConfigs[].electableSpecs.nodeCount
// or v1.0's regionsConfig.<region>.electableNodes, summed over the one
// replication spec a replica set has. 0: the body does not say. More
// than one spec is a sharded cluster, which cmkdb does not run.
func specMembers(c *call) (int, error) {
	b, err := c.body()
	if err != nil {
		return 0, err
	}
	var body struct {
		ReplicationSpecs []struct {
			NumShards     int `json:"numShards"`
			RegionConfigs []struct {
				ElectableSpecs *struct {
					NodeCount int `json:"nodeCount"`
				} `json:"electableSpecs"`
			} `json:"regionConfigs"`
			RegionsConfig map[string]struct {
				ElectableNodes int `json:"electableNodes"`
			} `json:"regionsConfig"`
		} `json:"replicationSpecs"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return 0, errInvalidAttr("replicationSpecs")
	}
	specs := body.ReplicationSpecs
	if len(specs) == 0 {
		return 0, nil
	}
	if len(specs) > 1 || specs[0].NumShards > 1 {
		return 0, errInvalidAttr("replicationSpecs")
	}
	n := 0
	for _, rc := range specs[0].RegionConfigs {
		if rc.ElectableSpecs != nil {
			n += rc.ElectableSpecs.NodeCount
		}
	}
	for _, rc := range specs[0].RegionsConfig {
		n += rc.ElectableNodes
	}
	return n, nil
}
