package docstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// IndexSpec is what createIndexes asks for.
type IndexSpec struct {
	Name   string
	Key    bson.D
	Unique bool
	Sparse bool
	// TTL with ExpireAfterSeconds makes a TTL index.
	TTL                bool
	ExpireAfterSeconds int64
	PartialFilter      bson.Raw
	Hidden             bool
	// Text makes a text index; Key is then {_fts: "text", _ftsx: 1}.
	Text *fts.Spec
}

// sameOptions reports whether ix has the options spec asks for.
func (ix *Index) sameOptions(spec IndexSpec) bool {
	return ix.Unique == spec.Unique && ix.Sparse == spec.Sparse && ix.TTL == spec.TTL &&
		ix.ExpireAfterSeconds == spec.ExpireAfterSeconds && bytes.Equal(ix.PartialFilter, spec.PartialFilter) &&
		ix.Hidden == spec.Hidden && ix.Text.Equal(spec.Text)
}

// DefaultIndexName is MongoDB's generated name: field_dir joined by "_".
func DefaultIndexName(key bson.D) string {
	parts := make([]string, 0, len(key))
	for _, e := range key {
		parts = append(parts, fmt.Sprintf("%s_%v", e.Key, e.Value))
	}
	return strings.Join(parts, "_")
}

// CreateIndex builds an index over the collection's documents and publishes
// it. It returns false if an identical index exists already. The build and
// the catalog change commit in one batch; a unique violation among existing
// documents fails with DuplicateKey and changes nothing.
//
// The build stops, changing nothing, when ctx is done.
func (s *Store) CreateIndex(ctx context.Context, collName string, spec IndexSpec) (bool, error) {
	if len(spec.Key) == 0 {
		return false, mongoerr.New(mongoerr.BadValue, "Index keys cannot be empty.")
	}
	for _, e := range spec.Key {
		switch v := e.Value.(type) {
		case int, int32, int64, float64:
		case string:
			if spec.Text != nil && v == "text" {
				continue
			}
			return false, mongoerr.New(mongoerr.NotImplemented, "index type %q is not supported", v)
		default:
			return false, mongoerr.New(mongoerr.BadValue, "Values in the index key pattern can only be numbers or strings")
		}
	}
	if spec.Name == "" {
		spec.Name = DefaultIndexName(spec.Key)
	}
	if _, err := s.EnsureCollection(collName); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.catalog()
	c := cat.colls[collName]
	if c == nil {
		// Dropped between EnsureCollection and here.
		return false, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", s.db.Name, collName)
	}
	for _, ix := range c.Indexes {
		sameKey := keyEqual(ix.Key, spec.Key)
		samePartial := bytes.Equal(ix.PartialFilter, spec.PartialFilter)
		if !(ix.Name == spec.Name && sameKey && ix.sameOptions(spec)) {
			if err := textIndexConflict(&ix, spec); err != nil {
				return false, err
			}
		}
		switch {
		case ix.Name == spec.Name && sameKey && ix.sameOptions(spec):
			return false, nil
		case ix.Name == spec.Name && sameKey:
			return false, mongoerr.New(mongoerr.IndexOptionsConflict, "An equivalent index already exists with the same name but different options. Requested index: %s, existing index: %s", specDoc(spec), specDoc(ix.Spec()))
		case ix.Name == spec.Name:
			return false, mongoerr.New(mongoerr.IndexKeySpecsConflict, "An existing index has the same name as the requested index but different options or key. Requested index: %s, existing index: %s", specDoc(spec), specDoc(ix.Spec()))
		case sameKey && samePartial && ix.Sparse == spec.Sparse && ix.Unique == spec.Unique:
			// mongod tells indexes with one key apart by their
			// partial filter, sparseness and uniqueness only.
			return false, mongoerr.New(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", ix.Name)
		}
	}
	if spec.Hidden && keyEqual(spec.Key, bson.D{{Key: "_id", Value: int32(1)}}) {
		return false, mongoerr.New(mongoerr.BadValue, "can't hide _id index")
	}
	ix := Index{Name: spec.Name, ID: cat.next, Key: spec.Key, Unique: spec.Unique, Sparse: spec.Sparse,
		TTL: spec.TTL, ExpireAfterSeconds: spec.ExpireAfterSeconds, PartialFilter: spec.PartialFilter, Hidden: spec.Hidden, Text: spec.Text}
	if err := ix.compile(); err != nil {
		return false, err
	}
	nc := *c
	nc.Indexes = append(slices.Clone(c.Indexes), ix)

	b := s.db.NewIndexedBatch()
	defer b.Close()
	p := indexPrefix(c.ID, ix.ID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: docPrefix(c.ID), UpperBound: prefixEnd(docPrefix(c.ID))})
	if err != nil {
		return false, err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "create index", spec.Name); err != nil {
			it.Close()
			return false, err
		}
		doc := bson.Raw(it.Value())
		id, err := IDOf(doc)
		if err != nil {
			it.Close()
			return false, err
		}
		idKey := query.EncodeIndexKey([]bson.RawValue{id}, []int{1})
		keys, tuples, err := indexEntries(doc, &ix)
		if err != nil {
			it.Close()
			return false, err
		}
		for j, k := range keys {
			full := entryKey(p, k, idKey, ix.Unique)
			if ix.Unique {
				if v, closer, err := b.Get(full); err == nil {
					same := bytes.Equal(v, idKey)
					closer.Close()
					if !same {
						it.Close()
						return false, dupKeyError(s.db.Name, &nc, &ix, tuples[j])
					}
				}
			}
			b.Set(full, idKey, nil)
		}
	}
	if err := it.Close(); err != nil {
		return false, err
	}
	if err := s.putCatalog(b, &nc, cat.next+1); err != nil {
		return false, err
	}
	if err := s.commitLocked(ctx, b, cat.with(collName, &nc, cat.next+1)); err != nil {
		return false, fmt.Errorf("docstore: create index: %w", err)
	}
	noteIndexCreated(&nc, &ix)
	return true, nil
}

// DropIndex removes an index by name ("*" drops all but _id).
func (s *Store) DropIndex(collName, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.catalog()
	c, ok := cat.colls[collName]
	if !ok {
		return mongoerr.New(mongoerr.NamespaceNotFound, "ns not found %s.%s", s.db.Name, collName)
	}
	if name == "_id_" {
		return mongoerr.New(mongoerr.InvalidOptions, "cannot drop _id index")
	}
	nc := *c
	nc.Indexes = nil
	var dropped []Index
	for _, ix := range c.Indexes {
		if ix.ID != 0 && (name == "*" || ix.Name == name) {
			dropped = append(dropped, ix)
			continue
		}
		nc.Indexes = append(nc.Indexes, ix)
	}
	if len(dropped) == 0 && name != "*" {
		return mongoerr.New(mongoerr.IndexNotFound, "index not found with name [%s]", name)
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, ix := range dropped {
		p := indexPrefix(c.ID, ix.ID)
		b.DeleteRange(p, prefixEnd(p), nil)
	}
	if err := s.putCatalog(b, &nc, cat.next); err != nil {
		return err
	}
	if err := s.commitLocked(context.Background(), b, cat.with(collName, &nc, cat.next)); err != nil {
		return fmt.Errorf("docstore: drop index: %w", err)
	}
	return nil
}

func keyEqual(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || toFloat(a[i].Value) != toFloat(b[i].Value) {
			return false
		}
	}
	return true
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	}
	return 0
}

// specDoc renders an index spec for messages, as mongod prints one.
func specDoc(spec IndexSpec) string {
	d := bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: spec.Key}, {Key: "name", Value: spec.Name}}
	ix := Index{ID: 1, Unique: spec.Unique, Sparse: spec.Sparse, TTL: spec.TTL, ExpireAfterSeconds: spec.ExpireAfterSeconds,
		PartialFilter: spec.PartialFilter, Hidden: spec.Hidden}
	d = append(d, ix.Options()...)
	raw, err := bson.Marshal(d)
	if err != nil {
		return fmt.Sprint(d)
	}
	return bson.Raw(raw).String()
}

// IndexChange is what collMod's index option changes; nil fields stay.
type IndexChange struct {
	ExpireAfterSeconds *int64
	Hidden             *bool
}

// ModifyIndex applies a collMod index change to the index named name and
// returns the index before and after.
func (s *Store) ModifyIndex(collName, name string, ch IndexChange) (before, after Index, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.catalog()
	c, ok := cat.colls[collName]
	if !ok {
		return before, after, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", s.db.Name, collName)
	}
	nc := *c
	nc.Indexes = slices.Clone(c.Indexes)
	i := slices.IndexFunc(nc.Indexes, func(ix Index) bool { return ix.Name == name })
	if i < 0 {
		return before, after, mongoerr.New(mongoerr.IndexNotFound, "cannot find index %s for ns %s.%s", name, s.db.Name, collName)
	}
	before = nc.Indexes[i]
	ix := &nc.Indexes[i]
	if ch.ExpireAfterSeconds != nil {
		ix.TTL, ix.ExpireAfterSeconds = true, *ch.ExpireAfterSeconds
	}
	if ch.Hidden != nil {
		ix.Hidden = *ch.Hidden
	}
	after = *ix
	if before.sameOptions(after.Spec()) {
		return before, after, nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.putCatalog(b, &nc, cat.next); err != nil {
		return before, after, err
	}
	if err := s.commitLocked(context.Background(), b, cat.with(collName, &nc, cat.next)); err != nil {
		return before, after, fmt.Errorf("docstore: collMod index: %w", err)
	}
	if before.Hidden != after.Hidden {
		// Hiding or unhiding an index restarts its $indexStats.
		noteIndexCreated(&nc, ix)
	}
	return before, after, nil
}
