package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/config"
	"github.com/cmkdb/cmkdb/internal/controlplane"
	"github.com/cmkdb/cmkdb/internal/cpserver"
	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/repl/transport"
)

// Resize implements controlplane.Resizer for the replica sets up runs
// (API clusters; Cluster0's member count is --nodes). Members are added
// or removed one at a time, by name m<i>, so the members' directories
// stay m0 … m<n-1>:
//
//   - add m<i>: its ports, node certificate and member certificate (the
//     control plane's CA), a node.json with join set; its process starts
//     with a fresh keystore and node master key through the key service;
//     the primary adds it (cmkdbAddMember) as a non-voter, it receives its
//     initial sync and is promoted once caught up; done when it reports
//     SECONDARY. Every member's node.json then lists it.
//   - remove m<i>: the primary removes it (cmkdbRemoveMember; a primary
//     asked to remove itself steps down first), its process stops, its
//     keystore is destroyed, then its files.
func (p *upProvisioner) Resize(ctx context.Context, gid, cluster string, from, to int, progress func(controlplane.MembershipChange)) (string, error) {
	rn, ok := p.node(gid, cluster)
	if !ok || rn.members == nil {
		return "", fmt.Errorf("cluster %s is not a replica set up runs", cluster)
	}
	if l, _ := p.layout(gid, cluster); l.Dir == p.f.dir {
		return "", errors.New("Cluster0's members are set by up --nodes")
	}
	ms := rn.members
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var states []controlplane.MemberSyncState
	report := func(i int, s controlplane.MemberSyncState) {
		if i < len(states) {
			states[i] = s
		} else {
			states = append(states, s)
		}
		progress(controlplane.MembershipChange{From: from, To: to, Members: append([]controlplane.MemberSyncState(nil), states...)})
	}
	// Every step is idempotent, so a failed or interrupted change is
	// resumed by running it again: members m0 … m<to-1> that were added
	// (join) are made sure of, members from m<to> up are removed.
	step := 0
	for i := 0; i < to; i++ {
		if c, err := config.Load(filepath.Join(ms.base, "m"+strconv.Itoa(i), "node.json")); err == nil && !c.Replication.Join {
			continue // one of the set's first members
		}
		idx := step
		step++
		if err := ms.addMember(ctx, p, i, func(s controlplane.MemberSyncState) { report(idx, s) }); err != nil {
			return "", fmt.Errorf("adding member m%d: %w", i, err)
		}
	}
	for i := 6; i >= to; i-- {
		if _, err := os.Stat(filepath.Join(ms.base, "m"+strconv.Itoa(i))); err != nil {
			continue
		}
		idx := step
		step++
		if err := ms.removeMember(ctx, i, func(s controlplane.MemberSyncState) { report(idx, s) }); err != nil {
			return "", fmt.Errorf("removing member m%d: %w", i, err)
		}
	}
	c, err := config.Load(filepath.Join(ms.base, "m0", "node.json"))
	if err != nil {
		return "", err
	}
	ms.uri = replConnectionString(c.Replication, ms.sec.auth != nil, ms.sec.tls != nil, ms.sec.caFile)
	p.mu.Lock()
	rn.info.ConnectionString = ms.uri
	p.mu.Unlock()
	return ms.uri, nil
}

// addMember provisions member m<i> and waits until it is a SECONDARY.
func (ms *memberSet) addMember(ctx context.Context, p *upProvisioner, i int, report func(controlplane.MemberSyncState)) error {
	name := "m" + strconv.Itoa(i)
	report(controlplane.MemberSyncState{Name: name, State: "ADDING"})
	c0, err := config.Load(filepath.Join(ms.base, "m0", "node.json"))
	if err != nil {
		return err
	}
	hostIP, _, err := net.SplitHostPort(c0.Replication.Members[0].Host)
	if err != nil {
		return err
	}
	dir := filepath.Join(ms.base, name)
	c, err := config.Load(filepath.Join(dir, "node.json"))
	if errors.Is(err, os.ErrNotExist) {
		c, err = ms.newMemberConfig(p, c0, name, hostIP, dir)
	}
	if err != nil {
		return err
	}
	me := cfgMember(c.Replication)
	running := false
	for _, mp := range ms.procs {
		running = running || mp.name == name
	}
	if !running {
		mp, started := ms.startProc(c)
		if err := <-started; err != nil {
			return err
		}
		ms.procs = append(ms.procs, mp)
	}

	client, err := ms.client(ms.uri)
	if err != nil {
		return err
	}
	defer client.Disconnect(context.Background())
	if err := onPrimary(ctx, client, bson.D{{Key: "cmkdbAddMember", Value: name}, {Key: "host", Value: me.Host}, {Key: "raftAddr", Value: me.RaftAddr}}); err != nil {
		return err
	}
	direct, err := ms.client("mongodb://" + me.Host + "/?directConnection=true")
	if err != nil {
		return err
	}
	defer direct.Disconnect(context.Background())
	for {
		var st struct {
			MyState int `bson:"myState"`
			Sync    *struct {
				Copied    int64 `bson:"approxTotalBytesCopied"`
				Total     int64 `bson:"approxTotalDataSize"`
				Docs      int64 `bson:"documentsCopied"`
				Remaining int64 `bson:"remainingInitialSyncEstimatedMillis"`
				Elapsed   int64 `bson:"totalInitialSyncElapsedMillis"`
			} `bson:"initialSyncStatus"`
		}
		if err := direct.Database("admin").RunCommand(ctx, bson.D{{Key: "replSetGetStatus", Value: 1}}).Decode(&st); err == nil {
			s := controlplane.MemberSyncState{Name: name, State: "INITIAL_SYNC"}
			if st.Sync != nil {
				s.InitialSync = &controlplane.InitialSync{BytesCopied: st.Sync.Copied, BytesTotal: st.Sync.Total, DocumentsCopied: st.Sync.Docs,
					EstimatedRemainingMillis: st.Sync.Remaining, ElapsedMillis: st.Sync.Elapsed}
			}
			if st.MyState == 2 || st.MyState == 1 {
				s.State = "SECONDARY"
				report(s)
				break
			}
			report(s)
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
	}
	// Every member's file lists it (a restart of up starts it with the
	// others; raft's configuration stays the source of truth).
	return ms.rewriteMembers(func(ms []config.ReplMember) []config.ReplMember { return append(ms, me) })
}

// newMemberConfig writes a new member's certificates and node.json.
func (ms *memberSet) newMemberConfig(p *upProvisioner, c0 *config.Config, name, hostIP, dir string) (*config.Config, error) {
	wirePort, err := freePortOn(hostIP, 0)
	if err != nil {
		return nil, err
	}
	raftPort, err := freePortOn(hostIP, 0)
	if err != nil {
		return nil, err
	}
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return nil, err
	}
	nodeCert, nodeKey, err := cpserver.IssueNodeCert(p.cp.CA, controlplane.NodeID{GroupID: ms.gid, Cluster: ms.cluster, Name: name}, pki)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := p.cp.CA.MemberCertificate(transport.Identity{Project: ms.gid, Cluster: ms.cluster, Member: name}.CommonName(), []string{hostIP}, 2*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	memberCert, memberKey := filepath.Join(pki, "member.pem"), filepath.Join(pki, "member-key.pem")
	if err := durable.WriteFile(memberKey, keyPEM, 0o600); err != nil {
		return nil, err
	}
	clear(keyPEM)
	if err := durable.WriteFile(memberCert, certPEM, 0o600); err != nil {
		return nil, err
	}
	r := *c0.Replication
	r.Members = append(append([]config.ReplMember(nil), c0.Replication.Members...), config.ReplMember{Name: name,
		Host: net.JoinHostPort(hostIP, strconv.Itoa(wirePort)), RaftAddr: net.JoinHostPort(hostIP, strconv.Itoa(raftPort))})
	r.Me, r.CertFile, r.KeyFile, r.Join, r.RaftBind = name, memberCert, memberKey, true, ""
	kmsCfg := *c0.KMS.ControlPlane
	kmsCfg.CertFile, kmsCfg.KeyFile = nodeCert, nodeKey
	c := &config.Config{Dir: dir, Bind: c0.Bind, Port: wirePort, KeyCheckInterval: c0.KeyCheckInterval,
		KMS: config.KMS{Provider: "controlplane", ControlPlane: &kmsCfg}, Replication: &r, TLS: c0.TLS, Auth: c0.Auth,
		InsecureNoEncryption: c0.InsecureNoEncryption}
	return c, writeMemberConfig(c)
}

// removeMember removes member m<i> from the set, stops it and destroys
// its keystore and files.
func (ms *memberSet) removeMember(ctx context.Context, i int, report func(controlplane.MemberSyncState)) error {
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
	// Keys first: once they are gone, the files are unreadable.
	keystores, _ := filepath.Glob(filepath.Join(dir, "node", "keystore*"))
	for _, ks := range keystores {
		if err := os.RemoveAll(ks); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := ms.forget(name); err != nil {
		return err
	}
	if err := ms.rewriteMembers(func(ms []config.ReplMember) []config.ReplMember {
		out := ms[:0]
		for _, m := range ms {
			if m.Name != name {
				out = append(out, m)
			}
		}
		return out
	}); err != nil {
		return err
	}
	report(controlplane.MemberSyncState{Name: name, State: "REMOVED"})
	return nil
}

// rewriteMembers edits the member list of every member's node.json.
func (ms *memberSet) rewriteMembers(edit func([]config.ReplMember) []config.ReplMember) error {
	for _, mp := range ms.procs {
		c, err := config.Load(mp.cfgFile)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		var list []config.ReplMember
		for _, m := range edit(c.Replication.Members) {
			if !seen[m.Name] {
				seen[m.Name] = true
				list = append(list, m)
			}
		}
		c.Replication.Members = list
		if err := writeMemberConfig(c); err != nil {
			return err
		}
	}
	return nil
}

// client connects to uri as the set's administrator (with --auth).
func (ms *memberSet) client(uri string) (*mongo.Client, error) {
	if ms.sec.tls != nil && ms.sec.caFile != "" && uri != ms.uri {
		uri += "&tls=true&tlsCAFile=" + ms.sec.caFile
	}
	o := options.Client().ApplyURI(uri).SetTimeout(30 * time.Second)
	if a := ms.sec.auth; a != nil {
		pw, err := readPasswordFile(a.AdminPasswordFile)
		if err != nil {
			return nil, err
		}
		o.SetAuth(options.Credential{Username: a.AdminUser, Password: pw, AuthSource: "admin"})
	}
	return mongo.Connect(o)
}

// onPrimary runs a membership command on the primary, again while the
// primary changes (a primary asked to remove itself steps down first).
func onPrimary(ctx context.Context, client *mongo.Client, cmd bson.D) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := client.Database("admin").RunCommand(ctx, cmd).Err()
		var ce mongo.CommandError
		if err == nil || time.Now().After(deadline) || !errors.As(err, &ce) ||
			(ce.Code != int32(mongoerr.NotWritablePrimary) && ce.Code != int32(mongoerr.InterruptedDueToReplStateChange)) {
			return err
		}
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// membersOnDisk counts the members m0, m1, … that have a node.json in base.
func membersOnDisk(base string) int {
	n := 0
	for ; n < 7; n++ {
		if _, err := os.Stat(filepath.Join(base, "m"+strconv.Itoa(n), "node.json")); err != nil {
			break
		}
	}
	return n
}
