package docstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/query"
)

// Plan says how to find a query's candidate documents: by _id, through an
// index's key ranges, or by scanning the collection. Candidates are always
// re-checked against the full filter, so a plan only has to be complete
// (never miss a match), not exact.
type Plan struct {
	// Index is nil for a collection scan.
	Index *Index
	// Ranges are key ranges inside the index (or, for the _id index, the
	// document keys), sorted and non-overlapping.
	Ranges []Range
	// Natural, for a collection scan, is 1 for natural order and -1 for
	// reverse natural order ($natural hint or sort). A capped collection's
	// natural order is insertion order; any other collection's is _id
	// order. 0 means natural order.
	Natural int8
	// Bounds are the index scan's bounds as explain shows them.
	Bounds []query.FieldBounds
}

// Range is [Lo, Hi) in encoded index-key space; nil Hi is unbounded.
type Range struct{ Lo, Hi []byte }

// String describes the plan (for explain and logs).
func (p Plan) String() string {
	if p.Index == nil {
		return "COLLSCAN"
	}
	return fmt.Sprintf("IXSCAN %s (%d ranges)", p.Index.Name, len(p.Ranges))
}

// Position is where a scan stopped, so a cursor can resume it. It also
// counts the work the scan did (explain's executionStats).
type Position struct {
	rng   int
	after []byte
	seen  map[string]struct{}
	done  bool

	// Keys counts the index entries read (for a scan of the _id index,
	// the document keys), Docs the documents read; Seeks the key ranges
	// started.
	Keys, Docs, Seeks int64
}

// Done reports whether the scan reached its end.
func (p *Position) Done() bool { return p.done }

// Get reads one document by _id.
func (s *Store) Get(coll *Collection, id bson.RawValue) (bson.Raw, bool, error) {
	v, closer, err := s.db.Get(DocKey(coll, id))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("docstore: %w", err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

// Scan calls fn with each candidate document of plan, in plan order,
// resuming from pos (a zero Position starts at the beginning). fn returns
// false to stop; pos then records where, and the next Scan continues after
// the last document fn saw. Documents are copies the caller may keep.
//
// Scan checks ctx before every document: once ctx is done it returns
// context.Cause(ctx) (wrapped) without handing fn another document, so a
// disabled node or an expired maxTimeMS stops a long scan at once.
func (s *Store) Scan(ctx context.Context, coll *Collection, plan Plan, pos *Position, fn func(doc bson.Raw) (bool, error)) error {
	r, err := s.readerFor(ctx)
	if err != nil {
		return err
	}
	return scan(ctx, r, coll, plan, pos, fn)
}

// Interrupted returns nil while ctx is live, and once it is done the
// reason, wrapped: context.Cause(ctx) (the node's disabled error, a
// maxTimeMS deadline) matches with errors.Is/As. It costs a channel poll,
// cheap enough for every document of a scan: the message is only built
// once ctx is done.
func Interrupted(ctx context.Context, op, name string) error {
	select {
	case <-ctx.Done():
		if name != "" {
			op += " " + name
		}
		return fmt.Errorf("docstore: %s interrupted: %w", op, context.Cause(ctx))
	default:
		return nil
	}
}

// reader is what a scan reads from: the database (committed state), an
// indexed batch (committed state plus the batch's staged writes) or a
// transaction's view (its snapshot plus its own writes, txn.go).
type reader interface {
	NewIter(o *pebble.IterOptions) (iterator, error)
	Get(key []byte) ([]byte, io.Closer, error)
}

// iterator is the part of *pebble.Iterator scans use. An iterator moves
// in one direction: First then Next, or Last then Prev.
type iterator interface {
	First() bool
	Last() bool
	Next() bool
	Prev() bool
	Valid() bool
	Key() []byte
	Value() []byte
	Close() error
}

// pebbleReader adapts a Pebble database, snapshot or indexed batch.
type pebbleReader struct {
	r interface {
		NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
		Get(key []byte) ([]byte, io.Closer, error)
	}
}

func (p pebbleReader) NewIter(o *pebble.IterOptions) (iterator, error) {
	it, err := p.r.NewIter(o)
	if err != nil {
		return nil, err
	}
	return it, nil
}

func (p pebbleReader) Get(key []byte) ([]byte, io.Closer, error) { return p.r.Get(key) }

// readerFor is what a read under ctx sees: the transaction's view when ctx
// carries one (txn.go), the committed state otherwise.
func (s *Store) readerFor(ctx context.Context) (reader, error) {
	if t := TxnFrom(ctx); t != nil {
		return t.view(s)
	}
	return pebbleReader{s.db}, nil
}

func scan(ctx context.Context, r reader, coll *Collection, plan Plan, pos *Position, fn func(doc bson.Raw) (bool, error)) error {
	if pos.done {
		return nil
	}
	if plan.Index != nil && pos.rng == 0 && pos.after == nil {
		// The first batch of an operation planned on an index.
		usageOf(coll, plan.Index).ops.Add(1)
	}
	if plan.Index == nil && coll.Capped() {
		return scanNatural(ctx, r, coll, plan.Natural, pos, fn)
	}
	if plan.Index == nil && plan.Natural < 0 {
		return scanDocsReverse(ctx, r, coll, pos, fn)
	}
	if plan.Index == nil || plan.Index.ID == 0 {
		return scanDocs(ctx, r, coll, plan, pos, fn)
	}
	return scanIndex(ctx, r, coll, plan, pos, fn)
}

func scanDocs(ctx context.Context, rd reader, coll *Collection, plan Plan, pos *Position, fn func(bson.Raw) (bool, error)) error {
	prefix := docPrefix(coll.ID)
	ranges := plan.Ranges
	if plan.Index == nil {
		ranges = []Range{{}}
	}
	for ; pos.rng < len(ranges); pos.rng, pos.after = pos.rng+1, nil {
		r := ranges[pos.rng]
		lo, hi := append(append([]byte(nil), prefix...), r.Lo...), prefixEnd(prefix)
		if r.Hi != nil {
			hi = append(append([]byte(nil), prefix...), r.Hi...)
		}
		if pos.after != nil {
			lo = append(append([]byte(nil), pos.after...), 0)
		}
		it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		pos.Seeks++
		for it.First(); it.Valid(); it.Next() {
			if err := Interrupted(ctx, "scan", coll.Name); err != nil {
				it.Close()
				return err
			}
			if plan.Index != nil {
				pos.Keys++
			}
			pos.Docs++
			more, err := fn(bytes.Clone(it.Value()))
			if err != nil || !more {
				pos.after = bytes.Clone(it.Key())
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("docstore: scan %s: %w", coll.Name, err)
		}
	}
	pos.done = true
	return nil
}

func scanIndex(ctx context.Context, rd reader, coll *Collection, plan Plan, pos *Position, fn func(bson.Raw) (bool, error)) error {
	prefix := indexPrefix(coll.ID, plan.Index.ID)
	if pos.seen == nil {
		pos.seen = map[string]struct{}{}
	}
	for ; pos.rng < len(plan.Ranges); pos.rng, pos.after = pos.rng+1, nil {
		r := plan.Ranges[pos.rng]
		lo := append(append([]byte(nil), prefix...), r.Lo...)
		hi := prefixEnd(prefix)
		if r.Hi != nil {
			hi = append(append([]byte(nil), prefix...), r.Hi...)
		}
		if pos.after != nil {
			lo = append(append([]byte(nil), pos.after...), 0)
		}
		it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		pos.Seeks++
		for it.First(); it.Valid(); it.Next() {
			if err := Interrupted(ctx, "scan", coll.Name); err != nil {
				it.Close()
				return err
			}
			pos.Keys++
			idKey := string(it.Value())
			if _, dup := pos.seen[idKey]; dup {
				continue
			}
			pos.seen[idKey] = struct{}{}
			v, closer, err := rd.Get(append(docPrefix(coll.ID), idKey...))
			if errors.Is(err, pebble.ErrNotFound) {
				continue // deleted between the index read and now
			}
			if err != nil {
				it.Close()
				return err
			}
			doc := bytes.Clone(v)
			closer.Close()
			pos.Docs++
			more, err := fn(doc)
			if err != nil || !more {
				pos.after = bytes.Clone(it.Key())
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("docstore: scan index %s: %w", plan.Index.Name, err)
		}
	}
	pos.done = true
	return nil
}

// PlanFor picks a plan for filter: the index whose key ranges constrain the
// most leading fields by equality (the _id index wins ties), or a
// collection scan when no index's first field is constrained.
func PlanFor(coll *Collection, filter bson.Raw) (Plan, error) {
	best, bestScore := Plan{}, -1
	for i := range coll.Indexes {
		ix := &coll.Indexes[i]
		if ix.Text != nil {
			continue // read only by $text (TextPlan)
		}
		if ix.Hidden || (len(ix.PartialFilter) > 0 && !query.Implies(filter, ix.PartialFilter)) {
			// Hidden indexes are not the planner's to choose, and a
			// partial index only serves queries that imply its filter.
			continue
		}
		pattern, err := bson.Marshal(ix.Key)
		if err != nil {
			return Plan{}, err
		}
		// Secondary indexes may hold arrays: plan them as multikey, which
		// never intersects bounds that different elements could satisfy.
		ip, ok, err := query.PlanIndex(filter, pattern, ix.ID != 0)
		if err != nil {
			return Plan{}, err
		}
		if !ok || (ix.Sparse && !ip.ExcludesMissing) {
			// A sparse index lacks the documents without its fields,
			// which a query that matches null could match.
			continue
		}
		score := 4 * ip.EqualityPrefix
		if ix.ID == 0 {
			score += 2
		} else if ix.Unique {
			score++
		}
		if score > bestScore {
			ranges := make([]Range, len(ip.Ranges))
			for j, r := range ip.Ranges {
				ranges[j] = Range{Lo: r.Start, Hi: r.End}
			}
			best, bestScore = Plan{Index: ix, Ranges: ranges, Bounds: ip.Bounds}, score
		}
	}
	return best, nil
}
