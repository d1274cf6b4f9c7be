package docstore

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Log replicates a database's committed batches to the members of a replica
// set. It is defined here, where it is consumed; package repl implements it.
//
// A batch travels as Pebble's batch representation: the documents, index
// entries and catalog records the command wrote, in the clear on the wire
// (over mutual TLS) and never as any member's encrypted bytes. Every member
// applies it to its own database, under its own keys.
type Log interface {
	// Commit returns once repr is committed by a majority of the set and
	// applied to this member (through ApplyReplicated). catalog says the
	// batch changes the catalog. An error means the batch may or may not
	// be committed later (a lost leadership); it never is half applied.
	Commit(ctx context.Context, db string, repr []byte, catalog bool) error
}

// commitLocked commits b and publishes cat (nil: the catalog is unchanged).
// s.mu is held. Standalone, b is committed with sync here, and handed to
// the database's online copy if one runs (storage.DB.AfterCommit: under
// s.mu, so in commit order); on a replica set member it goes through the
// log, whose apply publishes the catalog.
func (s *Store) commitLocked(ctx context.Context, b *pebble.Batch, cat *catalog) error {
	if s.log != nil {
		return s.log.Commit(ctx, s.db.Name, b.Repr(), cat != nil)
	}
	if err := b.Commit(s.sync); err != nil {
		return err
	}
	s.db.AfterCommit(b.Repr())
	if cat != nil {
		s.cat.Store(cat)
	}
	s.notify()
	return nil
}

// ApplyReplicated applies a batch committed through the log to this
// member's database, and reloads the catalog when the batch changed it.
// The log calls it in log order, on every member (the one that proposed
// the batch too, while that writer holds s.mu: it takes no lock a writer
// holds). Applying the same sequence of batches again from an earlier
// point ends in the same state (every operation sets, deletes or
// range-deletes absolute keys), which is what a replay after a crash does.
//
// It is applied without sync: the log is the durable record, and a member
// that restarts rebuilds from the log's snapshot and entries.
//
// It returns the changes the batch made, in order (changes.go): the
// oplog's entries.
func (s *Store) ApplyReplicated(repr []byte, catalogChanged bool) ([]Change, error) {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.SetRepr(append([]byte(nil), repr...)); err != nil {
		return nil, fmt.Errorf("docstore: replicated batch for %s: %w", s.db.Name, err)
	}
	pending, sess, err := s.batchChanges(b)
	if err != nil {
		return nil, fmt.Errorf("docstore: replicated batch for %s: %w", s.db.Name, err)
	}
	before := s.cat.Load()
	if err := s.db.Apply(b, pebble.NoSync); err != nil {
		return nil, fmt.Errorf("docstore: apply replicated batch to %s: %w", s.db.Name, err)
	}
	after := before
	if catalogChanged {
		if err := s.Reload(); err != nil {
			return nil, err
		}
		after = s.cat.Load()
	}
	s.notify()
	docs, err := documentChanges(pending, before, after)
	if err != nil {
		return nil, err
	}
	if sess != nil {
		docs = append([]Change{{Kind: ChangeSession, Session: sess}}, docs...)
	}
	if !catalogChanged {
		return docs, nil
	}
	cat := catalogChanges(before, after)
	n := 0
	for n < len(cat) && (cat[n].Kind == ChangeCreate || (cat[n].Kind == ChangeCreateIndexes && n > 0 && cat[n-1].Kind == ChangeCreate)) {
		n++
	}
	out := append(append(cat[:n:n], docs...), cat[n:]...)
	return out, nil
}

// Reload rereads the catalog from the database (after a replicated catalog
// change or a snapshot restore).
func (s *Store) Reload() error {
	cat, err := loadCatalog(s.db)
	if err != nil {
		return err
	}
	s.cat.Store(cat)
	s.notify()
	return nil
}

// notify wakes the waiters of Changed.
func (s *Store) notify() {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.notifyCh != nil {
		close(s.notifyCh)
		s.notifyCh = nil
	}
}
