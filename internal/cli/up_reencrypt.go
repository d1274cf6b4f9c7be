package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
)

// Resync implements controlplane.Resyncer: re-encryption by resync of a
// replica set up runs. Member by member, secondaries first and the
// primary last (it steps down when asked to remove itself):
//
//  1. the primary removes it from the set (cmkdbRemoveMember);
//  2. its process stops; its keystore is destroyed, then its data
//     directory (node/): nothing written under its old hierarchy remains;
//  3. it starts again with join set and an empty directory: a new
//     keystore and node master key, wrapped by the key the cluster's
//     provider names now (the key service decides), and is added back
//     (cmkdbAddMember): an initial sync from the others, then promotion.
//
// The others keep a majority of the set's voters throughout.
func (p *upProvisioner) Resync(ctx context.Context, gid, cluster string, progress func(controlplane.MembershipChange)) error {
	rn, ok := p.node(gid, cluster)
	if !ok || rn.members == nil {
		return fmt.Errorf("cluster %s is not a replica set up runs", cluster)
	}
	ms := rn.members
	ms.mu.Lock()
	defer ms.mu.Unlock()
	order, err := ms.secondariesFirst(ctx)
	if err != nil {
		return err
	}
	states := make([]controlplane.MemberSyncState, len(order))
	for i, name := range order {
		states[i] = controlplane.MemberSyncState{Name: name, State: "WAITING"}
	}
	for k, name := range order {
		report := func(s controlplane.MemberSyncState) {
			states[k] = s
			progress(controlplane.MembershipChange{Members: append([]controlplane.MemberSyncState(nil), states...)})
		}
		i, err := strconv.Atoi(name[1:])
		if err != nil {
			return fmt.Errorf("member %q: %w", name, err)
		}
		if err := ms.wipeMember(ctx, i, report); err != nil {
			return fmt.Errorf("re-encrypting member %s: %w", name, err)
		}
		if err := ms.addMember(ctx, p, i, report); err != nil {
			return fmt.Errorf("re-encrypting member %s: %w", name, err)
		}
	}
	return nil
}

// secondariesFirst orders the members' names with the primary last.
// Members on disk that are not running come first: a re-encryption that
// failed after wiping one and before adding it back resumes by adding it
// (its wipe again is a no-op). Members already re-encrypted by the failed
// attempt are re-encrypted again: wasteful, never wrong.
func (ms *memberSet) secondariesFirst(ctx context.Context) ([]string, error) {
	client, err := ms.client(ms.uri)
	if err != nil {
		return nil, err
	}
	defer client.Disconnect(context.Background())
	var hello struct {
		Primary string `bson:"primary"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return nil, err
	}
	running := map[string]bool{}
	var order, secondaries []string
	last := ""
	for _, mp := range ms.procs {
		running[mp.name] = true
		c, err := config.Load(mp.cfgFile)
		if err != nil {
			return nil, err
		}
		if cfgMember(c.Replication).Host == hello.Primary {
			last = mp.name
			continue
		}
		secondaries = append(secondaries, mp.name)
	}
	for i := 0; i < membersOnDisk(ms.base); i++ {
		if name := "m" + strconv.Itoa(i); !running[name] {
			order = append(order, name)
		}
	}
	order = append(order, secondaries...)
	if last != "" {
		order = append(order, last)
	}
	return order, nil
}

// wipeMember removes member m<i> from the set, stops it and destroys its
// keystore and then its data; its configuration and certificates stay.
// Its node.json says join before anything is deleted: a member restarted
// after a crash in the middle, its storage empty or half gone, then waits
// to be added rather than bootstrapping a set of its own from the static
// member list. Database directories left without their keystore are
// unreadable; the node quarantines them, and a resumed wipe deletes them.
func (ms *memberSet) wipeMember(ctx context.Context, i int, report func(controlplane.MemberSyncState)) error {
	name := "m" + strconv.Itoa(i)
	report(controlplane.MemberSyncState{Name: name, State: "REMOVING"})
	client, err := ms.client(ms.uri)
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	if err := onPrimary(ctx, client, bson.D{{Key: "cmkdbRemoveMember", Value: name}}); err != nil {
		return err
	}
	for j, mp := range ms.procs {
		if mp.name == name {
			mp.cancel()
			<-mp.done
			ms.procs = append(ms.procs[:j], ms.procs[j+1:]...)
			break
		}
	}
	dir := filepath.Join(ms.base, name)
	c, err := config.Load(filepath.Join(dir, "node.json"))
	if err != nil {
		return err
	}
	if !c.Replication.Join {
		c.Replication.Join = true
		if err := writeMemberConfig(c); err != nil {
			return err
		}
	}
	// Keys first: once they are gone, the files are unreadable.
	keystores, _ := filepath.Glob(filepath.Join(dir, "node", "keystore*"))
	for _, ks := range keystores {
		if err := os.RemoveAll(ks); err != nil {
			return fmt.Errorf("destroying %s's keystore: %w", name, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "node")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("destroying %s's files: %w", name, err)
	}
	return ms.forget(name)
}
