package docstore

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// CannotIndexParallelArrays is MongoDB's code 171.
const cannotIndexParallelArrays mongoerr.Code = 171

var nullValue = bson.RawValue{Type: bson.TypeNull}

// pathValues returns the values an index on path holds for doc, as MongoDB
// extracts them: arrays along the path are traversed, an array at the end
// contributes each element (a multikey index), and a missing field is null.
// isArray reports whether an array was expanded.
func pathValues(doc bson.Raw, path string) (vals []bson.RawValue, isArray bool) {
	var walk func(v bson.RawValue, parts []string)
	walk = func(v bson.RawValue, parts []string) {
		if len(parts) == 0 {
			if v.Type == bson.TypeArray {
				isArray = true
				elems, _ := v.Array().Values()
				if len(elems) == 0 {
					vals = append(vals, bson.RawValue{Type: bson.TypeUndefined})
				}
				vals = append(vals, elems...)
				return
			}
			vals = append(vals, v)
			return
		}
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			next, err := v.Document().LookupErr(parts[0])
			if err != nil {
				vals = append(vals, nullValue)
				return
			}
			walk(next, parts[1:])
		case bson.TypeArray:
			isArray = true
			elems, _ := v.Array().Values()
			found := false
			for _, e := range elems {
				if e.Type == bson.TypeEmbeddedDocument {
					found = true
					walk(e, parts)
				}
			}
			if !found {
				vals = append(vals, nullValue)
			}
		default:
			vals = append(vals, nullValue)
		}
	}
	walk(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}, strings.Split(path, "."))
	return dedupe(vals), isArray
}

func dedupe(vals []bson.RawValue) []bson.RawValue {
	if len(vals) < 2 {
		return vals
	}
	out := vals[:0:0]
	for _, v := range vals {
		dup := false
		for _, o := range out {
			if query.Compare(v, o) == 0 && v.Type == o.Type {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out
}

// indexEntries returns the encoded key tuples doc contributes to ix: one
// per combination of values, at most one field being an array.
func indexEntries(doc bson.Raw, ix *Index) ([][]byte, [][]bson.RawValue, error) {
	paths, dirs := ix.Fields()
	per := make([][]bson.RawValue, len(paths))
	arrays := 0
	for i, p := range paths {
		vals, isArray := pathValues(doc, p)
		if isArray {
			arrays++
		}
		per[i] = vals
	}
	if arrays > 1 {
		return nil, nil, mongoerr.New(cannotIndexParallelArrays, "cannot index parallel arrays [%s]", strings.Join(paths, "] ["))
	}
	tuples := [][]bson.RawValue{{}}
	for _, vals := range per {
		var next [][]bson.RawValue
		for _, t := range tuples {
			for _, v := range vals {
				next = append(next, append(append([]bson.RawValue(nil), t...), v))
			}
		}
		tuples = next
	}
	keys := make([][]byte, len(tuples))
	for i, t := range tuples {
		keys[i] = query.EncodeIndexKey(t, dirs)
	}
	return keys, tuples, nil
}
