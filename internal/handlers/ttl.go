package handlers

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/repl"
)

// The TTL monitor: like mongod's, a background task that every
// ttlMonitorSleepSecs (60 by default; setParameter changes it) deletes the
// documents of every TTL index whose indexed date — the earliest one, for
// an array — is more than expireAfterSeconds in the past. Documents whose
// field is missing or holds no date never expire. It runs only on a
// standalone node or the primary of a replica set, and deletes through the
// ordinary write path, so the deletes replicate (and reach the oplog and
// change streams) as any delete does.

const (
	defaultTTLSleepSecs = 60
	// ttlBatch bounds the documents one TTL write deletes.
	ttlBatch = 1000
)

// ttlMonitor is the monitor's state, owned by one Handler.
type ttlMonitor struct {
	sleepSecs atomic.Int32
	enabled   atomic.Bool
	// wake tells the loop its interval changed (buffered: a pending
	// wake-up is enough).
	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	passes  atomic.Int64
	deleted atomic.Int64
}

func newTTLMonitor() *ttlMonitor {
	m := &ttlMonitor{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	m.sleepSecs.Store(defaultTTLSleepSecs)
	m.enabled.Store(true)
	return m
}

// setSleepSecs changes the interval, starting a new wait from now.
func (m *ttlMonitor) setSleepSecs(n int32) int32 {
	old := m.sleepSecs.Swap(n)
	select {
	case m.wake <- struct{}{}:
	default:
	}
	return old
}

// close stops the loop and waits for it (a pass in flight finishes its
// current batch first: its context is cancelled).
func (m *ttlMonitor) close(started bool) {
	m.once.Do(func() {
		close(m.stop)
		if started {
			<-m.done
		}
	})
}

// runTTLMonitor is the monitor's loop.
func (h *Handler) runTTLMonitor() {
	m := h.ttl
	defer close(m.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-m.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		t := time.NewTimer(time.Duration(m.sleepSecs.Load()) * time.Second)
		select {
		case <-m.stop:
			t.Stop()
			return
		case <-m.wake:
			t.Stop()
			continue
		case <-t.C:
		}
		if m.enabled.Load() {
			h.ttlPass(ctx)
		}
	}
}

// ttlPass deletes every TTL index's expired documents once.
func (h *Handler) ttlPass(ctx context.Context) {
	if !h.node.State().Available {
		return
	}
	if h.opts.Repl != nil && h.opts.Repl.CheckWritable() != nil {
		return // only the primary expires documents; its deletes replicate
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return
	}
	names := slices.DeleteFunc(eng.Databases(), repl.IsStaging)
	release()
	bctx, unbind := h.node.Bind(ctx)
	defer unbind()
	h.ttl.passes.Add(1)
	for _, db := range names {
		if db == "local" && h.opts.Repl != nil {
			continue // a member's own, never replicated
		}
		if err := h.ttlDatabase(bctx, db); err != nil {
			if bctx.Err() != nil {
				return
			}
			h.log.Warn("TTL monitor: deleting expired documents failed", "db", db, "err", err)
		}
	}
}

func (h *Handler) ttlDatabase(ctx context.Context, db string) error {
	st, release, err := h.store(db, false)
	if err != nil {
		return err
	}
	defer release()
	if st == nil {
		return nil
	}
	for _, coll := range st.Collections() {
		for i := range coll.Indexes {
			ix := &coll.Indexes[i]
			if !ix.TTL {
				continue
			}
			n, err := ttlExpire(ctx, st, coll, ix, time.Now())
			h.ttl.deleted.Add(n)
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// ttlExpire deletes the documents of coll that ix says expired at now, in
// batches of at most ttlBatch, and returns how many it deleted.
func ttlExpire(ctx context.Context, st *docstore.Store, coll *docstore.Collection, ix *docstore.Index, now time.Time) (int64, error) {
	paths, _ := ix.Fields()
	cutoff := now.Add(-time.Duration(ix.ExpireAfterSeconds) * time.Second)
	filter, err := bson.Marshal(bson.D{{Key: paths[0], Value: bson.D{{Key: "$lt", Value: bson.NewDateTimeFromTime(cutoff)}}}})
	if err != nil {
		return 0, err
	}
	m, err := query.Compile(filter)
	if err != nil {
		return 0, err
	}
	pattern, err := bson.Marshal(ix.Key)
	if err != nil {
		return 0, err
	}
	ip, ok, err := query.PlanIndex(filter, pattern, true)
	if err != nil || !ok {
		return 0, err
	}
	plan := docstore.Plan{Index: ix}
	for _, r := range ip.Ranges {
		plan.Ranges = append(plan.Ranges, docstore.Range{Lo: r.Start, Hi: r.End})
	}
	var total int64
	for {
		var n int
		more := false
		err := st.Write(ctx, func(w *docstore.Writer) error {
			// Collect first, then delete: the scan runs over the index
			// the deletes change.
			var ids []bson.RawValue
			var pos docstore.Position
			err := w.Scan(coll, plan, &pos, func(doc bson.Raw) (bool, error) {
				if !m.Match(doc) || !ix.Covers(doc) {
					return true, nil
				}
				id, err := docstore.IDOf(doc)
				if err != nil {
					return false, err
				}
				ids = append(ids, id)
				return len(ids) < ttlBatch, nil
			})
			if err != nil {
				return err
			}
			more = !pos.Done()
			for _, id := range ids {
				doc, found, err := w.Get(coll, id)
				if err != nil {
					return err
				}
				if !found {
					continue
				}
				if err := w.Delete(coll, doc); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		total += int64(n)
		if err != nil || !more || n == 0 {
			return total, err
		}
	}
}
