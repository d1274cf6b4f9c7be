package docstore

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Collection returns a collection's current metadata, or nil. Inside Write
// the catalog cannot change (catalog changes take the same lock), so this
// is the metadata — indexes included — every staged write must maintain;
// prefer it to a *Collection obtained before Write.
func (w *Writer) Collection(name string) *Collection { return w.s.catalog().colls[name] }

// Scan is Store.Scan over the committed state plus this writer's staged
// writes. Like every Scan it may return a document whose index keys a staged
// write changed again (the iterator sees the batch as of each range's
// start): callers that modify what they scan collect the matches first and
// write afterwards, which also keeps a multi-document update from meeting
// the documents it moved forward in an index (the Halloween problem).
// The scan stops when the context given to Store.Write is done.
func (w *Writer) Scan(coll *Collection, plan Plan, pos *Position, fn func(doc bson.Raw) (bool, error)) error {
	return scan(w.ctx, w.b, coll, plan, pos, fn)
}

// Count returns how many documents coll holds, reading only keys. It
// stops, with the reason, when ctx is done.
func (s *Store) Count(ctx context.Context, coll *Collection) (int64, error) {
	p := docPrefix(coll.ID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return 0, fmt.Errorf("docstore: count %s: %w", coll.Name, err)
	}
	var n int64
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "count", coll.Name); err != nil {
			it.Close()
			return 0, err
		}
		n++
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("docstore: count %s: %w", coll.Name, err)
	}
	return n, nil
}
