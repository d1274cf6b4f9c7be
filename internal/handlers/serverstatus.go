package handlers

import (
	"context"
	"math"
	"os"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/sys/unix"

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
		{Key: "connections", Value: h.connectionsDoc()},
		{Key: "opcounters", Value: h.opcounters.doc()},
		{Key: "network", Value: h.networkDoc()},
		{Key: "mem", Value: memDoc()},
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

// connectionsDoc is serverStatus's connections section. available is what
// the listener would still accept (cmkdb sets no limit of its own below
// the process's file limit).
func (h *Handler) connectionsDoc() bson.D {
	cur := int32(h.connCount())
	d := bson.D{{Key: "current", Value: cur}}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < math.MaxInt32 {
		d = append(d, bson.E{Key: "available", Value: int32(max(int64(lim.Cur)-int64(cur), 0))})
	}
	if h.opts.NetStats != nil {
		d = append(d, bson.E{Key: "totalCreated", Value: h.opts.NetStats().TotalCreated})
	}
	return append(d, bson.E{Key: "active", Value: int32(h.ops.activeCount())})
}

// networkDoc is serverStatus's network section: the wire server's traffic.
func (h *Handler) networkDoc() bson.D {
	var st wire.NetStats
	if h.opts.NetStats != nil {
		st = h.opts.NetStats()
	}
	return bson.D{{Key: "bytesIn", Value: st.BytesIn}, {Key: "bytesOut", Value: st.BytesOut},
		{Key: "physicalBytesIn", Value: st.BytesIn}, {Key: "physicalBytesOut", Value: st.BytesOut}, {Key: "numRequests", Value: st.NumRequests}}
}

// memDoc is serverStatus's mem section, in MiB as mongod reports it.
func memDoc() bson.D {
	d := bson.D{{Key: "bits", Value: int32(strconv.IntSize)}}
	if res, virt, ok := memFacts(); ok {
		return append(d, bson.E{Key: "resident", Value: int32(res)}, bson.E{Key: "virtual", Value: int32(virt)}, bson.E{Key: "supported", Value: true})
	}
	return append(d, bson.E{Key: "supported", Value: false})
}
