package handlers

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// local.oplog.rs is served from the member's oplog (internal/oplog), not
// from a collection: find, with tailable and awaitData cursors in natural
// order (which is timestamp order), forward or backward. A standalone
// node has no oplog, as a standalone mongod, and finds nothing there.

const oplogColl = "oplog.rs"

func isOplogNS(db, coll string) bool { return db == "local" && coll == oplogColl }

// withOplog runs fn with this member's oplog, holding the node's storage
// (a disable closes it only after fn returns).
func (h *Handler) withOplog(fn func(*oplog.Log) error) error {
	_, _, release, err := h.node.Acquire()
	if err != nil {
		return acquireError(err)
	}
	defer release()
	l := h.opts.Repl.Oplog()
	if l == nil {
		return mongoerr.New(mongoerr.NotYetInitialized, "the oplog is not open: this member is not running replication (disabled, or starting)")
	}
	return fn(l)
}

func (h *Handler) findOplog(ctx context.Context, c *wire.ConnState, ns string, spec *findSpec, fo findOptions, batchSize int64, single bool) (bson.Raw, error) {
	if spec.sort != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "local.oplog.rs can be sorted by {$natural: ±1} or {ts: ±1} only (its natural order is timestamp order)")
	}
	if fo.tailable && spec.natural < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "error processing query: %s tailable cursor requires {$natural: 1} order", ns)
	}
	if h.opts.Repl == nil {
		return cursorReply(ns, 0, "firstBatch", nil)
	}
	src := &oplogSource{spec: spec, tailable: fo.tailable, awaitData: fo.awaitData, noTimeout: fo.noTimeout}
	src.pos = startAfter(spec.filter)
	if single {
		if batchSize < 0 {
			batchSize = 1 << 30
		}
		docs, _, err := src.next(ctx, h, int(batchSize))
		if err != nil {
			return nil, err
		}
		return cursorReply(ns, 0, "firstBatch", docs)
	}
	return h.firstBatch(ctx, ns, c, src, batchSize)
}

// tsSort reads a sort on ts alone as a natural order.
func tsSort(spec bson.Raw) (int8, bool) {
	els, err := spec.Elements()
	if err != nil || len(els) != 1 || els[0].Key() != "ts" {
		return 0, false
	}
	n, ok := els[0].Value().AsInt64OK()
	if !ok || (n != 1 && n != -1) {
		return 0, false
	}
	return int8(n), true
}

// startAfter finds, in a filter on ts ({ts: {$gt|$gte: Timestamp}} at the
// top level, as oplog readers write), where a forward scan may begin:
// just before the first timestamp that can match. The filter still runs
// on every entry.
func startAfter(filter bson.Raw) oplog.Timestamp {
	v, err := filter.LookupErr("ts")
	if err != nil {
		return oplog.Timestamp{}
	}
	d, ok := v.DocumentOK()
	if !ok {
		return oplog.Timestamp{}
	}
	var from oplog.Timestamp
	for _, op := range []string{"$gt", "$gte"} {
		t, i, ok := d.Lookup(op).TimestampOK()
		if !ok {
			continue
		}
		ts := oplog.Timestamp{T: t, I: i}
		if op == "$gte" {
			ts = before(ts)
		}
		if ts.Compare(from) > 0 {
			from = ts
		}
	}
	return from
}

// before is the timestamp just before ts (zero for the first).
func before(ts oplog.Timestamp) oplog.Timestamp {
	switch {
	case ts.I > 0:
		return oplog.Timestamp{T: ts.T, I: ts.I - 1}
	case ts.T > 0:
		return oplog.Timestamp{T: ts.T - 1, I: ^uint32(0)}
	}
	return oplog.Timestamp{}
}

// oplogSource is a cursor over the oplog. It keeps only its position (the
// last timestamp it read) between batches.
type oplogSource struct {
	spec                           *findSpec
	pos                            oplog.Timestamp
	moved                          bool // pos is an entry read (not where a forward scan starts)
	skipped                        int64
	emitted                        int64
	started                        bool
	tailable, awaitData, noTimeout bool
	wait                           time.Duration
}

func (s *oplogSource) noCursorTimeout() bool { return s.noTimeout }

func (s *oplogSource) setAwait(d time.Duration) bool {
	s.wait = d
	return s.tailable && s.awaitData
}

func (s *oplogSource) next(ctx context.Context, h *Handler, n int) ([]bson.Raw, bool, error) {
	first := !s.started
	s.started = true
	var out []bson.Raw
	var done bool
	var changed <-chan struct{}
	read := func() error {
		return h.withOplog(func(l *oplog.Log) error {
			if !first && s.tailable && s.awaitData {
				changed = l.Changed()
			}
			var err error
			out, done, err = s.batch(ctx, l, n)
			if err == nil && s.tailable {
				if _, count, oldest, serr := l.Stats(); serr == nil && count > 0 && !s.pos.IsZero() && s.pos.Compare(before(oldest)) < 0 {
					// The cap removed entries this cursor had not read.
					err = mongoerr.New(codeCappedPositionLost, "CollectionScan died due to position in capped collection being deleted")
				}
			}
			return err
		})
	}
	if err := read(); err != nil {
		return nil, false, err
	}
	if !s.tailable || len(out) > 0 || changed == nil {
		return out, done && !s.tailable, nil
	}
	wait := s.wait
	if wait <= 0 {
		wait = defaultAwaitData
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			return nil, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if err := read(); err != nil || len(out) > 0 {
			return out, false, err
		}
	}
}

// batch reads up to n matching entries after (or, backward, before) pos.
func (s *oplogSource) batch(ctx context.Context, l *oplog.Log, n int) ([]bson.Raw, bool, error) {
	var out []bson.Raw
	size := 0
	full := false
	visit := func(e oplog.Stored) (bool, error) {
		s.pos, s.moved = e.TS, true
		doc := e.Raw
		if !s.spec.matcher.Match(doc) {
			return true, nil
		}
		if s.skipped < s.spec.skip {
			s.skipped++
			return true, nil
		}
		if s.spec.projection != nil {
			var err error
			if doc, err = s.spec.projection.Apply(doc); err != nil {
				return false, err
			}
		}
		out = append(out, doc)
		size += len(doc)
		s.emitted++
		if s.spec.limit > 0 && s.emitted >= s.spec.limit {
			full = true
			return false, nil
		}
		if len(out) >= n || size >= maxBSONSize {
			return false, nil
		}
		return true, nil
	}
	var err error
	if s.spec.natural < 0 {
		from := s.pos
		if !s.moved {
			from = oplog.Timestamp{} // the newest entry first
		}
		err = l.ScanBackward(ctx, from, visit)
	} else {
		err = l.Scan(ctx, s.pos, visit)
	}
	if err != nil {
		return nil, false, err
	}
	end := !(len(out) >= n || size >= maxBSONSize)
	return out, full || end, nil
}
