package wire

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// MaxBSONDepth bounds document nesting, like mongod's default. Besides
// matching the server, it keeps validation (and every later recursive walk
// of client documents) from exhausting the goroutine stack: a 16 MiB
// document could otherwise nest millions of levels deep.
const MaxBSONDepth = 200

// ValidateDocument checks that doc is exactly one well-formed BSON document,
// recursively, with at most MaxBSONDepth levels of nesting. The failure is a
// *mongoerr.Error with code InvalidBSON.
//
// bsoncore.Document.Validate only checks the top level's framing (embedded
// documents are accepted on their length prefix alone), so this walks every
// value using bsoncore's element types.
func ValidateDocument(doc []byte) error {
	if err := validateDoc(doc, 1); err != nil {
		return mongoerr.New(mongoerr.InvalidBSON, "invalid BSON: %s", err)
	}
	return nil
}

func validateDoc(doc []byte, depth int) error {
	if depth > MaxBSONDepth {
		return fmt.Errorf("nesting deeper than %d levels", MaxBSONDepth)
	}
	if len(doc) < 5 {
		return fmt.Errorf("document of %d bytes is too short", len(doc))
	}
	if n := binary.LittleEndian.Uint32(doc); int64(n) != int64(len(doc)) {
		return fmt.Errorf("document length prefix %d does not match its %d bytes", int32(n), len(doc))
	}
	if doc[len(doc)-1] != 0 {
		return fmt.Errorf("document is not NUL-terminated")
	}
	p := doc[4 : len(doc)-1]
	for len(p) > 0 {
		t := bsoncore.Type(p[0])
		k := bytes.IndexByte(p[1:], 0)
		if k < 0 {
			return fmt.Errorf("element key is not NUL-terminated")
		}
		key := p[1 : k+1]
		p = p[k+2:]
		n, err := validateValue(t, p, depth)
		if err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
		p = p[n:]
	}
	return nil
}

// validateValue checks the value of type t at the front of p and returns its
// length.
func validateValue(t bsoncore.Type, p []byte, depth int) (int, error) {
	need := func(n int) (int, error) {
		if len(p) < n {
			return 0, fmt.Errorf("%s value truncated", t)
		}
		return n, nil
	}
	switch t {
	case bsoncore.TypeDouble, bsoncore.TypeDateTime, bsoncore.TypeInt64, bsoncore.TypeTimestamp:
		return need(8)
	case bsoncore.TypeInt32:
		return need(4)
	case bsoncore.TypeDecimal128:
		return need(16)
	case bsoncore.TypeObjectID:
		return need(12)
	case bsoncore.TypeNull, bsoncore.TypeUndefined, bsoncore.TypeMinKey, bsoncore.TypeMaxKey:
		return 0, nil
	case bsoncore.TypeBoolean:
		if len(p) < 1 || p[0] > 1 {
			return 0, fmt.Errorf("invalid boolean")
		}
		return 1, nil
	case bsoncore.TypeString, bsoncore.TypeJavaScript, bsoncore.TypeSymbol:
		return stringLen(p)
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray:
		n, err := docLen(p)
		if err != nil {
			return 0, err
		}
		return n, validateDoc(p[:n], depth+1)
	case bsoncore.TypeBinary:
		l, _, ok := readInt32(p)
		if !ok || l < 0 || int64(l)+5 > int64(len(p)) {
			return 0, fmt.Errorf("binary value truncated")
		}
		if p[4] == 0x02 { // old binary subtype repeats the length inside
			inner, _, ok := readInt32(p[5:])
			if !ok || inner != l-4 {
				return 0, fmt.Errorf("invalid subtype-2 binary length")
			}
		}
		return int(l) + 5, nil
	case bsoncore.TypeRegex:
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			return 0, fmt.Errorf("regex pattern not terminated")
		}
		j := bytes.IndexByte(p[i+1:], 0)
		if j < 0 {
			return 0, fmt.Errorf("regex options not terminated")
		}
		return i + j + 2, nil
	case bsoncore.TypeDBPointer:
		n, err := stringLen(p)
		if err != nil {
			return 0, err
		}
		if len(p) < n+12 {
			return 0, fmt.Errorf("dbpointer truncated")
		}
		return n + 12, nil
	case bsoncore.TypeCodeWithScope:
		total, _, ok := readInt32(p)
		if !ok || total < 14 || int64(total) > int64(len(p)) {
			return 0, fmt.Errorf("code with scope truncated")
		}
		body := p[4:total]
		sn, err := stringLen(body)
		if err != nil {
			return 0, err
		}
		scope := body[sn:]
		if err := validateDoc(scope, depth+1); err != nil {
			return 0, err
		}
		return int(total), nil
	default:
		return 0, fmt.Errorf("unknown element type 0x%02x", byte(t))
	}
}

// stringLen checks a BSON string (int32 length, bytes, NUL) at the front of
// p and returns its total length.
func stringLen(p []byte) (int, error) {
	l, _, ok := readInt32(p)
	if !ok || l < 1 || int64(l)+4 > int64(len(p)) {
		return 0, fmt.Errorf("string truncated")
	}
	if p[4+l-1] != 0 {
		return 0, fmt.Errorf("string not NUL-terminated")
	}
	return int(l) + 4, nil
}

// docLen reads the length prefix of an embedded document at the front of p.
func docLen(p []byte) (int, error) {
	l, _, ok := readInt32(p)
	if !ok || l < 5 || int64(l) > int64(len(p)) {
		return 0, fmt.Errorf("embedded document truncated")
	}
	return int(l), nil
}
