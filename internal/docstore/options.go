package docstore

import (
	"bytes"
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// CollOptions are the options a collection was created with (and collMod
// changed), as listCollections reports them.
type CollOptions struct {
	Capped bool `bson:"capped,omitempty"`
	// Size is the capped collection's bound in bytes (the sum of its
	// documents' BSON sizes), Max its optional bound in documents (0: none).
	Size int64 `bson:"size,omitempty"`
	Max  int64 `bson:"max,omitempty"`
	// Validator is a query filter every inserted or updated document must
	// match, subject to ValidationLevel ("strict", "moderate", "off"; empty
	// means strict) and ValidationAction ("error", "warn"; empty: error).
	Validator        bson.Raw `bson:"validator,omitempty"`
	ValidationLevel  string   `bson:"validationLevel,omitempty"`
	ValidationAction string   `bson:"validationAction,omitempty"`
}

// Equal reports whether two option sets are the same (create on an existing
// collection with the same options succeeds, as in mongod).
func (o CollOptions) Equal(p CollOptions) bool {
	return o.Capped == p.Capped && o.Size == p.Size && o.Max == p.Max &&
		bytes.Equal(o.Validator, p.Validator) && o.level() == p.level() && o.action() == p.action()
}

func (o CollOptions) level() string {
	if o.ValidationLevel == "" {
		return "strict"
	}
	return o.ValidationLevel
}

func (o CollOptions) action() string {
	if o.ValidationAction == "" {
		return "error"
	}
	return o.ValidationAction
}

// Document renders the options as listCollections shows them.
func (o CollOptions) Document() bson.D {
	var d bson.D
	if o.Capped {
		d = append(d, bson.E{Key: "capped", Value: true}, bson.E{Key: "size", Value: o.Size})
		if o.Max > 0 {
			d = append(d, bson.E{Key: "max", Value: o.Max})
		}
	}
	if len(o.Validator) > 0 {
		d = append(d, bson.E{Key: "validator", Value: o.Validator})
	}
	if len(o.Validator) > 0 || o.ValidationLevel != "" {
		d = append(d, bson.E{Key: "validationLevel", Value: o.level()})
	}
	if len(o.Validator) > 0 || o.ValidationAction != "" {
		d = append(d, bson.E{Key: "validationAction", Value: o.action()})
	}
	if d == nil {
		d = bson.D{}
	}
	return d
}

// Check validates option values (the handlers parse types and mongod's
// command-level rules; these are the invariants storage relies on).
func (o CollOptions) Check() error {
	if o.Capped && (o.Size < 1 || o.Size > MaxCappedSize) {
		return mongoerr.New(mongoerr.BadValue, "capped collection size must be between 1 and %d", int64(MaxCappedSize))
	}
	switch o.ValidationLevel {
	case "", "strict", "moderate", "off":
	default:
		return mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field 'validationLevel' is not a valid value.", o.ValidationLevel)
	}
	switch o.ValidationAction {
	case "", "error", "warn":
	default:
		return mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field 'validationAction' is not a valid value.", o.ValidationAction)
	}
	_, err := compileValidator(o.Validator)
	return err
}

// CreateCollectionWithOptions creates an empty collection with options. It
// fails with NamespaceExists if the collection exists with other options;
// with the same options it returns the existing collection (mongod's create
// is idempotent that way).
func (s *Store) CreateCollectionWithOptions(name string, opts CollOptions) (*Collection, error) {
	if err := opts.Check(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.catalog().colls[name]; ok {
		if c.Options.Equal(opts) {
			return c, nil
		}
		return nil, mongoerr.New(mongoerr.NamespaceExists, "Collection %s.%s already exists.", s.db.Name, name)
	}
	return s.createLockedWith(name, opts)
}

// ValidationChange is what collMod asks to change; nil fields stay.
type ValidationChange struct {
	Validator        *bson.Raw
	ValidationLevel  *string
	ValidationAction *string
}

// ChangeValidation applies a collMod's validation changes and returns the
// options before and after.
func (s *Store) ChangeValidation(name string, ch ValidationChange) (before, after CollOptions, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cat := s.catalog()
	c, ok := cat.colls[name]
	if !ok {
		return before, after, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", s.db.Name, name)
	}
	nc := *c
	if ch.Validator != nil {
		nc.Options.Validator = *ch.Validator
		if len(nc.Options.Validator) <= 5 {
			nc.Options.Validator = nil
		}
	}
	if ch.ValidationLevel != nil {
		nc.Options.ValidationLevel = *ch.ValidationLevel
	}
	if ch.ValidationAction != nil {
		nc.Options.ValidationAction = *ch.ValidationAction
	}
	if err := nc.Options.Check(); err != nil {
		return before, after, err
	}
	if err := nc.compile(); err != nil {
		return before, after, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.putCatalog(b, &nc, cat.next); err != nil {
		return before, after, err
	}
	if err := s.commitLocked(context.Background(), b, cat.with(name, &nc, cat.next)); err != nil {
		return before, after, fmt.Errorf("docstore: collMod: %w", err)
	}
	return c.Options, nc.Options, nil
}
