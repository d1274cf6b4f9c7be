package docstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// Capped collections keep, besides the documents keyed by _id, their
// insertion order and their running totals:
//
//	"\x00s" + coll id                        -> next seq (u64) | count (u64) | bytes (u64)
//	"\x03" + coll id + seq (u64 BE)          -> key(_id)   natural (insertion) order
//	"\x04" + coll id + key(_id)              -> seq (u64 BE)
//
// Invariants, all kept by staging every change in the same batch as the
// document write that causes it (so a crash never separates them):
//   - every document of a capped collection has exactly one natural entry
//     and one reverse entry, and the totals count exactly those documents;
//   - after an insert commits, count <= Max (when Max > 0) and bytes <= Size,
//     the oldest documents having been removed in the insert's batch; the
//     document just inserted is never the one removed.
const (
	prefixNatural    = 0x03
	prefixNaturalRev = 0x04
)

// MaxCappedSize is mongod's upper bound for a capped collection's size
// (1 PB).
const MaxCappedSize = 1 << 50

// cappedState is a capped collection's running totals.
type cappedState struct {
	next, count, bytes uint64
}

func cappedStateKey(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixCatalog, 's'}, coll)
}

func naturalPrefix(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixNatural}, coll)
}

func naturalRevPrefix(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixNaturalRev}, coll)
}

// Capped reports whether the collection is capped.
func (c *Collection) Capped() bool { return c.Options.Capped }

func (w *Writer) cappedState(coll *Collection) (cappedState, error) {
	v, closer, err := w.b.Get(cappedStateKey(coll.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return cappedState{next: 1}, nil
	}
	if err != nil {
		return cappedState{}, fmt.Errorf("docstore: %w", err)
	}
	defer closer.Close()
	if len(v) != 24 {
		return cappedState{}, fmt.Errorf("docstore: capped collection %s: damaged totals record (%d bytes)", coll.Name, len(v))
	}
	return cappedState{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint64(v[16:])}, nil
}

func (w *Writer) putCappedState(coll *Collection, st cappedState) error {
	v := binary.BigEndian.AppendUint64(nil, st.next)
	v = binary.BigEndian.AppendUint64(v, st.count)
	v = binary.BigEndian.AppendUint64(v, st.bytes)
	return w.b.Set(cappedStateKey(coll.ID), v, nil)
}

// cappedCheckInsert refuses a document that could never fit, before
// anything is staged.
func cappedCheckInsert(coll *Collection, doc bson.Raw) error {
	if coll.Options.Capped && int64(len(doc)) > coll.Options.Size {
		return mongoerr.New(mongoerr.BadValue, "object to insert exceeds cappedMaxSize")
	}
	return nil
}

// cappedInserted records a new document's place in insertion order and
// then removes the oldest documents until the collection is within its
// bounds again, all in the writer's batch.
func (w *Writer) cappedInserted(coll *Collection, id bson.RawValue, doc bson.Raw) error {
	st, err := w.cappedState(coll)
	if err != nil {
		return err
	}
	idKey := query.EncodeIndexKey([]bson.RawValue{id}, []int{1})
	seq := st.next
	st.next++
	st.count++
	st.bytes += uint64(len(doc))
	if err := w.b.Set(append(naturalPrefix(coll.ID), binary.BigEndian.AppendUint64(nil, seq)...), idKey, nil); err != nil {
		return err
	}
	if err := w.b.Set(append(naturalRevPrefix(coll.ID), idKey...), binary.BigEndian.AppendUint64(nil, seq), nil); err != nil {
		return err
	}
	if err := w.putCappedState(coll, st); err != nil {
		return err
	}
	return w.cappedEvict(coll, idKey)
}

// over reports whether totals exceed the collection's bounds.
func (o *CollOptions) over(st cappedState) bool {
	return (o.Max > 0 && st.count > uint64(o.Max)) || st.bytes > uint64(o.Size)
}

// cappedEvict removes the oldest documents (never keep, the one just
// inserted) while the collection exceeds its bounds.
func (w *Writer) cappedEvict(coll *Collection, keep []byte) error {
	for {
		st, err := w.cappedState(coll)
		if err != nil {
			return err
		}
		if !coll.Options.over(st) {
			return nil
		}
		p := naturalPrefix(coll.ID)
		it, err := w.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return err
		}
		if !it.First() {
			it.Close()
			return nil
		}
		idKey := bytes.Clone(it.Value())
		if err := it.Close(); err != nil {
			return err
		}
		if bytes.Equal(idKey, keep) {
			return nil
		}
		v, closer, err := w.b.Get(append(docPrefix(coll.ID), idKey...))
		if err != nil {
			return fmt.Errorf("docstore: capped collection %s: natural entry without its document: %w", coll.Name, err)
		}
		old := bytes.Clone(v)
		closer.Close()
		if err := w.Delete(coll, old); err != nil {
			return err
		}
	}
}

// cappedRemoved forgets a deleted document's place and size.
func (w *Writer) cappedRemoved(coll *Collection, id bson.RawValue, doc bson.Raw) error {
	return w.cappedResized(coll, id, len(doc), 0, true)
}

// cappedResized adjusts the byte total after an update changed a
// document's size (MongoDB 7.0 allows that in capped collections).
func (w *Writer) cappedResized(coll *Collection, id bson.RawValue, oldLen, newLen int, removed bool) error {
	st, err := w.cappedState(coll)
	if err != nil {
		return err
	}
	st.bytes = st.bytes - uint64(oldLen) + uint64(newLen)
	if removed {
		st.count--
		idKey := query.EncodeIndexKey([]bson.RawValue{id}, []int{1})
		rk := append(naturalRevPrefix(coll.ID), idKey...)
		v, closer, err := w.b.Get(rk)
		if err != nil {
			return fmt.Errorf("docstore: capped collection %s: document without its natural entry: %w", coll.Name, err)
		}
		seq := bytes.Clone(v)
		closer.Close()
		if err := w.b.Delete(rk, nil); err != nil {
			return err
		}
		if err := w.b.Delete(append(naturalPrefix(coll.ID), seq...), nil); err != nil {
			return err
		}
	}
	return w.putCappedState(coll, st)
}

// scanNatural walks a capped collection in insertion order (dir 1) or
// newest first (dir -1), resuming after pos.
func scanNatural(ctx context.Context, rd reader, coll *Collection, dir int8, pos *Position, fn func(bson.Raw) (bool, error)) error {
	p := naturalPrefix(coll.ID)
	lo, hi := p, prefixEnd(p)
	if pos.after != nil {
		if dir >= 0 {
			lo = append(bytes.Clone(pos.after), 0)
		} else {
			hi = pos.after
		}
	}
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	valid := it.First()
	if dir < 0 {
		valid = it.Last()
	}
	for ; valid; valid = step(it, dir) {
		if err := Interrupted(ctx, "scan", coll.Name); err != nil {
			it.Close()
			return err
		}
		v, closer, err := rd.Get(append(docPrefix(coll.ID), it.Value()...))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			it.Close()
			return err
		}
		doc := bytes.Clone(v)
		closer.Close()
		pos.after = bytes.Clone(it.Key())
		pos.Docs++
		more, err := fn(doc)
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("docstore: scan %s: %w", coll.Name, err)
	}
	pos.done = true
	return nil
}

func step(it iterator, dir int8) bool {
	if dir < 0 {
		return it.Prev()
	}
	return it.Next()
}

// Tail makes a finished natural-order scan resumable, for a tailable
// cursor: the next Scan returns documents inserted since. It reports
// false if the last document the scan returned has since been removed
// from the capped collection (mongod's CappedPositionLost).
func (s *Store) Tail(coll *Collection, pos *Position) (bool, error) {
	pos.done = false
	if pos.after == nil {
		return true, nil
	}
	_, closer, err := s.db.Get(pos.after)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("docstore: %w", err)
	}
	closer.Close()
	return true, nil
}

// dropCapped stages the removal of a capped collection's extra records.
func dropCapped(b *pebble.Batch, coll *Collection) {
	b.Delete(cappedStateKey(coll.ID), nil)
	for _, p := range [][]byte{naturalPrefix(coll.ID), naturalRevPrefix(coll.ID)} {
		b.DeleteRange(p, prefixEnd(p), nil)
	}
}

// scanDocsReverse walks an ordinary collection in reverse _id order (its
// reverse natural order).
func scanDocsReverse(ctx context.Context, rd reader, coll *Collection, pos *Position, fn func(bson.Raw) (bool, error)) error {
	p := docPrefix(coll.ID)
	hi := prefixEnd(p)
	if pos.after != nil {
		hi = pos.after
	}
	it, err := rd.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: hi})
	if err != nil {
		return err
	}
	for valid := it.Last(); valid; valid = it.Prev() {
		if err := Interrupted(ctx, "scan", coll.Name); err != nil {
			it.Close()
			return err
		}
		pos.after = bytes.Clone(it.Key())
		pos.Docs++
		more, err := fn(bytes.Clone(it.Value()))
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("docstore: scan %s: %w", coll.Name, err)
	}
	pos.done = true
	return nil
}
