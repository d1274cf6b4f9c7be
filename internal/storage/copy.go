package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Copying a database online: what in-place re-encryption does to move a
// database into a fresh key hierarchy while it keeps serving.
//
// A Copy installs a tap on the source, takes a Pebble snapshot, writes the
// snapshot's keys into the destination, then applies the batches the tap
// received, in commit order. The tap is installed before the snapshot is
// taken, so every batch missing from the snapshot is in the tap; a batch
// both in the snapshot and in the tap (committed just before the tap was
// installed, reported just after) is applied again on top of state that
// already holds it. That is harmless: a batch sets, deletes or
// range-deletes absolute keys, and the tap holds every batch after it, in
// order, so replaying a suffix of the commit sequence from a state inside
// it ends in the state after the last batch.
//
// Invariant: every batch committed to the source is handed to AfterCommit,
// in commit order, before the next batch of that database commits
// (docstore calls it under its writer lock). A caller that wants the
// destination to equal the source stops writes (no command holds the node),
// then calls CatchUp a last time.

// ErrCopyOverflow is returned when writes arrived faster than a copy could
// apply them and its backlog passed MaxCopyBacklog.
var ErrCopyOverflow = errors.New("storage: writes outpaced the copy of a database")

// MaxCopyBacklog bounds the memory a copy's tap holds (batches committed to
// the source and not yet applied to the destination).
const MaxCopyBacklog = 256 << 20

// tap collects the batches committed to a database while a copy runs.
type tap struct {
	mu       sync.Mutex
	batches  [][]byte
	size     int64
	overflow bool
}

func (t *tap) add(repr []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.overflow {
		return
	}
	if t.size+int64(len(repr)) > MaxCopyBacklog {
		t.overflow, t.batches, t.size = true, nil, 0
		return
	}
	t.batches = append(t.batches, append([]byte(nil), repr...))
	t.size += int64(len(repr))
}

func (t *tap) take() ([][]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.overflow {
		return nil, fmt.Errorf("%w: more than %d MiB of writes waited to be copied", ErrCopyOverflow, MaxCopyBacklog>>20)
	}
	b := t.batches
	t.batches, t.size = nil, 0
	return b, nil
}

// AfterCommit hands a batch just committed to the database to the copy
// running from it, if any. Writers call it in commit order (see the
// invariant above); it costs one atomic load when no copy runs.
func (db *DB) AfterCommit(repr []byte) {
	if t := db.tap.Load(); t != nil {
		t.add(repr)
	}
}

// ErrDatabaseBusy is returned by DropDatabase while a copy of the
// database runs.
var ErrDatabaseBusy = errors.New("storage: a copy of the database is running")

// Copy is one database's online copy into another.
type Copy struct {
	e        *Engine
	src, dst *DB
	t        *tap
	// Bytes and Keys count what the bulk phase copied so far.
	Bytes, Keys int64
}

// StartCopy starts copying database name into dst, which should be empty
// (it may belong to another engine). Until the copy is stopped the
// database cannot be dropped (ErrDatabaseBusy): its files must outlive the
// copy's snapshot. Stop it once done (or abandoned).
func (e *Engine) StartCopy(name string, dst *DB) (*Copy, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	src, ok := e.dbs[name]
	if !ok {
		var err error
		if src, err = e.openLocked(name); err != nil {
			return nil, err
		}
	}
	t := &tap{}
	if !src.tap.CompareAndSwap(nil, t) {
		return nil, fmt.Errorf("storage: database %q is already being copied", src.Name)
	}
	e.holdLocked(name)
	return &Copy{e: e, src: src, dst: dst, t: t}, nil
}

// Hold opens database name and keeps it from being dropped
// (ErrDatabaseBusy) until release is called: for readers of its files,
// such as a checkpoint, that must not see it closed under them.
func (e *Engine) Hold(name string) (db *DB, release func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	db, ok := e.dbs[name]
	if !ok {
		if db, err = e.openLocked(name); err != nil {
			return nil, nil, err
		}
	}
	e.holdLocked(name)
	return db, sync.OnceFunc(func() { e.unhold(name) }), nil
}

func (e *Engine) holdLocked(name string) {
	if e.copying == nil {
		e.copying = map[string]int{}
	}
	e.copying[name]++
}

func (e *Engine) unhold(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.copying[name]--; e.copying[name] <= 0 {
		delete(e.copying, name)
	}
}

// copyBatchBytes is the size of the destination batches of the bulk copy.
const copyBatchBytes = 4 << 20

// Bulk copies a snapshot of the source taken now, then applies what the
// tap collected meanwhile. progress, if set, is called after each batch
// with the bytes (keys and values) copied so far.
func (c *Copy) Bulk(ctx context.Context, progress func(bytes int64)) error {
	snap := c.src.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIterWithContext(ctx, nil)
	if err != nil {
		return fmt.Errorf("storage: copy %q: %w", c.src.Name, err)
	}
	b := c.dst.NewBatch()
	flush := func() error {
		if b.Empty() {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("storage: copy %q: %w", c.src.Name, err)
		}
		b.Close()
		b = c.dst.NewBatch()
		if progress != nil {
			progress(c.Bytes)
		}
		return nil
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			b.Close()
			return fmt.Errorf("storage: copy %q: %w", c.src.Name, err)
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			it.Close()
			b.Close()
			return err
		}
		c.Bytes += int64(len(it.Key()) + len(v))
		c.Keys++
		if b.Len() >= copyBatchBytes {
			if err := ctx.Err(); err != nil {
				it.Close()
				b.Close()
				return err
			}
			if err := flush(); err != nil {
				it.Close()
				b.Close()
				return err
			}
		}
	}
	err = it.Close()
	if err == nil {
		err = flush()
	}
	b.Close()
	if err != nil {
		return fmt.Errorf("storage: copy %q: %w", c.src.Name, err)
	}
	_, err = c.CatchUp()
	return err
}

// CatchUp applies the batches the tap collected since the last call, in
// order, and returns how many bytes they held.
func (c *Copy) CatchUp() (int64, error) {
	batches, err := c.t.take()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, repr := range batches {
		b := c.dst.NewBatch()
		if err := b.SetRepr(repr); err != nil {
			b.Close()
			return n, fmt.Errorf("storage: copy %q: a tapped batch: %w", c.src.Name, err)
		}
		err := b.Commit(pebble.NoSync)
		b.Close()
		if err != nil {
			return n, fmt.Errorf("storage: copy %q: %w", c.src.Name, err)
		}
		n += int64(len(repr))
	}
	return n, nil
}

// Stop removes the tap. The destination keeps what was copied. It may be
// called more than once.
func (c *Copy) Stop() {
	if !c.src.tap.CompareAndSwap(c.t, nil) {
		return
	}
	c.e.unhold(c.src.Name)
}

// SourceSize is the source database's size on disk (DB.DiskUsage).
func (c *Copy) SourceSize() int64 { return c.src.DiskUsage() }

// Sync makes everything written to the destination durable: its memtable
// is flushed to sstables (and the WAL with it).
func (c *Copy) Sync() error {
	if err := c.dst.Flush(); err != nil {
		return fmt.Errorf("storage: copy %q: flush: %w", c.dst.Name, err)
	}
	return nil
}
