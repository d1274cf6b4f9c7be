package controlplane

import (
	"context"
	"fmt"
	"sort"

	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// The node <-> control plane protocol types live in cpproto, which a node
// links without the control plane; these names keep the service's API.
type (
	NodeID     = cpproto.NodeID
	Directive  = cpproto.Directive
	NodeReport = cpproto.NodeReport
)

// ReasonKeystoreRollback is the reason given to a node whose keystore is
// older than one it reported before.
const ReasonKeystoreRollback kms.Reason = "KEYSTORE_ROLLBACK"

// ErrUnknownCluster is returned to nodes of clusters that do not exist.
var ErrUnknownCluster = cpproto.ErrUnknownCluster

// boundAAD binds a node's associated data to its identity, so one node
// cannot have the key service unwrap another node's master key.
func boundAAD(id NodeID, aad []byte) []byte { return cpproto.BindAAD(id, aad) }

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
	rollback := ""
	if gs, ok := s.groups[id.GroupID]; ok {
		if n, ok := gs.nodes[id.InGroup()]; ok {
			rollback = n.Rollback
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if rollback != "" {
		return nil, &kms.Error{Op: "unwrap", Key: w.Key, Reason: ReasonKeystoreRollback, Detail: rollback}
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
	rollback := ""
	if n, ok := gs.nodes[id.InGroup()]; ok {
		d.Rotate, d.RotateApplied = n.RotateRequested, n.RotateApplied
		d.Reencrypt, d.ReencryptApplied = n.ReencryptRequested, n.ReencryptApplied
		rollback = n.Rollback
	}
	keyVerdict(gs, c, s.internalRef, &d)
	if rollback != "" {
		// A node presenting an older keystore than it reported before is
		// refused whatever the key's state.
		d.Validity, d.Reason, d.Detail = kms.Invalid.String(), ReasonKeystoreRollback, rollback
	}
	return d, nil
}

// keyVerdict sets d's wrap key and validity from the cluster's provider and
// the project's key state.
func keyVerdict(gs *groupState, c *Cluster, internal kms.KeyRef, d *Directive) {
	if c.EncryptionAtRestProvider == ProviderNone {
		d.Validity, d.WrapKey = kms.Valid.String(), internal
		return
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
	n, known := gs.nodes[id.InGroup()]
	if !known {
		n = &Node{Name: id.Name, GroupID: id.GroupID, Cluster: id.Cluster}
	}
	prev := *n
	n.Address, n.State, n.Reason = r.Address, r.State, r.Reason
	if r.State == "AVAILABLE" {
		n.MasterKeyVersion, n.MasterKeyCreatedAt, n.CMK = r.MasterKeyVersion, r.MasterKeyCreatedAt, r.CMK
		n.RotateApplied = max(n.RotateApplied, r.RotateApplied)
	}
	reencrypted := r.ReencryptApplied > n.ReencryptApplied
	n.ReencryptApplied = max(n.ReencryptApplied, r.ReencryptApplied)
	n.Reencryption = r.Reencryption
	n.LastSeen = now
	gs.nodes[id.InGroup()] = n
	rolledBack := s.attestGenerationLocked(n, r.KeystoreGeneration)
	meaningful := !known || prev.State != n.State || prev.MasterKeyVersion != n.MasterKeyVersion ||
		prev.CMK != n.CMK || prev.RotateApplied != n.RotateApplied || prev.Address != n.Address ||
		prev.KeystoreGeneration != n.KeystoreGeneration || prev.Rollback != n.Rollback ||
		prev.ReencryptApplied != n.ReencryptApplied || !reencryptionEqual(prev.Reencryption, n.Reencryption)
	recs := map[string]any{}
	if s.clusterNodeUpLocked(gs, id.Cluster, n.State, recs) {
		meaningful = true
	}
	if !meaningful {
		return nil
	}
	recs["node/"+id.GroupID+"/"+id.InGroup()] = *n
	if rolledBack {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventClusterEncryptionDisabled, ClusterName: id.Cluster,
			Detail: "node " + id.Name + ": " + n.Rollback})
	}
	if reencrypted {
		s.addEventLocked(gs, recs, Event{EventTypeName: EventConfigUpdated, ClusterName: id.Cluster,
			Detail: fmt.Sprintf("node %s re-encrypted in place: a new node master key v%d wrapped by %s; the old key hierarchy and its files are destroyed", id.Name, n.MasterKeyVersion, n.CMK)})
	} else if known && prev.MasterKeyVersion != 0 && prev.MasterKeyVersion != n.MasterKeyVersion && n.MasterKeyVersion != 0 {
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

// attestGenerationLocked records the keystore generation a node reports
// and reports whether it just detected a rollback. Generations only grow:
// a lower one than recorded means an older keystore copy was put back,
// which would resurrect destroyed keys and hide newer databases. The node
// is refused (directive INVALID, unwraps refused) until it reports a
// generation at least as high as the recorded one again. What the
// control plane attests is what the node reported: a rollback to a
// generation between two reports goes unseen.
func (s *Service) attestGenerationLocked(n *Node, gen uint64) bool {
	if gen == 0 {
		return false
	}
	if gen < n.KeystoreGeneration {
		if n.Rollback == "" {
			n.Rollback = fmt.Sprintf("the node's keystore is generation %d, older than generation %d this control plane saw on %s: "+
				"an older copy of the keystore was put back; restore the newest keystore", gen, n.KeystoreGeneration, n.Cluster+"/"+n.Name)
			s.notifyLocked()
			return true
		}
		return false
	}
	n.KeystoreGeneration = gen
	if n.Rollback != "" {
		n.Rollback = ""
		s.notifyLocked()
	}
	return false
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
func ParseNodeID(s string) (NodeID, bool) { return cpproto.ParseNodeID(s) }

// reencryptionEqual compares two re-encryption reports; progress counts
// every byte, so a report is meaningful only when its phase or error
// changed or a tenth of the copy passed.
func reencryptionEqual(a, b *cpproto.Reencryption) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Requested != b.Requested || a.Phase != b.Phase || a.Error != b.Error {
		return false
	}
	return b.BytesTotal == 0 || (b.BytesCopied-a.BytesCopied)*10 < b.BytesTotal
}
