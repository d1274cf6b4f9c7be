package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// UpsertDocument builds the document an upsert inserts when filter matched
// nothing, following MongoDB's rules:
//
//   - operator updates start from the filter's equality conditions
//     (field: value, field: {$eq: value}, and those inside top-level $and),
//     with dotted paths expanded into embedded documents, and then apply
//     the update with $setOnInsert enabled;
//   - replacement updates insert the replacement, taking _id from the
//     filter when the replacement has none;
//   - if there is still no _id, a new ObjectId is generated; _id is always
//     the first field.
func UpsertDocument(filter bson.Raw, u *Update, opts ApplyOptions) (bson.Raw, error) {
	if len(filter) > 0 {
		if err := validateDoc(filter); err != nil {
			return nil, badValue("invalid filter document: %v", err)
		}
	}
	opts.Insert = true
	base := &mdoc{}
	eqs, err := equalityFields(filter, nil, 0)
	if err != nil {
		return nil, err
	}
	for i := range eqs {
		for j := i + 1; j < len(eqs); j++ {
			a, b := eqs[i].path, eqs[j].path
			if a == b || strings.HasPrefix(a, b+".") || strings.HasPrefix(b, a+".") {
				return nil, mongoerr.New(mongoerr.NotSingleValueField, "cannot infer query fields to set, both paths '%s' and '%s' are matched", a, b)
			}
		}
	}
	a := &applier{root: base, opts: opts}
	for _, eq := range eqs {
		if u.replacement != nil && eq.path != "_id" {
			continue
		}
		if strings.HasPrefix(eq.path, "$") || strings.Contains(eq.path, ".$") {
			continue
		}
		if pathParts(eq.path) > maxMatchPathParts {
			return nil, mongoerr.New(codeMatchPathLong, "FieldPath is too long")
		}
		parts := splitPath(eq.path)
		val := eq.val
		if err := a.resolve(parts, true, func(s slot) error { s.set(mustDecode(val)); return nil }); err != nil {
			return nil, err
		}
	}
	out, _, err := u.Apply(base.encode(), opts)
	if err != nil {
		return nil, err
	}
	root, err := decodeDoc(out)
	if err != nil {
		return nil, err
	}
	if _, ok := root.get("_id"); !ok {
		oid := bson.NewObjectID()
		root.fields = append([]mfield{{key: "_id", val: bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}}}, root.fields...)
	}
	moveIDFirst(root)
	return root.encode(), nil
}

type eqField struct {
	path string
	val  bson.RawValue
}

// equalityFields extracts the equality predicates MongoDB copies into an
// upserted document.
func equalityFields(filter []byte, out []eqField, depth int) ([]eqField, error) {
	if depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing the query", maxFilterDepth)
	}
	for _, e := range elems(filter) {
		if e.key == "$and" && e.val.Type == bson.TypeArray {
			for _, sub := range arrayValues(e.val.Value) {
				if sub.Type == bson.TypeEmbeddedDocument {
					var err error
					if out, err = equalityFields(sub.Value, out, depth+1); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		if strings.HasPrefix(e.key, "$") {
			continue
		}
		switch {
		case e.val.Type == bson.TypeRegex:
		case isOperatorDoc(e.val):
			if v, ok := lookup(e.val.Value, "$eq"); ok {
				out = append(out, eqField{e.key, v})
			}
		default:
			out = append(out, eqField{e.key, e.val})
		}
	}
	return out, nil
}
