package controlplane

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// NodeID is a node's identity, taken from its client certificate by the key
// service, never from what the node says about itself.
type NodeID struct {
	GroupID string
	Cluster string
	Name    string
}

func (id NodeID) key() string { return id.Cluster + "/" + id.Name }

// Directive is what the control plane wants of a node.
type Directive struct {
	// Gen increases with every change; a node long-polls for a larger one.
	Gen uint64 `json:"gen"`
	// Validity of the cluster's key: VALID, INVALID (drop keys, refuse
	// I/O) or UNREACHABLE (keep the current state).
	Validity string     `json:"validity"`
	Reason   kms.Reason `json:"reason,omitempty"`
	Detail   string     `json:"detail,omitempty"`
	// WrapKey is the key the node's master key must be wrapped with; a node
	// whose master key names another re-wraps it.
	WrapKey kms.KeyRef `json:"wrapKey"`
	// Rotate > the node's last applied rotation asks for a new master key;
	// RotateApplied is the last one the control plane saw applied (a node
	// restarting resumes its count from it).
	Rotate        uint64 `json:"rotate"`
	RotateApplied uint64 `json:"rotateApplied"`
}

// NodeReport is what a node says about itself.
type NodeReport struct {
	Address            string     `json:"address,omitempty"`
	State              string     `json:"state"`
	Reason             string     `json:"reason,omitempty"`
	MasterKeyVersion   uint32     `json:"masterKeyVersion"`
	MasterKeyCreatedAt time.Time  `json:"masterKeyCreatedAt"`
	CMK                kms.KeyRef `json:"cmk"`
	RotateApplied      uint64     `json:"rotateApplied"`
}

// ErrUnknownCluster is returned to nodes of clusters that do not exist.
var ErrUnknownCluster = errors.New("controlplane: the node's cluster does not exist")

// boundAAD binds a node's associated data to its identity, so one node
// cannot have the key service unwrap another node's master key.
func boundAAD(id NodeID, aad []byte) []byte {
	b := []byte("cmkdb-node-key/v1\x00" + id.GroupID + "\x00" + id.Cluster + "\x00" + id.Name + "\x00")
	return append(b, aad...)
}

// nodeKeysLocked returns the provider a node wraps with now and every
// provider that may unwrap its master key, or why it may not use any.
func (s *Service) nodeKeysLocked(id NodeID) (current kms.Provider, candidates []kms.Provider, err error) {
	gs, ok := s.groups[id.GroupID]
	if !ok {
		return nil, nil, &kms.Error{Op: "keyservice", Reason: kms.ReasonKeyNotFound, Detail: "the node's project does not exist", Err: ErrUnknownCluster}
	}
	c, ok := gs.clusters[id.Cluster]
	if !ok {
		return nil, nil, &kms.Error{Op: "keyservice", Reason: kms.ReasonKeyNotFound, Detail: "the node's cluster does not exist", Err: ErrUnknownCluster}
	}
	var extra []kms.Provider
	for _, p := range []kms.Provider{gs.provider, gs.prevProvider} {
		if p != nil {
			extra = append(extra, p)
		}
	}
	if c.EncryptionAtRestProvider == ProviderNone {
		return s.internal, append([]kms.Provider{s.internal}, extra...), nil
	}
	if gs.ear.Kind != c.EncryptionAtRestProvider || gs.provider == nil {
		return nil, nil, &kms.Error{Op: "keyservice", Reason: kms.ReasonKeyNotFound, Detail: "the project has no " + c.EncryptionAtRestProvider + " configuration"}
	}
	if gs.ear.Key.Validity == kms.Invalid.String() {
		return nil, nil, &kms.Error{Op: "keyservice", Key: gs.ear.Key.Key, Reason: gs.ear.Key.Reason,
			Detail: "the project's customer master key is invalid: " + gs.ear.Key.Detail}
	}
	return gs.provider, append(extra, s.internal), nil
}

// NodeWrap wraps a node's key under the key its cluster uses now.
func (s *Service) NodeWrap(ctx context.Context, id NodeID, plaintext, aad []byte) (kms.Wrapped, error) {
	s.mu.Lock()
	p, _, err := s.nodeKeysLocked(id)
	s.mu.Unlock()
	if err != nil {
		return kms.Wrapped{}, err
	}
	return p.Wrap(ctx, plaintext, boundAAD(id, aad))
}

// NodeUnwrap unwraps a node's key, only while its cluster's key is usable.
func (s *Service) NodeUnwrap(ctx context.Context, id NodeID, w kms.Wrapped, aad []byte) ([]byte, error) {
	s.mu.Lock()
	_, candidates, err := s.nodeKeysLocked(id)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	bound := boundAAD(id, aad)
	var first error
	for _, p := range candidates {
		key, err := p.Unwrap(ctx, w, bound)
		if err == nil {
			return key, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = &kms.Error{Op: "unwrap", Key: w.Key, Reason: kms.ReasonKeyNotFound, Detail: "no configured key wraps " + w.Key.String()}
	}
	return nil, first
}

// NodeDirective returns the node's directive once its Gen exceeds after, or
// when ctx ends (then the current one).
func (s *Service) NodeDirective(ctx context.Context, id NodeID, after uint64) (Directive, error) {
	for {
		s.mu.Lock()
		d, err := s.directiveLocked(id)
		wait := s.changed
		s.mu.Unlock()
		if err != nil || d.Gen > after {
			return d, err
		}
		select {
		case <-ctx.Done():
			return d, nil
		case <-wait:
		case <-s.done:
			return d, nil
		}
	}
}

func (s *Service) directiveLocked(id NodeID) (Directive, error) {
	d := Directive{Gen: s.gen}
	gs, ok := s.groups[id.GroupID]
	if !ok {
		return d, ErrUnknownCluster
	}
	c, ok := gs.clusters[id.Cluster]
	if !ok {
		return d, ErrUnknownCluster
	}
	if n, ok := gs.nodes[id.key()]; ok {
		d.Rotate, d.RotateApplied = n.RotateRequested, n.RotateApplied
	}
	if c.EncryptionAtRestProvider == ProviderNone {
		d.Validity, d.WrapKey = kms.Valid.String(), s.internalRef
		return d, nil
	}
	k := gs.ear.Key
	d.WrapKey = k.Key
	switch {
	case gs.ear.Kind != c.EncryptionAtRestProvider:
		d.Validity, d.Reason, d.Detail = kms.Invalid.String(), kms.ReasonKeyNotFound, "the project has no "+c.EncryptionAtRestProvider+" configuration"
	case k.Validity == kms.Invalid.String():
		d.Validity, d.Reason, d.Detail = kms.Invalid.String(), k.Reason, k.Detail
	case k.Unreachable:
		d.Validity, d.Reason, d.Detail = kms.Unreachable.String(), k.Reason, k.Detail
	default:
		d.Validity = kms.Valid.String()
	}
	return d, nil
}

// NodeReport records a node's report (registering it on first contact).
func (s *Service) NodeReport(id NodeID, r NodeReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, ok := s.groups[id.GroupID]
	if !ok {
		return ErrUnknownCluster
	}
	if _, ok := gs.clusters[id.Cluster]; !ok {
		return ErrUnknownCluster
	}
	now := s.now()
	n, known := gs.nodes[id.key()]
	if !known {
		n = &Node{Name: id.Name, GroupID: id.GroupID, Cluster: id.Cluster}
	}
	prev := *n
	n.Address, n.State, n.Reason = r.Address, r.State, r.Reason
	if r.State == "AVAILABLE" {
		n.MasterKeyVersion, n.MasterKeyCreatedAt, n.CMK = r.MasterKeyVersion, r.MasterKeyCreatedAt, r.CMK
		n.RotateApplied = max(n.RotateApplied, r.RotateApplied)
	}
	n.LastSeen = now
	gs.nodes[id.key()] = n
	meaningful := !known || prev.State != n.State || prev.MasterKeyVersion != n.MasterKeyVersion ||
		prev.CMK != n.CMK || prev.RotateApplied != n.RotateApplied || prev.Address != n.Address
	recs := map[string]any{}
	if s.clusterNodeUpLocked(gs, id.Cluster, n.State, recs) {
		meaningful = true
	}
	if !meaningful {
		return nil
	}
	recs["node/"+id.GroupID+"/"+id.key()] = *n
	if known && prev.MasterKeyVersion != 0 && prev.MasterKeyVersion != n.MasterKeyVersion && n.MasterKeyVersion != 0 {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventMasterKeyRotated, ClusterName: id.Cluster,
			Detail: fmt.Sprintf("node %s master key v%d -> v%d", id.Name, prev.MasterKeyVersion, n.MasterKeyVersion)})
	} else if known && prev.CMK.KeyID != "" && prev.CMK != n.CMK && n.CMK.KeyID != "" {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventMasterKeyRewrapped, ClusterName: id.Cluster,
			Detail: fmt.Sprintf("node %s master key re-wrapped: %s -> %s", id.Name, prev.CMK, n.CMK)})
	}
	if known && prev.State != n.State && n.State == "DISABLED" && gs.ear.Key.Validity != kms.Invalid.String() {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventClusterEncryptionDisabled, ClusterName: id.Cluster,
			Detail: "node " + id.Name + ": " + n.Reason})
	} else if known && prev.State == "DISABLED" && n.State == "AVAILABLE" && lastClusterEAREvent(gs, id.Cluster) == EventClusterEncryptionDisabled {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventClusterEncryptionRestored, ClusterName: id.Cluster,
			Detail: "node " + id.Name + " serves again"})
	}
	s.dropPreviousKeyLocked(gs, recs)
	if err := s.st.put(recs); err != nil {
		return err
	}
	if n.Address != "" {
		if c := gs.clusters[id.Cluster]; c.ConnectionStrings.Standard == "" {
			c.ConnectionStrings.Standard = "mongodb://" + n.Address
		}
	}
	return nil
}

// dropPreviousKeyLocked forgets the configuration a CMK change replaced once
// every node that used it has re-wrapped its master key.
func (s *Service) dropPreviousKeyLocked(gs *groupState, recs map[string]any) {
	if gs.ear.Previous == nil {
		return
	}
	for _, n := range gs.nodes {
		c, ok := gs.clusters[n.Cluster]
		if ok && c.EncryptionAtRestProvider == gs.ear.Kind && n.CMK != gs.ear.Key.Key {
			return
		}
	}
	closeProvider(gs.prevProvider)
	gs.prevProvider, gs.ear.Previous = nil, nil
	recs["ear/"+gs.group.ID] = gs.ear
}

// Nodes lists a cluster's nodes.
func (s *Service) Nodes(gid, cluster string) ([]Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	var out []Node
	for _, n := range gs.nodes {
		if cluster == "" || n.Cluster == cluster {
			out = append(out, *n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster+"/"+out[i].Name < out[j].Cluster+"/"+out[j].Name })
	return out, nil
}

// ParseNodeID parses the "group/cluster/name" form used in node certificates.
func ParseNodeID(s string) (NodeID, bool) {
	p := strings.Split(s, "/")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return NodeID{}, false
	}
	return NodeID{GroupID: p[0], Cluster: p[1], Name: p[2]}, true
}

// String is the certificate form of a node id.
func (id NodeID) String() string { return id.GroupID + "/" + id.Cluster + "/" + id.Name }
