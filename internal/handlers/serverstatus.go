package handlers

import (
	"context"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/wire"
)

// serverStatus reports the usual sections plus encryptionAtRest: whether
// it is on, the cipher, the node's state, and the ids and versions of its
// keys — never key bytes.
func (h *Handler) serverStatus(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	now := time.Now()
	d := bson.D{
		{Key: "host", Value: h.host},
		{Key: "version", Value: ServerVersion},
		{Key: "process", Value: "cmkdb"},
		{Key: "pid", Value: int64(os.Getpid())},
		{Key: "uptime", Value: now.Sub(h.started).Seconds()},
		{Key: "uptimeMillis", Value: now.Sub(h.started).Milliseconds()},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(now)},
		{Key: "connections", Value: bson.D{{Key: "current", Value: int32(h.connCount())}}},
		{Key: "metrics", Value: bson.D{
			{Key: "cursor", Value: bson.D{{Key: "open", Value: bson.D{{Key: "total", Value: int64(h.cursors.count())}}}}},
			{Key: "ttl", Value: bson.D{{Key: "deletedDocuments", Value: h.ttl.deleted.Load()}, {Key: "passes", Value: h.ttl.passes.Load()}}},
		}},
		{Key: "encryptionAtRest", Value: h.encryptionStatus()},
	}
	if h.opts.Repl != nil {
		// mongod's repl section: the hello fields.
		rs, _ := h.helloReplFields()
		rs = append(rs, bson.E{Key: "isWritablePrimary", Value: h.opts.Repl.CheckWritable() == nil})
		d = append(d, bson.E{Key: "repl", Value: rs})
	}
	return marshal(append(d, bson.E{Key: "ok", Value: 1.0}))
}

func (h *Handler) encryptionStatus() bson.D {
	st := h.node.State()
	state := "AVAILABLE"
	if !st.Available {
		state = "DISABLED"
	}
	calls := h.node.Provider.Counts()
	d := bson.D{
		{Key: "enabled", Value: !h.node.Plaintext()},
		{Key: "kmsCalls", Value: bson.D{{Key: "wrap", Value: calls.Wrap}, {Key: "unwrap", Value: calls.Unwrap}, {Key: "check", Value: calls.Check}}},
		{Key: "cipher", Value: "AES-256-GCM (4 KiB authenticated chunks, per-file HKDF-SHA256 keys)"},
		{Key: "state", Value: state},
		{Key: "since", Value: bson.NewDateTimeFromTime(st.Since)},
	}
	if !st.Available {
		d = append(d, bson.E{Key: "reason", Value: st.Reason}, bson.E{Key: "cause", Value: string(st.Cause)})
		return d
	}
	eng, ks, release, err := h.node.Acquire()
	if err != nil {
		return d
	}
	defer release()
	m := ks.Master()
	d = append(d,
		bson.E{Key: "nodeId", Value: ks.NodeID()},
		bson.E{Key: "customerMasterKey", Value: bson.D{{Key: "provider", Value: m.CMK.Provider}, {Key: "keyId", Value: m.CMK.KeyID}, {Key: "keyVersion", Value: m.CMK.KeyVersion}}},
		bson.E{Key: "masterKey", Value: bson.D{{Key: "version", Value: int64(m.Version)}, {Key: "createdAt", Value: bson.NewDateTimeFromTime(m.CreatedAt)}, {Key: "wrappedAt", Value: bson.NewDateTimeFromTime(m.WrappedAt)}}},
	)
	dbs := bson.A{}
	for _, db := range ks.Databases() {
		vs := bson.A{}
		for _, v := range db.Versions {
			vs = append(vs, bson.D{{Key: "version", Value: int64(v.Version)}, {Key: "createdAt", Value: bson.NewDateTimeFromTime(v.CreatedAt)}})
		}
		dbs = append(dbs, bson.D{{Key: "name", Value: db.Name}, {Key: "keyId", Value: db.ID}, {Key: "currentVersion", Value: int64(db.CurrentVersion)}, {Key: "versions", Value: vs}})
	}
	d = append(d, bson.E{Key: "databaseKeys", Value: dbs})
	// Database directories no key names (an older keystore put back):
	// kept aside, never deleted; the operator must see them.
	if q := eng.Quarantined(); len(q) > 0 {
		qs := bson.A{}
		for _, e := range q {
			qs = append(qs, bson.D{{Key: "id", Value: e.ID}})
		}
		d = append(d, bson.E{Key: "quarantinedDatabases", Value: qs})
	}
	return d
}
