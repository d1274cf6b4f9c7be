package handlers

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/storage"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// rsRole says how a command behaves on a replica set member that is not
// the primary.
type rsRole uint8

const (
	// rsAny commands run on every member (handshake, diagnostics, auth).
	rsAny rsRole = iota
	// rsRead commands read data: a secondary serves them only to a client
	// that allows it (a read preference other than primary), possibly
	// stale, as mongod does.
	rsRead
	// rsWrite commands change data: only the primary runs them.
	rsWrite
)

// checkReplicaRole refuses, before it runs, a command this member may not
// serve in its current role.
func (h *Handler) checkReplicaRole(cmd *command, req *wire.Request) error {
	rs := h.opts.Repl
	if rs == nil || req.DB == "local" {
		return nil
	}
	switch cmd.rs {
	case rsWrite:
		return rs.CheckWritable()
	case rsRead:
		if rs.CheckWritable() == nil || secondaryOk(req.Command) {
			return nil
		}
		return mongoerr.New(mongoerr.NotPrimaryNoSecondaryOk, "not primary and secondaryOk=false")
	}
	return nil
}

// secondaryOk reports whether the command's read preference lets a
// secondary answer: any mode but "primary" ($readPreference absent means
// primary).
func secondaryOk(cmd bson.Raw) bool {
	rp, err := cmd.LookupErr("$readPreference")
	if err != nil {
		return false
	}
	d, ok := rp.DocumentOK()
	if !ok {
		return false
	}
	mode, err := d.LookupErr("mode")
	if err != nil {
		return false
	}
	s, ok := mode.StringValueOK()
	return ok && s != "primary"
}

// replMembers is how many members of the set vote (a w:N the set can
// meet counts them), 0 on a standalone node.
func (h *Handler) replMembers() int {
	if h.opts.Repl == nil {
		return 0
	}
	return h.opts.Repl.Status().Voters
}

// ApplyBatch implements repl.Databases: a committed batch reaches the
// store the commands use.
func (h *Handler) ApplyBatch(db string, repr []byte, catalog bool) ([]oplog.Op, error) {
	s, release, err := h.store(db, true)
	if err != nil {
		return nil, err
	}
	defer release()
	changes, err := s.ApplyReplicated(repr, catalog)
	if err != nil {
		return nil, err
	}
	if db == usersDB {
		// A user changed on the primary: roles cached here are stale.
		h.auth.users.invalidate()
	}
	return oplogOps(db, changes)
}

// DropReplicated implements repl.Databases.
func (h *Handler) DropReplicated(db string) ([]oplog.Op, error) {
	var colls []*docstore.Collection
	if s, release, err := h.store(db, false); err == nil {
		if s != nil {
			colls = s.Collections()
		}
		release()
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	h.dropStore(db)
	defer h.dropStore(db)
	if db == usersDB {
		defer h.auth.users.invalidate()
	}
	if err := eng.DropDatabase(db); err != nil {
		if errors.Is(err, storage.ErrNoDatabase) {
			return nil, nil
		}
		return nil, err
	}
	return dropDatabaseOps(db, colls)
}

// Reload implements repl.Databases.
func (h *Handler) Reload(db string) error {
	s, release, err := h.store(db, true)
	if err != nil {
		return err
	}
	defer release()
	if db == usersDB {
		h.auth.users.invalidate()
	}
	return s.Reload()
}

// helloReplFields are hello's replica set fields, and the topology
// version they report. (A hello carrying the topologyVersion the client
// last saw and a maxAwaitTimeMS first waits until the topology changes or
// the time passes — an awaitable hello — and may become an exhaust
// stream: hello.go. So a driver learns of a failover as soon as this
// member does.)
func (h *Handler) helloReplFields() (bson.D, repl.TopologyVersion) {
	rs := h.opts.Repl
	tv := rs.Topology()
	st := rs.Status()
	hosts := bson.A{}
	for _, m := range st.Members {
		hosts = append(hosts, m.Config.Host)
	}
	d := bson.D{
		{Key: "topologyVersion", Value: bson.D{{Key: "processId", Value: tv.ProcessID}, {Key: "counter", Value: tv.Counter}}},
		{Key: "hosts", Value: hosts},
		{Key: "setName", Value: st.SetName},
		{Key: "setVersion", Value: int32(st.SetVersion)},
		{Key: "secondary", Value: st.Self == repl.StateSecondary},
	}
	if st.Primary != "" {
		d = append(d, bson.E{Key: "primary", Value: st.Primary})
	}
	d = append(d, bson.E{Key: "me", Value: st.Me.Host})
	if st.Writable {
		d = append(d, bson.E{Key: "electionId", Value: repl.ElectionID(st.Term)})
	}
	d = append(d, bson.E{Key: "lastWrite", Value: bson.D{
		{Key: "opTime", Value: opTime(st.Applied)},
		{Key: "lastWriteDate", Value: bson.NewDateTimeFromTime(st.Applied.Wall)},
		{Key: "majorityOpTime", Value: opTime(st.Applied)},
		{Key: "majorityWriteDate", Value: bson.NewDateTimeFromTime(st.Applied.Wall)},
	}})
	return d, tv
}

// awaitable reads an awaitable hello's topologyVersion and maxAwaitTimeMS.
func awaitable(cmd bson.Raw) (repl.TopologyVersion, time.Duration, bool) {
	tvv, err := cmd.LookupErr("topologyVersion")
	if err != nil {
		return repl.TopologyVersion{}, 0, false
	}
	mv, err := cmd.LookupErr("maxAwaitTimeMS")
	if err != nil {
		return repl.TopologyVersion{}, 0, false
	}
	ms, ok := mv.AsInt64OK()
	if !ok || ms < 0 {
		return repl.TopologyVersion{}, 0, false
	}
	tv, ok := tvv.DocumentOK()
	if !ok {
		return repl.TopologyVersion{}, 0, false
	}
	var seen repl.TopologyVersion
	if p, err := tv.LookupErr("processId"); err == nil {
		seen.ProcessID, _ = p.ObjectIDOK()
	}
	if c, err := tv.LookupErr("counter"); err == nil {
		seen.Counter, _ = c.AsInt64OK()
	}
	return seen, time.Duration(ms) * time.Millisecond, true
}

func opTime(o repl.OpTime) bson.D {
	// The oplog timestamp of the last change applied: the same on every
	// member for the same change.
	return bson.D{{Key: "ts", Value: bson.Timestamp{T: o.TS.T, I: o.TS.I}}, {Key: "t", Value: int64(o.Term)}}
}

func (h *Handler) notReplicaSet() error {
	return mongoerr.New(mongoerr.NoReplicationEnabled, "not running with --replSet")
}

// replSetGetStatus reports the set as this member sees it.
func (h *Handler) replSetGetStatus(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, h.notReplicaSet()
	}
	st := rs.Status()
	members := bson.A{}
	for _, m := range st.Members {
		md := bson.D{
			{Key: "_id", Value: int32(m.ID)},
			{Key: "name", Value: m.Config.Host},
			{Key: "health", Value: boolNum(m.Healthy)},
			{Key: "state", Value: m.State.Code()},
			{Key: "stateStr", Value: string(m.State)},
		}
		if m.Self {
			md = append(md, bson.E{Key: "uptime", Value: int64(time.Since(h.started).Seconds())},
				bson.E{Key: "optime", Value: opTime(st.Applied)},
				bson.E{Key: "optimeDate", Value: bson.NewDateTimeFromTime(st.Applied.Wall)},
				bson.E{Key: "self", Value: true})
		} else if !m.Healthy {
			md = append(md, bson.E{Key: "lastHeartbeat", Value: bson.NewDateTimeFromTime(m.LastContact)})
		}
		members = append(members, md)
	}
	doc := bson.D{
		{Key: "set", Value: st.SetName},
		{Key: "date", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "myState", Value: st.Self.Code()},
		{Key: "term", Value: int64(st.Term)},
		{Key: "heartbeatIntervalMillis", Value: int64(1000)},
		{Key: "majorityVoteCount", Value: int32(st.Voters/2 + 1)},
		{Key: "writeMajorityCount", Value: int32(st.Voters/2 + 1)},
		{Key: "votingMembersCount", Value: int32(st.Voters)},
		{Key: "writableVotingMembersCount", Value: int32(st.Voters)},
		{Key: "optimes", Value: bson.D{
			{Key: "lastCommittedOpTime", Value: opTime(repl.OpTime{Index: st.Commit, Term: st.Term, Wall: st.Applied.Wall})},
			{Key: "appliedOpTime", Value: opTime(st.Applied)},
			{Key: "durableOpTime", Value: opTime(st.Applied)},
		}},
		{Key: "members", Value: members},
	}
	if st.InitialSync != nil {
		doc = append(doc, bson.E{Key: "initialSyncStatus", Value: initialSyncStatus(*st.InitialSync)})
	}
	return marshal(append(doc, bson.E{Key: "ok", Value: 1.0}))
}

func boolNum(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// replSetGetConfig reports the set's configuration: raft's, whose index
// is the version (every voter of priority 1; a member still syncing has
// no vote and priority 0 until it is promoted).
func (h *Handler) replSetGetConfig(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, h.notReplicaSet()
	}
	st := rs.Status()
	members := bson.A{}
	for _, m := range st.Members {
		votes, priority := int32(1), 1.0
		if !m.Voter {
			votes, priority = 0, 0
		}
		members = append(members, bson.D{
			{Key: "_id", Value: int32(m.ID)},
			{Key: "host", Value: m.Config.Host},
			{Key: "arbiterOnly", Value: false},
			{Key: "buildIndexes", Value: true},
			{Key: "hidden", Value: false},
			{Key: "priority", Value: priority},
			{Key: "tags", Value: bson.D{}},
			{Key: "secondaryDelaySecs", Value: int64(0)},
			{Key: "votes", Value: votes},
		})
	}
	return marshal(bson.D{
		{Key: "config", Value: bson.D{
			{Key: "_id", Value: st.SetName},
			{Key: "version", Value: int32(st.SetVersion)},
			{Key: "term", Value: int64(st.Term)},
			{Key: "members", Value: members},
			{Key: "protocolVersion", Value: int64(1)},
			{Key: "writeConcernMajorityJournalDefault", Value: true},
			{Key: "settings", Value: bson.D{
				{Key: "chainingAllowed", Value: false},
				{Key: "heartbeatIntervalMillis", Value: int32(1000)},
				{Key: "electionTimeoutMillis", Value: int32(1000)},
			}},
		}},
		{Key: "ok", Value: 1.0},
	})
}

// replSetStepDown hands the primary's role to the most caught-up
// secondary (a raft leadership transfer), as mongod's stepdown waits for
// an electable secondary that caught up.
func (h *Handler) replSetStepDown(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, h.notReplicaSet()
	}
	if v, err := req.Command.LookupErr("replSetStepDown"); err == nil && !isNumber(v.Type) {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "replSetStepDown must be a number of seconds")
	}
	if err := rs.StepDown(ctx); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// replSetUnsupported answers the membership commands: a cmkdb set's
// members are fixed by their configuration files.
func (h *Handler) replSetUnsupported(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if h.opts.Repl == nil {
		return nil, h.notReplicaSet()
	}
	if req.Name == "replSetInitiate" {
		return nil, mongoerr.New(mongoerr.AlreadyInitialized, "already initialized: a cmkdb replica set is initiated by its members' configuration")
	}
	return nil, mongoerr.New(mongoerr.IllegalOperation, "%s is not supported: a cmkdb replica set's members are fixed by their configuration files", req.Name)
}

// readConcernLinearizable serves readConcern {level: "linearizable"}
// before a read runs: only the primary may answer it, and only once a
// majority confirmed it still leads and it applied everything committed
// before (a raft barrier), so the read reflects every write acknowledged
// before it started. A standalone node refuses it as mongod does.
func (h *Handler) readConcernLinearizable(ctx context.Context, req *wire.Request) error {
	rc, err := req.Command.LookupErr("readConcern")
	if err != nil {
		return nil
	}
	d, ok := rc.DocumentOK()
	if !ok {
		return nil // checkReadConcern reports the type
	}
	rs := h.opts.Repl
	if rs != nil {
		// What a replica set member cannot serve yet: reads at a point
		// in time need a history of versions cmkdb does not keep.
		for _, f := range []string{"afterClusterTime", "atClusterTime", "afterOpTime"} {
			if _, err := d.LookupErr(f); err == nil {
				return mongoerr.New(mongoerr.CommandNotSupported, "readConcern.%s is not supported by cmkdb replica sets yet", f)
			}
		}
	}
	lv, err := d.LookupErr("level")
	if err != nil {
		return nil
	}
	s, ok := lv.StringValueOK()
	if !ok {
		return nil
	}
	switch {
	case s == "snapshot" && rs != nil:
		return mongoerr.New(mongoerr.CommandNotSupported, "readConcern level snapshot is not supported by cmkdb replica sets yet")
	case s != "linearizable":
		return nil
	case rs == nil:
		return mongoerr.New(codeNotAReplicaSet, "node needs to be a replica set member to use read concern")
	}
	return rs.Linearize(ctx)
}

// changeStreamRefused answers a $changeStream on a standalone node as a
// standalone mongod does: it has no oplog to stream.
func (h *Handler) changeStreamRefused() error {
	return mongoerr.New(40573, "The $changeStream stage is only supported on replica sets")
}
