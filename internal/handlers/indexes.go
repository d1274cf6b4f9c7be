package handlers

import (
	"context"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// parseIndexSpec reads one entry of createIndexes.indexes.
func parseIndexSpec(v bson.RawValue) (docstore.IndexSpec, error) {
	var spec docstore.IndexSpec
	d, ok := v.DocumentOK()
	if !ok {
		return spec, mongoerr.New(mongoerr.TypeMismatch, "The elements of the 'indexes' array must be objects, but found %s", typeName(v.Type))
	}
	elems, err := d.Elements()
	if err != nil {
		return spec, mongoerr.New(mongoerr.BadValue, "invalid index specification: %v", err)
	}
	var keyDoc bson.Raw
	var textOpts []bson.RawElement
	for _, e := range elems {
		ev := e.Value()
		switch k := e.Key(); k {
		case "key":
			if keyDoc, ok = ev.DocumentOK(); !ok {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'key' must be an object, but got %s", typeName(ev.Type))
			}
		case "name":
			if spec.Name, ok = ev.StringValueOK(); !ok {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'name' must be a string, but got %s", typeName(ev.Type))
			}
			if spec.Name == "" {
				return spec, mongoerr.New(mongoerr.CannotCreateIndex, "The index name cannot be empty")
			}
		case "unique", "sparse":
			if !isNumberType(ev.Type) && ev.Type != bson.TypeBoolean {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field '%s has value %s, which is not convertible to bool", k, ev.String())
			}
			if k == "unique" {
				spec.Unique = truthy(ev)
			} else {
				spec.Sparse = truthy(ev)
			}
		case "hidden":
			if ev.Type != bson.TypeBoolean {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'hidden' must be a bool, but got %s", typeName(ev.Type))
			}
			spec.Hidden = ev.Boolean()
		case "expireAfterSeconds":
			secs, err := ttlSeconds(ev, mongoerr.CannotCreateIndex, mongoerr.CannotCreateIndex)
			if err != nil {
				return spec, err
			}
			spec.TTL, spec.ExpireAfterSeconds = true, secs
		case "partialFilterExpression":
			pf, ok := ev.DocumentOK()
			if !ok {
				return spec, mongoerr.New(mongoerr.TypeMismatch, "The field 'partialFilterExpression' must be an object, but got %s", typeName(ev.Type))
			}
			if err := checkPartialFilter(pf, 0); err != nil {
				return spec, err
			}
			spec.PartialFilter = pf
		case "v", "ns", "background", "storageEngine", "comment":
			// Accepted and ignored, as mongod ignores background.
		case "collation":
			if err := checkCollation(ev); err != nil {
				return spec, err
			}
		case "weights", "default_language", "language_override", "textIndexVersion":
			textOpts = append(textOpts, e) // textindex.go
		case "2dsphereIndexVersion", "bits", "min", "max",
			"wildcardProjection", "bucketSize", "clustered", "prepareUnique":
			return spec, mongoerr.New(mongoerr.NotImplemented, "index option '%s' is not supported", k)
		default:
			return spec, mongoerr.New(mongoerr.InvalidIndexSpecOption, "The field '%s' is not valid for an index specification. Specification: %s", k, d.String())
		}
	}
	if keyDoc == nil {
		return spec, mongoerr.New(mongoerr.FailedToParse, "The 'key' field is a required property of an index specification")
	}
	if err := bson.Unmarshal(keyDoc, &spec.Key); err != nil {
		return spec, mongoerr.New(mongoerr.BadValue, "invalid index key pattern: %v", err)
	}
	if len(spec.Key) == 0 {
		return spec, mongoerr.New(mongoerr.CannotCreateIndex, "Index keys cannot be empty.")
	}
	for _, e := range spec.Key {
		if e.Key == "" || strings.HasPrefix(e.Key, ".") || strings.HasSuffix(e.Key, ".") || strings.Contains(e.Key, "..") {
			return spec, mongoerr.New(mongoerr.CannotCreateIndex, "Index key contains an illegal field name: '%s'", e.Key)
		}
		if strings.Contains(e.Key, "$") {
			if e.Key == fts.Wildcard && e.Value == "text" {
				continue
			}
			if strings.HasSuffix(e.Key, "$**") {
				return spec, mongoerr.New(mongoerr.NotImplemented, "wildcard indexes are not supported")
			}
			return spec, mongoerr.New(mongoerr.CannotCreateIndex, "Index key contains an illegal field name: field name starts with '$'.")
		}
		switch n := e.Value.(type) {
		case int32:
			if n == 0 {
				return spec, badKeyValue(e)
			}
		case int64:
			if n == 0 {
				return spec, badKeyValue(e)
			}
		case float64:
			if n == 0 || math.IsNaN(n) {
				return spec, badKeyValue(e)
			}
		case string:
			// Special index types: docstore answers NotImplemented.
		default:
			return spec, badKeyValue(e)
		}
	}
	if spec, err = textIndexSpec(spec, textOpts); err != nil {
		return spec, err
	}
	if spec.Name == "" {
		spec.Name = docstore.DefaultIndexName(spec.Key)
	}
	if isIDIndexKey(spec.Key) {
		for _, k := range []string{"unique", "sparse", "expireAfterSeconds", "partialFilterExpression", "hidden"} {
			if _, err := d.LookupErr(k); err == nil {
				if k == "hidden" {
					return spec, mongoerr.New(mongoerr.BadValue, "can't hide _id index")
				}
				return spec, mongoerr.New(mongoerr.InvalidIndexSpecOption, "The field '%s' is not valid for an _id index specification. Specification: %s", k, d.String())
			}
		}
	}
	if spec.TTL && len(spec.Key) > 1 {
		return spec, mongoerr.New(mongoerr.CannotCreateIndex, "TTL indexes are single-field indexes, compound indexes do not support TTL. Index spec: %s", d.String())
	}
	return spec, nil
}

func isNumberType(t bson.Type) bool {
	return t == bson.TypeInt32 || t == bson.TypeInt64 || t == bson.TypeDouble || t == bson.TypeDecimal128
}

// ttlSeconds reads an expireAfterSeconds with mongod's rules: a number
// holding an integer (a fraction is truncated) in [0, 2^31-1]. A
// non-number or NaN fails with typeCode, a value outside int32 or negative
// with rangeCode (createIndexes: CannotCreateIndex for both; collMod:
// TypeMismatch and InvalidOptions), as mongod's validateExpireAfterSeconds.
func ttlSeconds(v bson.RawValue, typeCode, rangeCode mongoerr.Code) (int64, error) {
	var f float64
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := v.AsInt64OK()
		f = float64(n)
	case bson.TypeDouble:
		f = v.Double()
	case bson.TypeDecimal128:
		d, err := strconv.ParseFloat(v.Decimal128().String(), 64)
		if err != nil {
			d = math.NaN()
		}
		f = d
	default:
		return 0, mongoerr.New(typeCode, "TTL index 'expireAfterSeconds' option must be numeric, but received a type of '%s'", typeName(v.Type))
	}
	if math.IsNaN(f) {
		return 0, mongoerr.New(typeCode, "TTL index 'expireAfterSeconds' option must not be NaN")
	}
	f = math.Trunc(f)
	if f < math.MinInt32 || f > math.MaxInt32 {
		return 0, mongoerr.New(rangeCode, "TTL index 'expireAfterSeconds' must be within the range of a 32-bit integer")
	}
	if f < 0 {
		return 0, mongoerr.New(rangeCode, "TTL index 'expireAfterSeconds' option cannot be less than 0")
	}
	return int64(f), nil
}

// checkPartialFilter applies mongod 7.0's rules for a
// partialFilterExpression: a filter made only of equalities, $eq, $exists:
// true, $gt/$gte/$lt/$lte, $type and $in on fields, under $and and $or
// (at most four levels deep); anything else fails with 67.
func checkPartialFilter(f bson.Raw, depth int) error {
	if _, err := query.Compile(f); err != nil {
		return err
	}
	bad := func(what string) error {
		return mongoerr.New(mongoerr.CannotCreateIndex, "Expression not supported in partial index: %s", what)
	}
	if depth > 4 {
		return bad("$and/$or nested too deep")
	}
	elems, _ := f.Elements()
	for _, e := range elems {
		k, v := e.Key(), e.Value()
		switch k {
		case "$and", "$or":
			vals, _ := v.Array().Values()
			for _, sub := range vals {
				if err := checkPartialFilter(sub.Document(), depth+1); err != nil {
					return err
				}
			}
			continue
		}
		if strings.HasPrefix(k, "$") {
			return bad(k)
		}
		if v.Type == bson.TypeRegex {
			return bad(k + " regex")
		}
		d, ok := v.DocumentOK()
		if !ok {
			continue
		}
		ops, _ := d.Elements()
		if len(ops) == 0 || !strings.HasPrefix(ops[0].Key(), "$") {
			continue // an equality with a document
		}
		for _, op := range ops {
			switch op.Key() {
			case "$eq", "$gt", "$gte", "$lt", "$lte", "$type", "$in":
			case "$exists":
				if !truthy(op.Value()) {
					return bad(k + " $exists: false")
				}
			default:
				return bad(k + " " + op.Key())
			}
		}
	}
	return nil
}

func badKeyValue(e bson.E) error {
	return mongoerr.New(mongoerr.CannotCreateIndex, "Values in v:2 index key pattern cannot be of type %T. Only numbers > 0, numbers < 0, and strings are allowed.", e.Value)
}

func truthy(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean()
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		return v.AsFloat64() != 0
	case bson.TypeNull, bson.TypeUndefined, 0:
		return false
	}
	return true
}

// sameKey reports whether two key patterns are equal (numbers by value).
func sameKey(a, b bson.D) bool {
	ra, err1 := bson.Marshal(a)
	rb, err2 := bson.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return query.Compare(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: ra},
		bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: rb}) == 0
}

func isIDIndexKey(key bson.D) bool {
	return sameKey(key, bson.D{{Key: "_id", Value: int32(1)}})
}

func (h *Handler) createIndexes(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := docstore.ValidateCollectionName(collName); err != nil {
		return nil, err
	}
	if !a.has("indexes") {
		return nil, mongoerr.New(codeMissingField, "BSON field 'createIndexes.indexes' is missing but a required field")
	}
	raw, err := a.array("indexes")
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "Must specify at least one index to create")
	}
	var specs []docstore.IndexSpec
	for _, v := range raw {
		spec, err := parseIndexSpec(v)
		if err != nil {
			return nil, err
		}
		if isIDIndexKey(spec.Key) && (spec.Name == "_id_") {
			continue // the _id index always exists
		}
		for _, prev := range specs {
			if prev.Name == spec.Name {
				return nil, mongoerr.New(mongoerr.IndexKeySpecsConflict, "Index with name: %s already exists with different options", spec.Name)
			}
		}
		specs = append(specs, spec)
	}
	st, release, err := h.store(req.DB, true)
	if err != nil {
		return nil, err
	}
	defer release()
	existed := st.Collection(collName) != nil
	coll, err := st.EnsureCollection(collName)
	if err != nil {
		return nil, err
	}
	before := len(coll.Indexes)
	var created []string
	for _, spec := range specs {
		ok, err := st.CreateIndex(ctx, collName, spec)
		if err != nil {
			// All or nothing, as mongod: undo this command's indexes.
			for _, name := range created {
				_ = st.DropIndex(collName, name)
			}
			return nil, err
		}
		if ok {
			created = append(created, spec.Name)
		}
	}
	after := before
	if cur := st.Collection(collName); cur != nil {
		after = len(cur.Indexes)
	}
	reply := bson.D{
		{Key: "createdCollectionAutomatically", Value: !existed},
		{Key: "numIndexesBefore", Value: int32(before)},
		{Key: "numIndexesAfter", Value: int32(after)},
	}
	if len(created) == 0 {
		reply = append(reply, bson.E{Key: "note", Value: "all indexes already exist"})
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}

// indexDoc is an index as listIndexes shows it.
func indexDoc(ix *docstore.Index) bson.D {
	d := bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: ix.Key}, {Key: "name", Value: ix.Name}}
	return appendTextOptions(append(d, ix.Options()...), ix)
}

func (h *Handler) listIndexes(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	cur, err := a.doc("cursor")
	if err != nil {
		return nil, err
	}
	batchSize, err := cursorOptionBatchSize(cur, "listIndexes")
	if err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	release()
	if coll == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", req.DB, collName)
	}
	docs := make([]bson.Raw, 0, len(coll.Indexes))
	for i := range coll.Indexes {
		raw, err := bson.Marshal(indexDoc(&coll.Indexes[i]))
		if err != nil {
			return nil, err
		}
		docs = append(docs, raw)
	}
	return h.firstBatch(ctx, req.DB+".$cmd.listIndexes."+collName, c, &sliceSource{docs: docs}, batchSize)
}

func (h *Handler) dropIndexes(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	iv, ok := a.value("index")
	if !ok {
		return nil, mongoerr.New(codeMissingField, "BSON field 'dropIndexes.index' is missing but a required field")
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	if coll == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns not found %s.%s", req.DB, collName)
	}
	var names []string
	switch iv.Type {
	case bson.TypeString:
		names = []string{iv.StringValue()}
	case bson.TypeEmbeddedDocument:
		var key bson.D
		if err := bson.Unmarshal(iv.Document(), &key); err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "invalid index key pattern: %v", err)
		}
		for i := range coll.Indexes {
			if sameKey(coll.Indexes[i].Key, key) {
				names = []string{coll.Indexes[i].Name}
				break
			}
		}
		if names == nil {
			return nil, mongoerr.New(mongoerr.IndexNotFound, "can't find index with key: %s", iv.Document().String())
		}
	case bson.TypeArray:
		vals, _ := iv.Array().Values()
		for _, v := range vals {
			s, ok := v.StringValueOK()
			if !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "dropIndexes %s.%s failed to drop multiple indexes: each index name must be a string", req.DB, collName)
			}
			if s == "*" {
				return nil, mongoerr.New(mongoerr.BadValue, "'*' is not allowed in an index list")
			}
			names = append(names, s)
		}
	default:
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'dropIndexes.index' is the wrong type '%s', expected types '[string, object, array]'", typeName(iv.Type))
	}
	// Check every name before dropping any, so a bad list changes nothing.
	for _, name := range names {
		if name == "*" {
			continue
		}
		if name == "_id_" {
			return nil, mongoerr.New(mongoerr.InvalidOptions, "cannot drop _id index")
		}
		found := false
		for i := range coll.Indexes {
			found = found || coll.Indexes[i].Name == name
		}
		if !found {
			return nil, mongoerr.New(mongoerr.IndexNotFound, "index not found with name [%s]", name)
		}
	}
	for _, name := range names {
		if err := st.DropIndex(collName, name); err != nil {
			return nil, err
		}
	}
	reply := bson.D{{Key: "nIndexesWas", Value: int32(len(coll.Indexes))}}
	if len(names) == 1 && names[0] == "*" {
		reply = append(reply, bson.E{Key: "msg", Value: "non-_id indexes dropped for collection"})
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}
