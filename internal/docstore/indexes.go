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
	// Text makes a text index; Key is then {_fts: "text", _ftsx: 1}.
	Text *fts.Spec
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
		if ix.Name == spec.Name && sameKey && ix.Unique == spec.Unique && ix.Text.Equal(spec.Text) {
			return false, nil
		}
		if err := textIndexConflict(&ix, spec); err != nil {
			return false, err
		}
		if ix.Name == spec.Name {
			return false, mongoerr.New(mongoerr.IndexKeySpecsConflict, "An existing index has the same name as the requested index but different options or key. Requested index: %v, existing index: %v", spec.Key, ix.Key)
		}
		if sameKey {
			return false, mongoerr.New(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", ix.Name)
		}
	}
	ix := Index{Name: spec.Name, ID: cat.next, Key: spec.Key, Unique: spec.Unique, Text: spec.Text}
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
