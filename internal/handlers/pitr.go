package handlers

import (
	"context"
	"errors"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/logarchive"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// The control plane's replica set backups, beside cmkdbCheckpoint
// (checkpoint.go): cmkdbArchiveOplog copies the log's new entries into
// the cluster's oplog archive; cmkdbRestore restores a snapshot (and,
// for a point in time, the archive up to it) into the set. Both touch
// only the node's snapshot store. See repl's pitr.go.

// maxSegmentBytes is the log data one segment holds at most.
const maxSegmentBytes = 16 << 20

// safeMargin is how far before the request's asOf time the archive
// vouches for: an entry still in flight then (proposed, not yet
// applied by the primary) carries an earlier wall time.
const safeMargin = 2 * time.Second

func timestampArg(v bson.RawValue) (oplog.Timestamp, bool) {
	if v.Type != bson.TypeTimestamp {
		return oplog.Timestamp{}, false
	}
	t, i := v.Timestamp()
	return oplog.Timestamp{T: t, I: i}, true
}

// waitApplied waits until this member applied the change at want.
func waitApplied(ctx context.Context, rs *repl.Member, cmd string, want oplog.Timestamp) error {
	for rs.Status().Applied.TS.Compare(want) < 0 {
		select {
		case <-ctx.Done():
			return mongoerr.New(mongoerr.ExceededTimeLimit, "%s: this member did not catch up with the primary in time", cmd)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// cmkdbArchiveOplog {cmkdbArchiveOplog: dir, afterOpTime: ts, asOf: date}
// appends the entries this member applied since the archive's position
// to the archive in dir, once it applied afterOpTime (the primary's last
// write when asked). asOf is when the primary was asked: the archive then
// vouches that nothing up to shortly before it is missing.
func (h *Handler) cmkdbArchiveOplog(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, mongoerr.New(mongoerr.NoReplicationEnabled, "cmkdbArchiveOplog: this node is not a replica set member")
	}
	dir, ok := req.Command.Lookup("cmkdbArchiveOplog").StringValueOK()
	if !ok || dir == "" {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbArchiveOplog needs the archive directory, as a string")
	}
	dir, err := h.snapshotStorePath("cmkdbArchiveOplog", dir)
	if err != nil {
		return nil, err
	}
	asOf := time.Now()
	if v := req.Command.Lookup("asOf"); v.Type == bson.TypeDateTime {
		asOf = v.Time()
	}
	if want, ok := timestampArg(req.Command.Lookup("afterOpTime")); ok {
		if err := waitApplied(ctx, rs, "cmkdbArchiveOplog", want); err != nil {
			return nil, err
		}
	}
	h.archiveMu.Lock()
	defer h.archiveMu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pos, _, err := logarchive.ReadPosition(dir)
	if err != nil {
		return nil, err
	}
	_, ks, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	me := rs.Config().Me
	after, afterTS := pos.LastIndex, oplog.Timestamp{T: pos.LastTS.T, I: pos.LastTS.I}
	segments := 0
	for {
		recs, through, err := rs.ReadLog(ctx, after, afterTS, maxSegmentBytes)
		var gap *repl.LogGapError
		if errors.As(err, &gap) {
			// The entries are gone from the log: the archive continues
			// after the gap, which a restore across it is refused for.
			h.log.Warn("oplog archive: entries were compacted before they were copied; a point-in-time restore cannot cross the gap",
				"missing", gap.Want, "logStarts", gap.First)
			after, afterTS = gap.First-1, oplog.Timestamp{}
			continue
		}
		if err != nil {
			return nil, err
		}
		if through == after {
			break
		}
		out := make([]logarchive.Record, len(recs))
		for i, r := range recs {
			out[i] = logarchive.Record{Index: r.Index, Term: r.Term, TS: logarchive.Timestamp{T: r.TS.T, I: r.TS.I}, Data: r.Data}
		}
		if _, err := logarchive.WriteSegment(dir, me, ks, after+1, through, out, time.Now()); err != nil {
			return nil, err
		}
		segments++
		after = through
		if len(recs) > 0 {
			afterTS = recs[len(recs)-1].TS
		}
		pos.LastIndex, pos.LastTS = after, logarchive.Timestamp{T: afterTS.T, I: afterTS.I}
	}
	pos.Member, pos.UpdatedAt = me, time.Now().UTC()
	if s := asOf.Add(-safeMargin).Unix(); s > 0 {
		safe := logarchive.Timestamp{T: uint32(s), I: ^uint32(0)}
		if safe.Compare(pos.SafeThrough) > 0 {
			pos.SafeThrough = safe
		}
	}
	if err := logarchive.WritePosition(dir, pos); err != nil {
		return nil, err
	}
	return marshal(bson.D{
		{Key: "segments", Value: int32(segments)},
		{Key: "lastIndex", Value: int64(pos.LastIndex)},
		{Key: "lastTs", Value: bson.Timestamp{T: pos.LastTS.T, I: pos.LastTS.I}},
		{Key: "safeThrough", Value: bson.Timestamp{T: pos.SafeThrough.T, I: pos.SafeThrough.I}},
		{Key: "ok", Value: 1.0},
	})
}

// cmkdbRestore {cmkdbRestore: dir, oplog: {archive, keys, after, through}}
// replaces the set's data with the snapshot in dir (staged for this
// member: its master key wrapped for it), then, given oplog, replays the
// archive's entries after log index after (the snapshot's) whose last
// change is at or before through. keys holds the archive's keystore
// copies, staged for this member too. The archive is read and
// authenticated in full before anything changes.
func (h *Handler) cmkdbRestore(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	rs := h.opts.Repl
	if rs == nil {
		return nil, mongoerr.New(mongoerr.NoReplicationEnabled, "cmkdbRestore: this node is not a replica set member")
	}
	if err := rs.CheckWritable(); err != nil {
		return nil, err
	}
	dir, ok := req.Command.Lookup("cmkdbRestore").StringValueOK()
	if !ok || dir == "" {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbRestore needs the snapshot directory, as a string")
	}
	dir, err := h.snapshotStorePath("cmkdbRestore", dir)
	if err != nil {
		return nil, err
	}
	var pit *pitArgs
	if v := req.Command.Lookup("oplog"); v.Type != bson.TypeNull && len(v.Value) > 0 {
		doc, ok := v.DocumentOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbRestore: oplog must be a document")
		}
		if pit, err = h.parsePITArgs(doc); err != nil {
			return nil, err
		}
	}
	var replay func(apply func([]byte) error) error
	if pit != nil {
		openers, closeAll, err := h.openArchiveKeys(ctx, pit)
		if err != nil {
			return nil, err
		}
		defer closeAll()
		// First pass: every record needed authenticates, and the archive
		// reaches through, before the set changes.
		n := 0
		if err := pit.each(openers, func(logarchive.Record) error { n++; return nil }); err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: %v", err)
		}
		replay = func(apply func([]byte) error) error {
			return pit.each(openers, func(r logarchive.Record) error { return apply(r.Data) })
		}
	}
	eng, closeSnap, err := h.node.OpenSnapshot(ctx, dir, "local")
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: %v", err)
	}
	defer closeSnap()
	replayed, err := rs.RestoreBackup(ctx, eng, replay)
	if err != nil {
		return nil, err
	}
	return marshal(bson.D{
		{Key: "databases", Value: int32(len(eng.Databases()))},
		{Key: "replayed", Value: int64(replayed)},
		{Key: "ok", Value: 1.0},
	})
}

type pitArgs struct {
	archive, keysDir string
	after            uint64
	through          logarchive.Timestamp
	plan             []logarchive.Segment
}

func (h *Handler) parsePITArgs(doc bson.Raw) (*pitArgs, error) {
	p := &pitArgs{}
	var err error
	archive, _ := doc.Lookup("archive").StringValueOK()
	keysDir, _ := doc.Lookup("keys").StringValueOK()
	if p.archive, err = h.snapshotStorePath("cmkdbRestore", archive); err != nil {
		return nil, err
	}
	if p.keysDir, err = h.snapshotStorePath("cmkdbRestore", keysDir); err != nil {
		return nil, err
	}
	after, ok := doc.Lookup("after").AsInt64OK()
	if !ok || after < 0 {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbRestore: oplog.after must be the snapshot's log index")
	}
	p.after = uint64(after)
	t, ok := timestampArg(doc.Lookup("through"))
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "cmkdbRestore: oplog.through must be a timestamp")
	}
	p.through = logarchive.Timestamp{T: t.T, I: t.I}
	segs, err := logarchive.List(p.archive)
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: %v", err)
	}
	pos, _, err := logarchive.ReadPosition(p.archive)
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: %v", err)
	}
	if p.plan, err = logarchive.Plan(segs, pos, p.after, p.through); err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: %v", err)
	}
	return p, nil
}

// openArchiveKeys opens the staged keystore copies the plan's segments
// name, with this node's KMS access.
func (h *Handler) openArchiveKeys(ctx context.Context, p *pitArgs) (map[string]*keys.Keystore, func(), error) {
	out := map[string]*keys.Keystore{}
	closeAll := func() {
		for _, ks := range out {
			ks.Close()
		}
	}
	for _, s := range p.plan {
		if _, ok := out[s.Keys]; ok {
			continue
		}
		ks, err := keys.Open(ctx, logarchive.KeysDir(p.keysDir, s.Keys), h.node.Provider)
		if err != nil {
			closeAll()
			return nil, nil, mongoerr.New(mongoerr.BadValue, "cmkdbRestore: the oplog archive's keys %s do not open: %v", s.Keys, err)
		}
		out[s.Keys] = ks
	}
	return out, closeAll, nil
}

var errThrough = errors.New("reached the point in time")

// each calls fn with the plan's records after the snapshot, up to the
// last whose timestamp is at or before through.
func (p *pitArgs) each(openers map[string]*keys.Keystore, fn func(logarchive.Record) error) error {
	for _, s := range p.plan {
		err := logarchive.Read(p.archive, s, openers[s.Keys], func(r logarchive.Record) error {
			if r.Index <= p.after {
				return nil
			}
			if r.TS.Compare(p.through) > 0 {
				return errThrough
			}
			return fn(r)
		})
		if errors.Is(err, errThrough) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}
