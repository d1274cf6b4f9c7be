package docstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ChangeKind says what a Change did.
type ChangeKind uint8

const (
	ChangeInsert ChangeKind = iota + 1
	// ChangeUpdate is a document changed by update operators.
	ChangeUpdate
	// ChangeReplace is a document replaced whole (a replacement update).
	ChangeReplace
	ChangeDelete
	ChangeCreate
	ChangeDrop
	// ChangeRename: Coll is the collection under its old name, To under
	// its new one.
	ChangeRename
	ChangeCreateIndexes
	ChangeDropIndexes
	// ChangeModify is a collMod (options changed).
	ChangeModify
	// ChangeSession says the batch is a session's retryable write or
	// transaction: Session names it. It concerns every other change of
	// the batch.
	ChangeSession
)

// Session is the logical session and transaction number a batch was
// written under (from the retryable-write record it carries).
type Session struct {
	// LSID is the session id's UUID (16 bytes), then the user's uid
	// digest when the session has one.
	LSID      []byte
	TxnNumber int64
}

// Change is one change a replicated batch made to a database, as the
// oplog records it. Every member derives the same changes from the same
// batch applied to the same state (ApplyReplicated).
type Change struct {
	Kind ChangeKind
	// Coll is the collection: as it was before a drop or rename, as it is
	// after any other change.
	Coll *Collection
	To   *Collection
	// Before and After are a document's versions (Before absent for an
	// insert, After for a delete).
	Before, After bson.Raw
	// Indexes are the indexes a ChangeCreateIndexes or ChangeDropIndexes
	// added or removed.
	Indexes []Index
	// Session is a ChangeSession's session.
	Session *Session
}

// replaceHint marks, in a batch, a document replaced whole rather than
// updated with operators. It travels as a LogData record (written to the
// WAL, never applied), so a batch carries it through the replication log
// at no cost to the data; only replicated batches carry it.
var replaceHint = []byte("cmkdb/replace\x00")

// ReplaceWhole is Replace for a replacement-style update: the oplog
// records the new document rather than a diff, and change streams report
// a "replace".
func (w *Writer) ReplaceWhole(coll *Collection, old, new bson.Raw) error {
	if err := w.Replace(coll, old, new); err != nil {
		return err
	}
	if w.s.log == nil {
		return nil
	}
	id, err := IDOf(new)
	if err != nil {
		return err
	}
	return w.b.LogData(append(append([]byte(nil), replaceHint...), DocKey(coll, id)...), nil)
}

// batchChanges reads what batch repr will change against the database's
// current state (it runs before the batch is applied). A document key set
// or deleted twice in one batch yields two changes, in order.
func (s *Store) batchChanges(b *pebble.Batch) ([]pendingChange, *Session, error) {
	var sess *Session
	overlay := map[string][]byte{} // key -> value staged earlier in the batch (nil: deleted)
	replaced := map[string]bool{}
	var out []pendingChange
	r := b.Reader()
	for {
		kind, ukey, value, ok, err := r.Next()
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			break
		}
		switch kind {
		case pebble.InternalKeyKindLogData:
			if bytes.HasPrefix(ukey, replaceHint) {
				replaced[string(ukey[len(replaceHint):])] = true
			}
			continue
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
		default:
			continue
		}
		if len(ukey) > 1 && ukey[0] == prefixRetry && kind == pebble.InternalKeyKindSet {
			var rec retryRecord
			if err := bson.Unmarshal(value, &rec); err != nil {
				return nil, nil, fmt.Errorf("retryable write record: %w", err)
			}
			sess = &Session{LSID: bytes.Clone(ukey[1:]), TxnNumber: rec.TxnNumber}
			continue
		}
		if len(ukey) < 5 || ukey[0] != prefixDoc {
			continue
		}
		key := string(ukey)
		old, had := overlay[key]
		if !had {
			v, closer, err := s.db.Get(ukey)
			switch {
			case errors.Is(err, pebble.ErrNotFound):
			case err != nil:
				return nil, nil, err
			default:
				old = bytes.Clone(v)
				closer.Close()
			}
		}
		p := pendingChange{collID: binary.BigEndian.Uint32(ukey[1:5]), key: key, before: old}
		if kind == pebble.InternalKeyKindSet {
			p.after = bytes.Clone(value)
			overlay[key] = p.after
		} else {
			if old == nil {
				continue // deleting what is not there changes nothing
			}
			overlay[key] = nil
		}
		out = append(out, p)
	}
	for i := range out {
		out[i].replaced = replaced[out[i].key]
	}
	return out, sess, nil
}

type pendingChange struct {
	collID        uint32
	key           string
	before, after []byte
	replaced      bool
}

// catalogChanges compares two versions of the catalog: collections
// created, dropped, renamed (same id, new name), their indexes and
// options. Creations come first (a batch that creates a collection
// implicitly also inserts into it), then the rest by collection id.
func catalogChanges(before, after *catalog) []Change {
	oldByID := map[uint32]*Collection{}
	for _, c := range before.colls {
		oldByID[c.ID] = c
	}
	newByID := map[uint32]*Collection{}
	for _, c := range after.colls {
		newByID[c.ID] = c
	}
	ids := make([]uint32, 0, len(oldByID)+len(newByID))
	for id := range oldByID {
		ids = append(ids, id)
	}
	for id := range newByID {
		if oldByID[id] == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var creates, rest []Change
	for _, id := range ids {
		o, n := oldByID[id], newByID[id]
		switch {
		case o == nil:
			creates = append(creates, Change{Kind: ChangeCreate, Coll: n})
			if ix := newIndexes(nil, n.Indexes); len(ix) > 0 {
				creates = append(creates, Change{Kind: ChangeCreateIndexes, Coll: n, Indexes: ix})
			}
		case n == nil:
			rest = append(rest, Change{Kind: ChangeDrop, Coll: o})
		default:
			if o.Name != n.Name {
				rest = append(rest, Change{Kind: ChangeRename, Coll: o, To: n})
			}
			if ix := newIndexes(o.Indexes, n.Indexes); len(ix) > 0 {
				rest = append(rest, Change{Kind: ChangeCreateIndexes, Coll: n, Indexes: ix})
			}
			if ix := newIndexes(n.Indexes, o.Indexes); len(ix) > 0 {
				rest = append(rest, Change{Kind: ChangeDropIndexes, Coll: n, Indexes: ix})
			}
			ob, _ := bson.Marshal(o.Options)
			nb, _ := bson.Marshal(n.Options)
			if !bytes.Equal(ob, nb) {
				rest = append(rest, Change{Kind: ChangeModify, Coll: n})
			}
		}
	}
	return append(creates, rest...)
}

// newIndexes lists the indexes of b that a does not have (by id).
func newIndexes(a, b []Index) []Index {
	have := map[uint32]bool{}
	for _, ix := range a {
		have[ix.ID] = true
	}
	var out []Index
	for _, ix := range b {
		if !have[ix.ID] {
			out = append(out, ix)
		}
	}
	return out
}

// documentChanges resolves pending document changes to collections
// (after the batch, or before it for a collection the batch dropped).
func documentChanges(pending []pendingChange, before, after *catalog) ([]Change, error) {
	byID := map[uint32]*Collection{}
	for _, c := range before.colls {
		byID[c.ID] = c
	}
	for _, c := range after.colls {
		byID[c.ID] = c
	}
	out := make([]Change, 0, len(pending))
	for _, p := range pending {
		coll := byID[p.collID]
		if coll == nil {
			return nil, fmt.Errorf("docstore: replicated batch writes a document of unknown collection id %d", p.collID)
		}
		c := Change{Coll: coll, Before: p.before, After: p.after}
		switch {
		case p.before == nil:
			c.Kind = ChangeInsert
		case p.after == nil:
			c.Kind = ChangeDelete
		case p.replaced:
			c.Kind = ChangeReplace
		default:
			c.Kind = ChangeUpdate
		}
		out = append(out, c)
	}
	return out, nil
}
