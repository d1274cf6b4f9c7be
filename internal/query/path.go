package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
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

// Path length limits, MongoDB's (BSONDepth): a field path of an
// expression, projection, sort or index key has at most
// maxFieldPathParts components (Overflow, "FieldPath is too long"); a
// query predicate's path at most maxMatchPathParts, the depth of a stored
// document (error 5729100). Counting dots before splitting keeps a hostile
// million-component path from costing more than one pass over its bytes.
const (
	maxFieldPathParts = 200
	maxMatchPathParts = 180
	codeMatchPathLong = mongoerr.Code(5729100)
)

// pathParts counts the components of a dotted path without splitting it.
func pathParts(p string) int { return strings.Count(p, ".") + 1 }

func errFieldPathTooLong() error {
	return mongoerr.New(mongoerr.Overflow, "FieldPath is too long")
}

// splitFieldPath splits an expression, projection, sort or index path,
// refusing one longer than maxFieldPathParts (counting prefix, the
// components of enclosing sub-documents) before allocating anything.
func splitFieldPath(prefix int, p string) ([]string, error) {
	if prefix+pathParts(p) > maxFieldPathParts {
		return nil, errFieldPathTooLong()
	}
	return splitPath(p), nil
}

// CheckFieldPathLength refuses a dotted field path (a distinct key, say)
// longer than MongoDB's FieldPath limit, before anything splits it.
func CheckFieldPathLength(p string) error {
	if pathParts(p) > maxFieldPathParts {
		return errFieldPathTooLong()
	}
	return nil
}

func splitPath(p string) []string { return strings.Split(p, ".") }

// visitor receives the values a path reaches. off is MongoDB's array
// offset: the position, in the outermost array the walk traversed
// implicitly, of the element the value came from, or -1. The filter
// matcher records it as the "elemMatchKey" a positional ($) update uses.
type visitor interface {
	visit(v bson.RawValue, off int) bool
}

// visitFunc adapts a plain callback that does not need offsets.
type visitFunc func(bson.RawValue) bool

func (f visitFunc) visit(v bson.RawValue, _ int) bool { return f(v) }

// walkPath calls fn with every value the dotted path reaches in doc,
// following MongoDB's ElementPath rules: arrays met before the last
// component are traversed (documents inside them are searched for the rest
// of the path, and a numeric component also selects that array position);
// a path that leads nowhere inside a document yields the missing value.
// fn returns true to stop; walkPath reports whether it was stopped.
func walkPath(doc []byte, parts []string, mode pathMode, fn func(bson.RawValue) bool) bool {
	return walkDoc(doc, parts, mode, -1, visitFunc(fn))
}

// The walkers are generic over the visitor so that the filter matcher can
// pass a small struct by value: a scan matching millions of documents then
// allocates no closure per document.

func walkDoc[V visitor](doc []byte, parts []string, mode pathMode, off int, fn V) bool {
	v, ok := lookup(doc, parts[0])
	if !ok {
		return fn.visit(missing, off)
	}
	return walkValue(v, parts[1:], mode, off, fn)
}

// outer keeps the outermost array offset: a value found inside nested
// arrays reports its position in the first array traversed.
func outer(off, i int) int {
	if off >= 0 {
		return off
	}
	return i
}

func walkValue[V visitor](v bson.RawValue, rest []string, mode pathMode, off int, fn V) bool {
	if len(rest) == 0 {
		if v.Type != bson.TypeArray || mode == leafWhole {
			return fn.visit(v, off)
		}
		empty := true
		i := 0
		if forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			empty = false
			stop := fn.visit(e, outer(off, i))
			i++
			return stop
		}) {
			return true
		}
		switch mode {
		case leafExpand:
			return fn.visit(v, off)
		case leafElems:
			if empty {
				return fn.visit(rvUndefined, off)
			}
		}
		return false
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return walkDoc(v.Value, rest, mode, off, fn)
	case bson.TypeArray:
		idx, isIdx := arrayIndex(rest[0])
		i := 0
		return forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			if e.Type == bson.TypeEmbeddedDocument && walkDoc(e.Value, rest, mode, outer(off, i), fn) {
				return true
			}
			// An explicit index is not an implicit traversal: it sets no
			// offset, except for the value it designates at the end of
			// the path (MongoDB reports that element's position).
			if isIdx && i == idx {
				o := off
				if len(rest) == 1 {
					o = outer(off, i)
				}
				if walkValue(e, rest[1:], mode, o, fn) {
					return true
				}
			}
			i++
			return false
		})
	}
	return fn.visit(missing, off)
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
