// Package docstore keeps a database's collections, documents and secondary
// indexes in that database's Pebble instance. It knows MongoDB's data model
// (documents with an _id, collections, unique and multikey indexes) but not
// the wire protocol or the query language beyond what index maintenance and
// planning need (those are internal/query's).
//
// Key layout inside a database's Pebble instance:
//
//	"\x00c" + collection name                      -> collection metadata (BSON)
//	"\x00n"                                        -> next collection/index id (u32 BE)
//	"\x01" + coll id (u32 BE) + key(_id)           -> the document (BSON)
//	"\x02" + coll id + index id (u32 BE) + key(values) [+ key(_id) unless unique]
//	                                               -> key(_id)
//	"\x00s" + coll id                              -> capped totals (capped.go)
//	"\x03" + coll id + seq (u64 BE)                -> key(_id), capped insertion order
//	"\x04" + coll id + key(_id)                    -> seq
//
// key(...) is query.EncodeIndexKey: order-preserving, so range scans over
// index entries follow MongoDB's comparison order. Every write of a
// document and its index entries is one Pebble batch, committed with sync:
// an acknowledged write is durable and a crash never separates a document
// from its index entries.
package docstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/storage"
)

const (
	prefixCatalog = 0x00
	prefixDoc     = 0x01
	prefixIndex   = 0x02
)

var keyNextID = []byte{prefixCatalog, 'n'}

// Store is one database's documents. Reads are lock-free (Pebble
// iterators); writes are serialized by mu, which makes unique-index checks
// and the check-then-write of an update atomic.
type Store struct {
	db *storage.DB
	// WriteOptions is pebble.Sync: acknowledged writes survive kill -9.
	sync *pebble.WriteOptions

	// mu serializes writes and catalog changes: a writer checks and stages
	// against the state every earlier write left, and commits before the
	// next one starts.
	mu sync.Mutex
	// cat is the current catalog, replaced whole (never mutated) once a
	// catalog change is committed, so readers need no lock and a
	// replicated apply can publish it while a writer holds mu.
	cat atomic.Pointer[catalog]
	// log, when set, replicates every committed batch (a replica set);
	// nil on a standalone node.
	log Log

	// txnLocks are the keys open transactions wrote (txn.go).
	txnLocks txnLocks

	nmu      sync.Mutex
	notifyCh chan struct{} // closed and cleared by the next commit; nil: nobody waits

	// Logger, if set, receives validationAction "warn" warnings.
	Logger *slog.Logger
}

// catalog is one version of a database's collections and the next free
// collection/index id. Immutable once published.
type catalog struct {
	colls map[string]*Collection
	next  uint32
}

// with returns a copy of c with coll set (nil: removed under name) and next.
func (c *catalog) with(name string, coll *Collection, next uint32) *catalog {
	nc := &catalog{colls: make(map[string]*Collection, len(c.colls)+1), next: next}
	for k, v := range c.colls {
		nc.colls[k] = v
	}
	if coll == nil {
		delete(nc.colls, name)
	} else {
		nc.colls[name] = coll
	}
	return nc
}

// Collection is a collection's metadata. It is immutable once published:
// catalog changes publish a new catalog.
type Collection struct {
	Name    string      `bson:"name"`
	ID      uint32      `bson:"id"`
	Created time.Time   `bson:"created"`
	UUID    bson.Binary `bson:"uuid"`
	Indexes []Index     `bson:"indexes"`
	// Options are the create/collMod options (capped, validator).
	Options CollOptions `bson:"options,omitempty"`

	validator *query.Matcher // compiled Options.Validator, nil if none
}

// Index is a secondary index (or the implicit _id index, ID 0).
type Index struct {
	Name   string `bson:"name"`
	ID     uint32 `bson:"id"`
	Key    bson.D `bson:"key"`
	Unique bool   `bson:"unique,omitempty"`
	// Sparse indexes hold no entry for a document that has none of the
	// indexed fields.
	Sparse bool `bson:"sparse,omitempty"`
	// TTL marks a TTL index: the monitor deletes documents whose indexed
	// date (the earliest, for an array) is more than ExpireAfterSeconds
	// old.
	TTL                bool  `bson:"ttl,omitempty"`
	ExpireAfterSeconds int64 `bson:"expireAfterSeconds,omitempty"`
	// PartialFilter, when set, is the partialFilterExpression: only the
	// documents it matches have entries.
	PartialFilter bson.Raw `bson:"partialFilterExpression,omitempty"`
	// Hidden indexes are maintained but never chosen by the planner.
	Hidden bool `bson:"hidden,omitempty"`
	// Text, for a text index (key {_fts: "text", _ftsx: 1}), is its
	// definition (text.go).
	Text *fts.Spec `bson:"text,omitempty"`

	partial *query.Matcher // compiled PartialFilter
}

// Options renders the index's options as listIndexes shows them (after
// v, key and name).
func (ix *Index) Options() bson.D {
	var d bson.D
	if ix.Unique && ix.ID != 0 {
		d = append(d, bson.E{Key: "unique", Value: true})
	}
	if ix.Sparse {
		d = append(d, bson.E{Key: "sparse", Value: true})
	}
	if ix.TTL {
		d = append(d, bson.E{Key: "expireAfterSeconds", Value: int32(ix.ExpireAfterSeconds)})
	}
	if len(ix.PartialFilter) > 0 {
		d = append(d, bson.E{Key: "partialFilterExpression", Value: ix.PartialFilter})
	}
	if ix.Hidden {
		d = append(d, bson.E{Key: "hidden", Value: true})
	}
	return d
}

// Spec is the IndexSpec that creates an index like ix.
func (ix *Index) Spec() IndexSpec {
	return IndexSpec{Name: ix.Name, Key: ix.Key, Unique: ix.Unique, Sparse: ix.Sparse, TTL: ix.TTL,
		ExpireAfterSeconds: ix.ExpireAfterSeconds, PartialFilter: ix.PartialFilter, Hidden: ix.Hidden, Text: ix.Text}
}

// Covers reports whether doc has entries in ix: a partial index covers the
// documents its filter matches, a sparse one those with an indexed field.
func (ix *Index) Covers(doc bson.Raw) bool {
	if ix.partial != nil && !ix.partial.Match(doc) {
		return false
	}
	if ix.Sparse {
		paths, _ := ix.Fields()
		return query.HasAnyPath(doc, paths)
	}
	return true
}

// compile compiles the index's partial filter.
func (ix *Index) compile() error {
	ix.partial = nil
	if len(ix.PartialFilter) == 0 {
		return nil
	}
	m, err := query.Compile(ix.PartialFilter)
	if err != nil {
		return err
	}
	ix.partial = m
	return nil
}

// Fields returns the index's field paths and directions (1 or -1).
func (ix *Index) Fields() ([]string, []int) {
	paths := make([]string, len(ix.Key))
	dirs := make([]int, len(ix.Key))
	for i, e := range ix.Key {
		paths[i] = e.Key
		dirs[i] = 1
		switch v := e.Value.(type) {
		case int:
			if v < 0 {
				dirs[i] = -1
			}
		case int32:
			if v < 0 {
				dirs[i] = -1
			}
		case int64:
			if v < 0 {
				dirs[i] = -1
			}
		case float64:
			if v < 0 {
				dirs[i] = -1
			}
		}
	}
	return paths, dirs
}

// Open loads a database's catalog. With a log (a replica set member),
// every write and catalog change is committed through it instead of to the
// database directly; the log applies it (ApplyReplicated) on every member.
func Open(db *storage.DB, log Log) (*Store, error) {
	s := &Store{db: db, sync: pebble.Sync, log: log}
	cat, err := loadCatalog(db)
	if err != nil {
		return nil, err
	}
	s.cat.Store(cat)
	return s, nil
}

// loadCatalog reads the catalog a database holds.
func loadCatalog(db *storage.DB) (*catalog, error) {
	cat := &catalog{colls: map[string]*Collection{}, next: 1}
	if v, closer, err := db.Get(keyNextID); err == nil {
		if len(v) == 4 {
			cat.next = binary.BigEndian.Uint32(v)
		}
		closer.Close()
	} else if err != pebble.ErrNotFound {
		return nil, fmt.Errorf("docstore: %w", err)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixCatalog, 'c'}, UpperBound: []byte{prefixCatalog, 'c' + 1}})
	if err != nil {
		return nil, fmt.Errorf("docstore: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		var c Collection
		if err := bson.Unmarshal(it.Value(), &c); err != nil {
			return nil, fmt.Errorf("docstore: collection %q metadata: %w", it.Key()[2:], err)
		}
		if err := c.compile(); err != nil {
			return nil, fmt.Errorf("docstore: collection %q validator: %w", it.Key()[2:], err)
		}
		cat.colls[c.Name] = &c
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("docstore: read catalog: %w", err)
	}
	return cat, nil
}

// catalog returns the current catalog.
func (s *Store) catalog() *catalog { return s.cat.Load() }

// Name is the database name.
func (s *Store) Name() string { return s.db.Name }

// Collection returns a collection's metadata, or nil.
func (s *Store) Collection(name string) *Collection {
	return s.catalog().colls[name]
}

// Collections lists the collections, sorted by name.
func (s *Store) Collections() []*Collection {
	cat := s.catalog()
	out := make([]*Collection, 0, len(cat.colls))
	for _, c := range cat.colls {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func catalogKey(name string) []byte { return append([]byte{prefixCatalog, 'c'}, name...) }

func docPrefix(coll uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{prefixDoc}, coll)
}

func indexPrefix(coll, index uint32) []byte {
	b := binary.BigEndian.AppendUint32([]byte{prefixIndex}, coll)
	return binary.BigEndian.AppendUint32(b, index)
}

// prefixEnd is the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// CreateCollection creates an empty collection with its _id index. It fails
// with NamespaceExists if the collection exists.
func (s *Store) CreateCollection(name string) (*Collection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.catalog().colls[name]; ok {
		return nil, mongoerr.New(mongoerr.NamespaceExists, "Collection %s.%s already exists.", s.db.Name, name)
	}
	return s.createLocked(name)
}

// EnsureCollection returns the collection, creating it if needed (inserts
// and upserts create collections implicitly).
func (s *Store) EnsureCollection(name string) (*Collection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.catalog().colls[name]; ok {
		return c, nil
	}
	return s.createLocked(name)
}

func (s *Store) createLocked(name string) (*Collection, error) {
	return s.createLockedWith(name, CollOptions{})
}

func (s *Store) createLockedWith(name string, opts CollOptions) (*Collection, error) {
	if err := ValidateCollectionName(name); err != nil {
		return nil, err
	}
	uuid := bson.Binary{Subtype: 4, Data: make([]byte, 16)}
	rand.Read(uuid.Data)
	cat := s.catalog()
	c := &Collection{Name: name, ID: cat.next, Created: time.Now().UTC(), UUID: uuid,
		Indexes: []Index{{Name: "_id_", ID: 0, Key: bson.D{{Key: "_id", Value: int32(1)}}, Unique: true}},
		Options: opts}
	if err := c.compile(); err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.putCatalog(b, c, cat.next+1); err != nil {
		return nil, err
	}
	if err := s.commitLocked(context.Background(), b, cat.with(name, c, cat.next+1)); err != nil {
		return nil, fmt.Errorf("docstore: create collection: %w", err)
	}
	return c, nil
}

func (s *Store) putCatalog(b *pebble.Batch, c *Collection, next uint32) error {
	raw, err := bson.Marshal(c)
	if err != nil {
		return fmt.Errorf("docstore: encode collection: %w", err)
	}
	if err := b.Set(catalogKey(c.Name), raw, nil); err != nil {
		return err
	}
	return b.Set(keyNextID, binary.BigEndian.AppendUint32(nil, next), nil)
}

// DropCollection deletes a collection, its documents and its indexes.
func (s *Store) DropCollection(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.catalog()
	c, ok := cat.colls[name]
	if !ok {
		return mongoerr.New(mongoerr.NamespaceNotFound, "ns not found")
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(catalogKey(name), nil)
	b.DeleteRange(docPrefix(c.ID), prefixEnd(docPrefix(c.ID)), nil)
	for _, ix := range c.Indexes {
		p := indexPrefix(c.ID, ix.ID)
		b.DeleteRange(p, prefixEnd(p), nil)
	}
	dropCapped(b, c)
	if err := s.commitLocked(context.Background(), b, cat.with(name, nil, cat.next)); err != nil {
		return fmt.Errorf("docstore: drop collection: %w", err)
	}
	return nil
}

// RenameCollection renames a collection within this database. The data
// keys use the collection id, so only the catalog changes.
func (s *Store) RenameCollection(from, to string, dropTarget bool) error {
	s.mu.Lock()
	c, ok := s.catalog().colls[from]
	if !ok {
		s.mu.Unlock()
		return mongoerr.New(mongoerr.NamespaceNotFound, "Source collection %s.%s does not exist", s.db.Name, from)
	}
	if err := ValidateCollectionName(to); err != nil {
		s.mu.Unlock()
		return err
	}
	if _, exists := s.catalog().colls[to]; exists {
		if !dropTarget {
			s.mu.Unlock()
			return mongoerr.New(mongoerr.NamespaceExists, "target namespace exists")
		}
		s.mu.Unlock()
		if err := s.DropCollection(to); err != nil {
			return err
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	cat := s.catalog()
	if c, ok = cat.colls[from]; !ok {
		return mongoerr.New(mongoerr.NamespaceNotFound, "Source collection %s.%s does not exist", s.db.Name, from)
	}
	nc := *c
	nc.Name = to
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(catalogKey(from), nil)
	if err := s.putCatalog(b, &nc, cat.next); err != nil {
		return err
	}
	if err := s.commitLocked(context.Background(), b, cat.with(from, nil, cat.next).with(to, &nc, cat.next)); err != nil {
		return fmt.Errorf("docstore: rename collection: %w", err)
	}
	return nil
}

// ValidateCollectionName applies MongoDB's collection name rules.
func ValidateCollectionName(name string) error {
	switch {
	case name == "":
		return mongoerr.New(mongoerr.InvalidNamespace, "Invalid empty namespace specified")
	case len(name) > 255:
		return mongoerr.New(mongoerr.InvalidNamespace, "Fully qualified namespace is too long")
	case name[0] == '$' || containsByte(name, 0) || containsByte(name, '$'):
		return mongoerr.New(mongoerr.InvalidNamespace, "Invalid collection name: %s", name)
	}
	return nil
}

func containsByte(s string, c byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return true
		}
	}
	return false
}
