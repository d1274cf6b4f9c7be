package docstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/query"
)

// CollStats are a collection's sizes, measured from storage (collStats,
// dbStats, dataSize). Count and DataSize are exact (every document key
// and value is read, never decoded); the storage sizes are Pebble's
// estimates of the bytes its sstables hold for the key ranges, so writes
// still only in the memtable (and its write-ahead log) count once flushed.
type CollStats struct {
	Count    int64
	DataSize int64 // the sum of the documents' BSON sizes
	// StorageSize covers the documents (keyed by _id, so it includes the
	// _id index) and a capped collection's insertion-order records.
	StorageSize int64
	// IndexSizes is the on-disk estimate of each index, in coll.Indexes
	// order. The _id index is the documents' own key order: its size is
	// part of StorageSize and reported here as 0.
	IndexSizes []int64
}

// Stats measures coll in the committed state.
func (s *Store) Stats(ctx context.Context, coll *Collection) (CollStats, error) {
	var st CollStats
	p := docPrefix(coll.ID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return st, fmt.Errorf("docstore: stats %s: %w", coll.Name, err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "collStats", coll.Name); err != nil {
			it.Close()
			return st, err
		}
		st.Count++
		st.DataSize += int64(len(it.Value()))
	}
	if err := it.Close(); err != nil {
		return st, fmt.Errorf("docstore: stats %s: %w", coll.Name, err)
	}
	ranges := [][]byte{p}
	if coll.Capped() {
		ranges = append(ranges, naturalPrefix(coll.ID), naturalRevPrefix(coll.ID))
	}
	for _, r := range ranges {
		n, err := s.db.EstimateDiskUsage(r, prefixEnd(r))
		if err != nil {
			return st, fmt.Errorf("docstore: stats %s: %w", coll.Name, err)
		}
		st.StorageSize += int64(n)
	}
	st.IndexSizes = make([]int64, len(coll.Indexes))
	for i, ix := range coll.Indexes {
		if ix.ID == 0 {
			continue
		}
		ip := indexPrefix(coll.ID, ix.ID)
		n, err := s.db.EstimateDiskUsage(ip, prefixEnd(ip))
		if err != nil {
			return st, fmt.Errorf("docstore: stats %s: %w", coll.Name, err)
		}
		st.IndexSizes[i] = int64(n)
	}
	return st, nil
}

// DiskUsage is the bytes the database's files take on disk: sstables,
// write-ahead log, manifest and options.
func (s *Store) DiskUsage() int64 { return s.db.DiskUsage() }

// Flush writes the database's memtable to sstables and syncs them.
func (s *Store) Flush() error { return s.db.Flush() }

// Documents calls fn with every document of coll whose key-pattern tuple
// lies in [min, max) (both nil: every document), in _id order.
// keyPattern's paths give the tuple; a document holding an array on such
// a path is in range when any of its index keys is (counted once).
func (s *Store) Documents(ctx context.Context, coll *Collection, keyPattern bson.D, min, max []bson.RawValue, fn func(doc bson.Raw) error) error {
	var kp *query.KeyPattern
	var dirs []int
	if keyPattern != nil {
		pattern, err := bson.Marshal(keyPattern)
		if err != nil {
			return err
		}
		if kp, err = query.ParseKeyPattern(pattern); err != nil {
			return err
		}
		dirs = make([]int, len(keyPattern))
		for i := range dirs {
			dirs[i] = 1 // bounds compare in ascending value order
		}
	}
	var lo, hi []byte
	if min != nil {
		lo = query.EncodeIndexKey(min, dirs)
	}
	if max != nil {
		hi = query.EncodeIndexKey(max, dirs)
	}
	p := docPrefix(coll.ID)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "dataSize", coll.Name); err != nil {
			return err
		}
		doc := bson.Raw(it.Value())
		if kp != nil {
			_, tuples, err := kp.IndexEntries(doc)
			if err != nil {
				return err
			}
			in := false
			for _, t := range tuples {
				k := query.EncodeIndexKey(t, dirs)
				if (lo == nil || bytes.Compare(k, lo) >= 0) && (hi == nil || bytes.Compare(k, hi) < 0) {
					in = true
					break
				}
			}
			if !in {
				continue
			}
		}
		if err := fn(bytes.Clone(doc)); err != nil {
			return err
		}
	}
	return nil
}

// ValidateResult is what Validate found.
type ValidateResult struct {
	NRecords     int64
	KeysPerIndex []int64 // in coll.Indexes order
	// IndexErrors are each index's problems, in coll.Indexes order.
	IndexErrors [][]string
	Errors      []string
	Warnings    []string
	// MissingIndexEntries and ExtraIndexEntries count the index entries a
	// document should have and has not, and the entries no document
	// explains.
	MissingIndexEntries, ExtraIndexEntries int64
	CorruptRecords                         int64
	// NonCompliant counts the documents the collection's validator
	// refuses (stored before it was set, under validationLevel
	// moderate, or with bypassDocumentValidation).
	NonCompliant int64
}

// maxReported bounds the messages Validate keeps per kind.
const maxReported = 20

// Validate walks coll in one consistent snapshot: every document (its BSON
// checked by checkDoc, its key against its _id), every index entry each
// document should have, every index entry against the document it names,
// and a capped collection's insertion-order records and totals.
func (s *Store) Validate(ctx context.Context, coll *Collection, checkDoc func([]byte) error) (ValidateResult, error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	res := ValidateResult{KeysPerIndex: make([]int64, len(coll.Indexes)), IndexErrors: make([][]string, len(coll.Indexes))}
	report := func(list *[]string, format string, args ...any) {
		if len(*list) < maxReported {
			*list = append(*list, fmt.Sprintf(format, args...))
		}
	}
	patterns := make([]*query.KeyPattern, len(coll.Indexes))
	for i, ix := range coll.Indexes {
		if ix.Text != nil {
			continue // patterns[i] nil: textEntries
		}
		pattern, err := bson.Marshal(ix.Key)
		if err != nil {
			return res, err
		}
		if patterns[i], err = query.ParseKeyPattern(pattern); err != nil {
			return res, err
		}
	}
	// expected returns the full entry keys doc should have in index i.
	expected := func(i int, doc bson.Raw, idKey []byte) ([][]byte, error) {
		if !coll.Indexes[i].Covers(doc) {
			return nil, nil // a sparse or partial index leaves it out
		}
		var ks [][]byte
		var err error
		if patterns[i] == nil {
			ks, _, err = textEntries(doc, &coll.Indexes[i])
		} else {
			ks, _, err = patterns[i].IndexEntries(doc)
		}
		if err != nil {
			return nil, err
		}
		p := indexPrefix(coll.ID, coll.Indexes[i].ID)
		out := make([][]byte, len(ks))
		for j, k := range ks {
			out[j] = entryKey(p, k, idKey, coll.Indexes[i].Unique)
		}
		return out, nil
	}

	var dataSize int64
	p := docPrefix(coll.ID)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return res, err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "validate", coll.Name); err != nil {
			it.Close()
			return res, err
		}
		res.NRecords++
		key, doc := bytes.Clone(it.Key()), bson.Raw(bytes.Clone(it.Value()))
		dataSize += int64(len(doc))
		if err := checkDoc(doc); err != nil {
			res.CorruptRecords++
			report(&res.Errors, "Detected one or more invalid documents: record %x: %v", key[len(p):], err)
			continue
		}
		id, err := IDOf(doc)
		if err != nil {
			res.CorruptRecords++
			report(&res.Errors, "Detected one or more invalid documents: record %x has no valid _id", key[len(p):])
			continue
		}
		idKey := query.EncodeIndexKey([]bson.RawValue{id}, []int{1})
		if !bytes.Equal(key[len(p):], idKey) {
			res.CorruptRecords++
			report(&res.Errors, "Detected one or more invalid documents: the document with _id %s is stored under another key", id)
			continue
		}
		res.KeysPerIndex[idIndexOf(coll)]++
		if coll.validator != nil && !coll.validator.Match(doc) {
			res.NonCompliant++
		}
		for i, ix := range coll.Indexes {
			if ix.ID == 0 {
				continue
			}
			keys, err := expected(i, doc, idKey)
			if err != nil {
				report(&res.IndexErrors[i], "the document with _id %s cannot be indexed: %v", id, err)
				continue
			}
			for _, k := range keys {
				v, closer, err := snap.Get(k)
				if errors.Is(err, pebble.ErrNotFound) {
					res.MissingIndexEntries++
					report(&res.IndexErrors[i], "the index entry for the document with _id %s is missing", id)
					continue
				}
				if err != nil {
					it.Close()
					return res, err
				}
				ok := bytes.Equal(v, idKey)
				closer.Close()
				if !ok {
					res.MissingIndexEntries++
					report(&res.IndexErrors[i], "the index entry for the document with _id %s names another document", id)
				}
			}
		}
	}
	if err := it.Close(); err != nil {
		return res, err
	}

	// Every entry of every secondary index must be one its document makes.
	for i, ix := range coll.Indexes {
		if ix.ID == 0 {
			continue
		}
		ip := indexPrefix(coll.ID, ix.ID)
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: ip, UpperBound: prefixEnd(ip)})
		if err != nil {
			return res, err
		}
		for it.First(); it.Valid(); it.Next() {
			if err := Interrupted(ctx, "validate", coll.Name); err != nil {
				it.Close()
				return res, err
			}
			res.KeysPerIndex[i]++
			entry, idKey := it.Key(), bytes.Clone(it.Value())
			v, closer, err := snap.Get(append(docPrefix(coll.ID), idKey...))
			if errors.Is(err, pebble.ErrNotFound) {
				res.ExtraIndexEntries++
				report(&res.IndexErrors[i], "an index entry names a document that does not exist")
				continue
			}
			if err != nil {
				it.Close()
				return res, err
			}
			doc := bson.Raw(bytes.Clone(v))
			closer.Close()
			if checkDoc(doc) != nil {
				continue // reported with the documents
			}
			keys, err := expected(i, doc, idKey)
			found := false
			for _, k := range keys {
				if bytes.Equal(k, entry) {
					found = true
					break
				}
			}
			if err == nil && !found {
				res.ExtraIndexEntries++
				report(&res.IndexErrors[i], "an index entry does not match the document it names")
			}
		}
		if err := it.Close(); err != nil {
			return res, err
		}
	}

	if coll.Capped() {
		if err := validateCapped(ctx, snap, coll, res.NRecords, dataSize, func(format string, args ...any) {
			report(&res.Errors, format, args...)
		}); err != nil {
			return res, err
		}
	}
	for i := range coll.Indexes {
		for _, msg := range res.IndexErrors[i] {
			report(&res.Errors, "index %s: %s", coll.Indexes[i].Name, msg)
		}
	}
	if res.NonCompliant > 0 {
		report(&res.Warnings, "Detected %d document(s) not compliant with the collection's schema (its validator)", res.NonCompliant)
	}
	if res.CorruptRecords > 0 {
		report(&res.Warnings, "Detected %d invalid document(s) in the collection", res.CorruptRecords)
	}
	return res, nil
}

// idIndexOf is the position of the _id index in coll.Indexes (it is
// always there).
func idIndexOf(coll *Collection) int {
	for i, ix := range coll.Indexes {
		if ix.ID == 0 {
			return i
		}
	}
	return 0
}

// validateCapped checks a capped collection's insertion-order records and
// running totals against its documents.
func validateCapped(ctx context.Context, snap *pebble.Snapshot, coll *Collection, n, size int64, report func(string, ...any)) error {
	var natural int64
	np := naturalPrefix(coll.ID)
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: np, UpperBound: prefixEnd(np)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := Interrupted(ctx, "validate", coll.Name); err != nil {
			it.Close()
			return err
		}
		natural++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if natural != n {
		report("capped collection: %d insertion-order records for %d documents", natural, n)
	}
	v, closer, err := snap.Get(cappedStateKey(coll.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		if n != 0 {
			report("capped collection: no totals record for %d documents", n)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if len(v) != 24 {
		report("capped collection: damaged totals record (%d bytes)", len(v))
		return nil
	}
	if c, b := int64(binary.BigEndian.Uint64(v[8:])), int64(binary.BigEndian.Uint64(v[16:])); c != n || b != size {
		report("capped collection: totals record %d documents, %d bytes; found %d documents, %d bytes", c, b, n, size)
	}
	return nil
}
