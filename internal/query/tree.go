package query

import (
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The mutable document tree used by updates and document-reshaping
// pipeline stages. A node is one of *mdoc, *marr or a bson.RawValue leaf
// (never a document or array). Pointers make in-place edits along a
// dotted path straightforward; the tree is encoded once when done.

type mdoc struct {
	fields []mfield
}

type mfield struct {
	key string
	val any
}

type marr struct {
	elems []any
}

// maxDepth bounds recursion on hostile input; BSON documents nested deeper
// than MongoDB's own limit (100 for storage, 180 overall) are rejected.
const maxDepth = 200

func errDepth() error {
	return mongoerr.New(mongoerr.BadValue, "document nesting exceeds the maximum depth of %d", maxDepth)
}

func errCorrupt() error {
	return mongoerr.New(mongoerr.BadValue, "corrupt BSON document")
}

// decodeDoc builds a tree from raw BSON, validating framing as it goes.
func decodeDoc(raw []byte) (*mdoc, error) {
	return decodeDocDepth(raw, 0)
}

func decodeDocDepth(raw []byte, depth int) (*mdoc, error) {
	if depth > maxDepth {
		return nil, errDepth()
	}
	b := docBody(raw)
	if b == nil {
		return nil, errCorrupt()
	}
	d := &mdoc{}
	for len(b) > 0 {
		k, v, rem, ok := nextElem(b)
		if !ok {
			return nil, errCorrupt()
		}
		n, err := decodeValue(v, depth+1)
		if err != nil {
			return nil, err
		}
		d.fields = append(d.fields, mfield{key: string(k), val: n})
		b = rem
	}
	return d, nil
}

func decodeValue(v bson.RawValue, depth int) (any, error) {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return decodeDocDepth(v.Value, depth)
	case bson.TypeArray:
		if depth > maxDepth {
			return nil, errDepth()
		}
		b := docBody(v.Value)
		if b == nil {
			return nil, errCorrupt()
		}
		a := &marr{}
		for len(b) > 0 {
			_, ev, rem, ok := nextElem(b)
			if !ok {
				return nil, errCorrupt()
			}
			n, err := decodeValue(ev, depth+1)
			if err != nil {
				return nil, err
			}
			a.elems = append(a.elems, n)
			b = rem
		}
		return a, nil
	}
	return v, nil
}

// mustDecode is decodeValue for values already validated (e.g. parts of a
// compiled spec); corrupt input degrades to null rather than panicking.
func mustDecode(v bson.RawValue) any {
	n, err := decodeValue(v, 0)
	if err != nil {
		return rvNull
	}
	return n
}

func (d *mdoc) encode() bson.Raw {
	return bson.Raw(appendDoc(nil, d))
}

func appendDoc(dst []byte, d *mdoc) []byte {
	idx, dst := bsoncore.AppendDocumentStart(dst)
	for _, f := range d.fields {
		dst = appendNode(dst, f.key, f.val)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

func appendArr(dst []byte, a *marr) []byte {
	idx, dst := bsoncore.AppendArrayStart(dst)
	for i, e := range a.elems {
		dst = appendNode(dst, strconv.Itoa(i), e)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, idx)
	return dst
}

func appendNode(dst []byte, key string, n any) []byte {
	switch n := n.(type) {
	case *mdoc:
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeEmbeddedDocument, key)
		return appendDoc(dst, n)
	case *marr:
		dst = bsoncore.AppendHeader(dst, bsoncore.TypeArray, key)
		return appendArr(dst, n)
	case bson.RawValue:
		return appendRawElement(dst, key, n)
	}
	return dst
}

// nodeRaw converts a tree node to a RawValue (encoding containers).
func nodeRaw(n any) bson.RawValue {
	switch n := n.(type) {
	case *mdoc:
		return rvDoc(appendDoc(nil, n))
	case *marr:
		return rvArray(appendArr(nil, n))
	case bson.RawValue:
		return n
	}
	return missing
}

func (d *mdoc) index(key string) int {
	for i := range d.fields {
		if d.fields[i].key == key {
			return i
		}
	}
	return -1
}

func (d *mdoc) get(key string) (any, bool) {
	if i := d.index(key); i >= 0 {
		return d.fields[i].val, true
	}
	return nil, false
}

// set replaces the field in place or appends it, which is how MongoDB
// positions new fields.
func (d *mdoc) set(key string, v any) {
	if i := d.index(key); i >= 0 {
		d.fields[i].val = v
		return
	}
	d.fields = append(d.fields, mfield{key: key, val: v})
}

func (d *mdoc) remove(key string) bool {
	if i := d.index(key); i >= 0 {
		d.fields = append(d.fields[:i], d.fields[i+1:]...)
		return true
	}
	return false
}

// cloneNode deep-copies a tree node.
func cloneNode(n any) any {
	switch n := n.(type) {
	case *mdoc:
		c := &mdoc{fields: make([]mfield, len(n.fields))}
		for i, f := range n.fields {
			c.fields[i] = mfield{key: f.key, val: cloneNode(f.val)}
		}
		return c
	case *marr:
		c := &marr{elems: make([]any, len(n.elems))}
		for i, e := range n.elems {
			c.elems[i] = cloneNode(e)
		}
		return c
	}
	return n
}

// nodeType returns the BSON type of a node.
func nodeType(n any) bson.Type {
	switch n := n.(type) {
	case *mdoc:
		return bson.TypeEmbeddedDocument
	case *marr:
		return bson.TypeArray
	case bson.RawValue:
		return n.Type
	}
	return 0
}
