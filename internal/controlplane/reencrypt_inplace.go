package controlplane

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/cmkdb/cmkdb/internal/cpproto"
)

// In-place re-encryption of a one-member cluster. Its node is asked
// (Directive.Reencrypt) to build a fresh key hierarchy under the key the
// cluster's provider names now, copy every database into it online, switch
// and destroy the old one (node/reencrypt.go); the change is a
// MembershipChange with reencrypt true, as for a replica set, whose member
// entry shows the node's progress (REENCRYPTING, then REENCRYPTED). A
// failure (the node reports FAILED, or the control plane restarts) leaves
// the cluster REPAIRING; restating the provider asks again.

// reencryptInPlaceLocked starts the in-place re-encryption of c's node; a
// cluster whose node never reported has nothing to re-encrypt (nil run).
func (s *Service) reencryptInPlaceLocked(gs *groupState, c *Cluster) (func(), error) {
	var names []string
	for _, n := range gs.nodes {
		if n.Cluster == c.Name {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		// No node ever reported: there is no keystore and no data yet, so
		// nothing to re-encrypt. The node's first keystore is wrapped by
		// the key the provider names then.
		return nil, nil
	}
	sort.Strings(names)
	gid, cluster := gs.group.ID, c.Name
	// Ask now, in the directive the PATCH's change wakes the node with, so
	// the node does not first re-wrap the master key it is about to
	// replace. (Should the PATCH fail to persist after this, the node
	// re-encrypts under the unchanged provider: harmless.)
	want := map[string]uint64{}
	recs := map[string]any{}
	for _, name := range names {
		key := NodeID{GroupID: gid, Cluster: cluster, Name: name}.InGroup()
		n := gs.nodes[key]
		next := *n
		next.ReencryptRequested = max(n.ReencryptRequested, n.ReencryptApplied) + 1
		want[name] = next.ReencryptRequested
		recs["node/"+gid+"/"+key] = next
	}
	if err := s.st.put(recs); err != nil {
		return nil, err
	}
	for _, name := range names {
		gs.nodes[NodeID{GroupID: gid, Cluster: cluster, Name: name}.InGroup()].ReencryptRequested = want[name]
	}
	return s.memberChangeLocked(gs, c, MembershipChange{From: 1, To: 1, Reencrypt: true},
		func(ctx context.Context, progress func(MembershipChange)) (string, error) {
			return "", s.awaitReencryption(ctx, gid, cluster, names, want, progress)
		}), nil
}

// awaitReencryption waits until each of the cluster's nodes reports the
// re-encryption asked of it (want) done, or failed, relaying their
// progress.
func (s *Service) awaitReencryption(ctx context.Context, gid, cluster string, names []string, want map[string]uint64, progress func(MembershipChange)) error {
	for {
		s.mu.Lock()
		gs, ok := s.groups[gid]
		if !ok {
			s.mu.Unlock()
			return errors.New("the project was deleted")
		}
		var members []MemberSyncState
		done, failure := 0, ""
		for _, name := range names {
			n, ok := gs.nodes[NodeID{GroupID: gid, Cluster: cluster, Name: name}.InGroup()]
			if !ok {
				failure = "node " + name + " is no longer registered"
				break
			}
			m := MemberSyncState{Name: name, State: "REENCRYPTING"}
			r := n.Reencryption
			if r != nil && r.Requested == want[name] {
				m.InitialSync = reencryptionProgress(r)
			}
			switch {
			case n.ReencryptApplied >= want[name]:
				m.State = "REENCRYPTED"
				done++
			case r != nil && r.Requested == want[name] && r.Phase == "FAILED":
				failure = "node " + name + ": " + r.Error
			}
			members = append(members, m)
		}
		ch := s.changed
		s.mu.Unlock()
		progress(MembershipChange{Members: members})
		if failure != "" {
			return errors.New(failure)
		}
		if done == len(names) {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
		case <-s.done:
			return errors.New("the control plane stopped")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reencryptionProgress shows a node's re-encryption as the initial-sync
// progress fields of the API (the copy is what a resync's initial sync is).
func reencryptionProgress(r *cpproto.Reencryption) *InitialSync {
	p := &InitialSync{BytesCopied: r.BytesCopied, BytesTotal: r.BytesTotal, DocumentsCopied: r.Keys, ElapsedMillis: r.ElapsedMillis}
	if r.BytesCopied > 0 && r.BytesTotal > r.BytesCopied {
		p.EstimatedRemainingMillis = r.ElapsedMillis * (r.BytesTotal - r.BytesCopied) / r.BytesCopied
	}
	return p
}
