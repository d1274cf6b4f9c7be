package query

import (
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Array update operators: "$" (the element the query matched), "$[]"
// (every element) and "$[<identifier>]" (the elements its array filter
// accepts). An update path using them is expanded against the document
// into concrete targets before any operator applies, so that every array
// filter sees the document as it was before the update, as in MongoDB
// where each array is visited once for all the operators below it.

// arrayFilter is one compiled entry of the arrayFilters option: a query
// whose top-level field names all start with its identifier, evaluated
// against {<identifier>: element} for each candidate element.
type arrayFilter struct {
	id string
	m  *Matcher
}

func (f *arrayFilter) matchElem(e any) bool {
	idx, doc := bsoncore.AppendDocumentStart(nil)
	doc = appendNode(doc, f.id, e)
	doc, _ = bsoncore.AppendDocumentEnd(doc, idx)
	return f.m.Match(doc)
}

// ArrayFiltersArg reads the arrayFilters option of an update statement or
// findAndModify (field is its name in MongoDB's error messages, e.g.
// "update.updates.arrayFilters"): an array of documents, or null for none.
func ArrayFiltersArg(v bson.RawValue, field string) ([]bson.Raw, error) {
	switch v.Type {
	case 0, bson.TypeNull:
		return nil, nil
	case bson.TypeArray:
	default:
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'array'", field, TypeName(v.Type))
	}
	var out []bson.Raw
	i := 0
	var err error
	forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
		if e.Type != bson.TypeEmbeddedDocument {
			err = mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%d' is the wrong type '%s', expected type 'object'", field, i, TypeName(e.Type))
			return true
		}
		out = append(out, bson.Raw(e.Value))
		i++
		return false
	})
	return out, err
}

// compileArrayFilters parses arrayFilters the way MongoDB's update parser
// does: each filter is a query without $expr whose top-level field names
// share one identifier (a lowercase letter then letters and digits), and
// no two filters share an identifier.
func compileArrayFilters(raw []bson.Raw) (map[string]*arrayFilter, error) {
	out := make(map[string]*arrayFilter, len(raw))
	for _, f := range raw {
		if err := validateDoc(f); err != nil {
			return nil, badValue("invalid array filter: %v", err)
		}
		if hasExpr(f, 0) {
			return nil, mongoerr.New(mongoerr.QueryFeatureNotAllowed, "Error parsing array filter :: caused by :: $expr is not allowed in this context")
		}
		m, err := Compile(f)
		if err != nil {
			return nil, mongoerr.New(mongoerr.CodeOf(err), "Error parsing array filter :: caused by :: %s", err.Error())
		}
		id, err := topLevelName(f, 0)
		if err != nil {
			return nil, err
		}
		if id == "" {
			return nil, failedToParse("Cannot use an expression without a top-level field name in arrayFilters")
		}
		if !validIdentifier(id) {
			return nil, badValue("Error parsing array filter :: caused by :: The top-level field name must be an alphanumeric string beginning with a lowercase letter, found '%s'", id)
		}
		if _, dup := out[id]; dup {
			return nil, failedToParse("Found multiple array filters with the same top-level field name %s", id)
		}
		out[id] = &arrayFilter{id: id, m: m}
	}
	return out, nil
}

// hasExpr reports whether a filter uses $expr at its top level or inside
// its logical operators, where MongoDB's array filter parser bans it.
func hasExpr(doc []byte, depth int) bool {
	if depth > maxFilterDepth {
		return false // Compile reports the depth
	}
	found := false
	forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		switch string(k) {
		case "$expr":
			found = true
		case "$and", "$or", "$nor":
			forEachElem(v.Value, func(_ []byte, sub bson.RawValue) bool {
				found = sub.Type == bson.TypeEmbeddedDocument && hasExpr(sub.Value, depth+1)
				return found
			})
		}
		return found
	})
	return found
}

// topLevelName returns the identifier an array filter is about: the first
// component of its field paths, looking through $and/$or/$nor.
func topLevelName(doc []byte, depth int) (string, error) {
	var name string
	var err error
	forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		key := string(k)
		var sub string
		switch {
		case key == "$and" || key == "$or" || key == "$nor":
			forEachElem(v.Value, func(_ []byte, it bson.RawValue) bool {
				if it.Type != bson.TypeEmbeddedDocument {
					return false
				}
				var s string
				if s, err = topLevelName(it.Value, depth+1); err != nil {
					return true
				}
				err = mergeName(&sub, s)
				return err != nil
			})
		case strings.HasPrefix(key, "$"):
			return false
		default:
			sub, _, _ = strings.Cut(key, ".")
		}
		if err == nil {
			err = mergeName(&name, sub)
		}
		return err != nil
	})
	return name, err
}

func mergeName(have *string, s string) error {
	switch {
	case s == "":
	case *have == "":
		*have = s
	case *have != s:
		return failedToParse("Error parsing array filter :: caused by :: Expected a single top-level field name, found '%s' and '%s'", *have, s)
	}
	return nil
}

func validIdentifier(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isArrayFilterPart reports whether a path component is "$[]" or
// "$[<identifier>]".
func isArrayFilterPart(p string) bool {
	return len(p) >= 3 && p[0] == '$' && p[1] == '[' && p[len(p)-1] == ']'
}

// target is one place an operator applies once array operators are
// expanded: the array element slot the last array operator chose (or no
// slot, for a path without array operators, which starts at the root),
// the plain rest of the path below it, and the concrete path for conflict
// checks (only computed when there is another operator to conflict with).
type target struct {
	start slot
	rest  []string
	path  string
}

// expand resolves an update path's array operators against the document
// as it is now. A path without them yields one target; "$[]" and
// "$[<id>]" need an existing array at their position (MongoDB's errors
// otherwise), and yield one target per element selected. withPaths asks
// for each target's concrete path.
func (a *applier) expand(parts []string, filters map[string]*arrayFilter, withPaths bool) ([]target, error) {
	last := -1
	for i, p := range parts {
		if isArrayFilterPart(p) {
			last = i
		}
	}
	if last < 0 {
		return []target{{rest: parts, path: strings.Join(parts, ".")}}, nil
	}
	var out []target
	x := expansion{parts: parts, last: last, filters: filters, withPaths: withPaths, out: &out}
	err := x.from(a.root, 0, nil)
	return out, err
}

// expansion is one path's expansion in progress.
type expansion struct {
	parts     []string
	last      int // index of the last array operator in parts
	filters   map[string]*arrayFilter
	withPaths bool
	out       *[]target
}

// from expands parts[i:] below cur; concrete holds the components taken so
// far, with array operators replaced by the positions chosen.
func (x *expansion) from(cur any, i int, concrete []string) error {
	parts := x.parts
	for ; !isArrayFilterPart(parts[i]); i++ {
		child, ok := childOf(cur, parts[i])
		if !ok {
			j := i + 1
			for !isArrayFilterPart(parts[j]) {
				j++
			}
			return badValue("The path '%s' must exist in the document in order to apply array updates.", strings.Join(parts[i:j], "."))
		}
		concrete = append(concrete, parts[i])
		cur = child
	}
	arr, ok := cur.(*marr)
	if !ok {
		return badValue("Cannot apply array updates to non-array element %s: %s", concrete[len(concrete)-1], debugString(nodeRaw(cur)))
	}
	id := parts[i][2 : len(parts[i])-1]
	for k, e := range arr.elems {
		if id != "" && !x.filters[id].matchElem(e) {
			continue
		}
		key := strconv.Itoa(k)
		if i == x.last {
			t := target{start: slot{arr, key}, rest: parts[i+1:]}
			if x.withPaths {
				c := append(concrete[:len(concrete):len(concrete)], key)
				c = append(c, parts[i+1:]...)
				t.path = strings.Join(c, ".")
			}
			*x.out = append(*x.out, t)
			continue
		}
		if err := x.from(e, i+1, append(concrete[:len(concrete):len(concrete)], key)); err != nil {
			return err
		}
	}
	return nil
}

// childOf returns the existing child of a document field or array index.
func childOf(cur any, key string) (any, bool) {
	switch c := cur.(type) {
	case *mdoc:
		return c.get(key)
	case *marr:
		if i, ok := arrayIndex(key); ok && i < len(c.elems) {
			return c.elems[i], true
		}
	}
	return nil, false
}

// renderUpdate renders an update document the way MongoDB's BSONObj
// toString does in error messages ({ $set: { a.$[i]: 5.0 } }), cut short
// past a bound so a huge update cannot inflate an error.
func renderUpdate(doc []byte) string {
	var b strings.Builder
	renderValue(&b, rvDoc(doc))
	s := b.String()
	if len(s) > 1024 {
		s = s[:1024] + "..."
	}
	return s
}

func renderValue(b *strings.Builder, v bson.RawValue) {
	if b.Len() > 1024 {
		return
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		open, close := "{", "}"
		if v.Type == bson.TypeArray {
			open, close = "[", "]"
		}
		n := 0
		b.WriteString(open)
		forEachElem(v.Value, func(k []byte, e bson.RawValue) bool {
			if n > 0 {
				b.WriteString(",")
			}
			b.WriteString(" ")
			if v.Type == bson.TypeEmbeddedDocument {
				b.Write(k)
				b.WriteString(": ")
			}
			renderValue(b, e)
			n++
			return b.Len() > 1024
		})
		if n > 0 {
			b.WriteString(" ")
		}
		b.WriteString(close)
	case bson.TypeDouble:
		f := toNum(v).f
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEIN") {
			s += ".0"
		}
		b.WriteString(s)
	case bson.TypeString:
		b.WriteString(strconv.Quote(stringish(v)))
	default:
		b.WriteString(debugString(v))
	}
}
