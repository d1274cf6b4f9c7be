package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// pathMode selects how a path that ends on an array is expanded.
type pathMode int8

const (
	// leafExpand yields each element of a leaf array and then the array
	// itself; this is what plain query predicates see ({a: 1} matches
	// a: [1, 2] and {a: [1, 2]} matches it too).
	leafExpand pathMode = iota
	// leafWhole yields a leaf array only as a whole ($elemMatch, $size).
	leafWhole
	// leafElems yields only the elements of a leaf array, and undefined
	// for an empty one (sort keys: an empty array sorts before null).
	leafElems
)

func splitPath(p string) []string { return strings.Split(p, ".") }

// walkPath calls fn with every value the dotted path reaches in doc,
// following MongoDB's ElementPath rules: arrays met before the last
// component are traversed (documents inside them are searched for the rest
// of the path, and a numeric component also selects that array position);
// a path that leads nowhere inside a document yields the missing value.
// fn returns true to stop; walkPath reports whether it was stopped.
func walkPath(doc []byte, parts []string, mode pathMode, fn func(bson.RawValue) bool) bool {
	return walkDoc(doc, parts, mode, fn)
}

func walkDoc(doc []byte, parts []string, mode pathMode, fn func(bson.RawValue) bool) bool {
	v, ok := lookup(doc, parts[0])
	if !ok {
		return fn(missing)
	}
	return walkValue(v, parts[1:], mode, fn)
}

func walkValue(v bson.RawValue, rest []string, mode pathMode, fn func(bson.RawValue) bool) bool {
	if len(rest) == 0 {
		if v.Type != bson.TypeArray || mode == leafWhole {
			return fn(v)
		}
		empty := true
		if forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			empty = false
			return fn(e)
		}) {
			return true
		}
		switch mode {
		case leafExpand:
			return fn(v)
		case leafElems:
			if empty {
				return fn(rvUndefined)
			}
		}
		return false
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return walkDoc(v.Value, rest, mode, fn)
	case bson.TypeArray:
		idx, isIdx := arrayIndex(rest[0])
		i := 0
		return forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			if e.Type == bson.TypeEmbeddedDocument && walkDoc(e.Value, rest, mode, fn) {
				return true
			}
			if isIdx && i == idx && walkValue(e, rest[1:], mode, fn) {
				return true
			}
			i++
			return false
		})
	}
	return fn(missing)
}

// getPath returns the single value at a dotted path without any array
// traversal except explicit numeric indexes; it is what the aggregation
// field path "$a.b" needs when no arrays are involved, and what the upsert
// and index helpers use.
func getPath(doc []byte, parts []string) bson.RawValue {
	cur := rvDoc(doc)
	for _, p := range parts {
		switch cur.Type {
		case bson.TypeEmbeddedDocument:
			v, ok := lookup(cur.Value, p)
			if !ok {
				return missing
			}
			cur = v
		case bson.TypeArray:
			i, ok := arrayIndex(p)
			if !ok {
				return missing
			}
			v, ok := arrayAt(cur.Value, i)
			if !ok {
				return missing
			}
			cur = v
		default:
			return missing
		}
	}
	return cur
}

func arrayAt(arr []byte, idx int) (bson.RawValue, bool) {
	i := 0
	var out bson.RawValue
	found := forEachElem(arr, func(_ []byte, e bson.RawValue) bool {
		if i == idx {
			out = e
			return true
		}
		i++
		return false
	})
	return out, found
}
