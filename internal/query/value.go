package query

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// missing is the zero RawValue; it stands for "no such field", which MongoDB
// treats differently from an explicit null in several places.
var missing = bson.RawValue{}

// isMissing reports whether v is the "no such field" marker.
func isMissing(v bson.RawValue) bool { return v.Type == 0 }

// Canonical type ranks, mirroring MongoDB's canonicalizeBSONType: values of
// different ranks order by rank, values with equal rank compare by value.
const (
	rankMinKey    = -1
	rankUndefined = 0 // also "missing"
	rankNull      = 5
	rankNumber    = 10
	rankString    = 15 // string and symbol
	rankObject    = 20
	rankArray     = 25
	rankBinary    = 30
	rankObjectID  = 35
	rankBool      = 40
	rankDate      = 45
	rankTimestamp = 47
	rankRegex     = 50
	rankDBPointer = 55
	rankCode      = 60
	rankCodeScope = 65
	rankMaxKey    = 127
)

func canonRank(t bson.Type) int {
	switch t {
	case bson.TypeMinKey:
		return rankMinKey
	case 0, bson.TypeUndefined:
		return rankUndefined
	case bson.TypeNull:
		return rankNull
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return rankNumber
	case bson.TypeString, bson.TypeSymbol:
		return rankString
	case bson.TypeEmbeddedDocument:
		return rankObject
	case bson.TypeArray:
		return rankArray
	case bson.TypeBinary:
		return rankBinary
	case bson.TypeObjectID:
		return rankObjectID
	case bson.TypeBoolean:
		return rankBool
	case bson.TypeDateTime:
		return rankDate
	case bson.TypeTimestamp:
		return rankTimestamp
	case bson.TypeRegex:
		return rankRegex
	case bson.TypeDBPointer:
		return rankDBPointer
	case bson.TypeJavaScript:
		return rankCode
	case bson.TypeCodeWithScope:
		return rankCodeScope
	case bson.TypeMaxKey:
		return rankMaxKey
	}
	// Unknown type bytes only appear in corrupt input; give them a rank of
	// their own so comparisons stay total and deterministic.
	return rankMaxKey - 1
}

func isNumeric(t bson.Type) bool {
	return t == bson.TypeDouble || t == bson.TypeInt32 || t == bson.TypeInt64 || t == bson.TypeDecimal128
}

func isNullish(v bson.RawValue) bool {
	return v.Type == 0 || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined
}

// Constructors for RawValues built by this package.

func rvInt32(i int32) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt32, Value: bsoncore.AppendInt32(nil, i)}
}

func rvInt64(i int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeInt64, Value: bsoncore.AppendInt64(nil, i)}
}

func rvDouble(f float64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeDouble, Value: bsoncore.AppendDouble(nil, f)}
}

func rvDecimal(d bson.Decimal128) bson.RawValue {
	h, l := d.GetBytes()
	return bson.RawValue{Type: bson.TypeDecimal128, Value: bsoncore.AppendDecimal128(nil, h, l)}
}

func rvString(s string) bson.RawValue {
	return bson.RawValue{Type: bson.TypeString, Value: bsoncore.AppendString(nil, s)}
}

func rvBool(b bool) bson.RawValue {
	return bson.RawValue{Type: bson.TypeBoolean, Value: bsoncore.AppendBoolean(nil, b)}
}

func rvDate(ms int64) bson.RawValue {
	return bson.RawValue{Type: bson.TypeDateTime, Value: bsoncore.AppendDateTime(nil, ms)}
}

func rvTimestamp(t, i uint32) bson.RawValue {
	return bson.RawValue{Type: bson.TypeTimestamp, Value: bsoncore.AppendTimestamp(nil, t, i)}
}

var (
	rvNull      = bson.RawValue{Type: bson.TypeNull}
	rvUndefined = bson.RawValue{Type: bson.TypeUndefined}
)

func rvDoc(doc []byte) bson.RawValue {
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: doc}
}

func rvArray(arr []byte) bson.RawValue {
	return bson.RawValue{Type: bson.TypeArray, Value: arr}
}

// buildArray encodes vals as a BSON array.
func buildArray(vals []bson.RawValue) []byte {
	idx, dst := bsoncore.AppendArrayStart(nil)
	for i, v := range vals {
		dst = appendRawElement(dst, strconv.Itoa(i), v)
	}
	dst, _ = bsoncore.AppendArrayEnd(dst, idx)
	return dst
}

// appendRawElement appends v under key; a missing v is skipped, matching how
// MongoDB drops missing values when building documents.
func appendRawElement(dst []byte, key string, v bson.RawValue) []byte {
	if isMissing(v) {
		return dst
	}
	dst = bsoncore.AppendHeader(dst, bsoncore.Type(v.Type), key)
	return append(dst, v.Value...)
}

// docBody returns the element bytes of a BSON document (without length
// prefix and terminator), or nil if the framing is invalid.
func docBody(doc []byte) []byte {
	if len(doc) < 5 {
		return nil
	}
	n := int(int32(binary.LittleEndian.Uint32(doc)))
	if n < 5 || n > len(doc) {
		return nil
	}
	return doc[4 : n-1]
}

// forEachElem calls fn for every element of a BSON document or array in
// order, stopping early when fn returns true. It never panics on malformed
// input; it just stops. The key is only valid for the duration of the call
// (it aliases doc), which lets lookups avoid allocating.
func forEachElem(doc []byte, fn func(key []byte, v bson.RawValue) bool) bool {
	b := docBody(doc)
	for {
		k, v, rem, ok := nextElem(b)
		if !ok {
			return false
		}
		if fn(k, v) {
			return true
		}
		b = rem
	}
}

// lookup returns the first field named key in doc.
func lookup(doc []byte, key string) (bson.RawValue, bool) {
	var out bson.RawValue
	found := forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		if string(k) == key {
			out = v
			return true
		}
		return false
	})
	return out, found
}

// arrayValues returns the elements of a BSON array.
func arrayValues(arr []byte) []bson.RawValue {
	var out []bson.RawValue
	forEachElem(arr, func(_ []byte, v bson.RawValue) bool {
		out = append(out, v)
		return false
	})
	return out
}

// firstKey returns the first field name of doc, or "".
func firstKey(doc []byte) string {
	var s string
	forEachElem(doc, func(k []byte, _ bson.RawValue) bool {
		s = string(k)
		return true
	})
	return s
}

// isOperatorDoc reports whether v is a document whose first field starts
// with '$', which is how MongoDB tells {$gt: 1} from an embedded document.
func isOperatorDoc(v bson.RawValue) bool {
	if v.Type != bson.TypeEmbeddedDocument {
		return false
	}
	k := firstKey(v.Value)
	return len(k) > 0 && k[0] == '$'
}

// arrayIndex parses a path component as an array index. Only canonical
// decimal forms count ("01" does not), as in MongoDB.
func arrayIndex(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// truthy implements MongoDB's boolean coercion used by $exists, $expr and
// the logical expression operators: false, null, missing, undefined and
// numeric zero are false; everything else is true.
func truthy(v bson.RawValue) bool {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return false
	case bson.TypeBoolean:
		b, _ := v.BooleanOK()
		return b
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		n := toNum(v)
		return !n.isZero()
	}
	return true
}

// TypeName returns MongoDB's alias for a BSON type, as used in $type and
// error messages.
func TypeName(t bson.Type) string {
	switch t {
	case 0:
		return "missing"
	case bson.TypeDouble:
		return "double"
	case bson.TypeString:
		return "string"
	case bson.TypeEmbeddedDocument:
		return "object"
	case bson.TypeArray:
		return "array"
	case bson.TypeBinary:
		return "binData"
	case bson.TypeUndefined:
		return "undefined"
	case bson.TypeObjectID:
		return "objectId"
	case bson.TypeBoolean:
		return "bool"
	case bson.TypeDateTime:
		return "date"
	case bson.TypeNull:
		return "null"
	case bson.TypeRegex:
		return "regex"
	case bson.TypeDBPointer:
		return "dbPointer"
	case bson.TypeJavaScript:
		return "javascript"
	case bson.TypeSymbol:
		return "symbol"
	case bson.TypeCodeWithScope:
		return "javascriptWithScope"
	case bson.TypeInt32:
		return "int"
	case bson.TypeTimestamp:
		return "timestamp"
	case bson.TypeInt64:
		return "long"
	case bson.TypeDecimal128:
		return "decimal"
	case bson.TypeMinKey:
		return "minKey"
	case bson.TypeMaxKey:
		return "maxKey"
	}
	return "unknown"
}

// typeAliases maps $type string aliases to BSON types.
func typeByAlias(s string) (bson.Type, bool) {
	switch s {
	case "double":
		return bson.TypeDouble, true
	case "string":
		return bson.TypeString, true
	case "object":
		return bson.TypeEmbeddedDocument, true
	case "array":
		return bson.TypeArray, true
	case "binData":
		return bson.TypeBinary, true
	case "undefined":
		return bson.TypeUndefined, true
	case "objectId":
		return bson.TypeObjectID, true
	case "bool":
		return bson.TypeBoolean, true
	case "date":
		return bson.TypeDateTime, true
	case "null":
		return bson.TypeNull, true
	case "regex":
		return bson.TypeRegex, true
	case "dbPointer":
		return bson.TypeDBPointer, true
	case "javascript":
		return bson.TypeJavaScript, true
	case "symbol":
		return bson.TypeSymbol, true
	case "javascriptWithScope":
		return bson.TypeCodeWithScope, true
	case "int":
		return bson.TypeInt32, true
	case "timestamp":
		return bson.TypeTimestamp, true
	case "long":
		return bson.TypeInt64, true
	case "decimal":
		return bson.TypeDecimal128, true
	case "minKey":
		return bson.TypeMinKey, true
	case "maxKey":
		return bson.TypeMaxKey, true
	}
	return 0, false
}

// debugString renders v for error messages, roughly like the shell does.
func debugString(v bson.RawValue) string {
	if isMissing(v) {
		return "missing"
	}
	var s string
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		s = strconv.FormatInt(toNum(v).i, 10)
	case bson.TypeDouble:
		s = strconv.FormatFloat(toNum(v).f, 'g', -1, 64)
	case bson.TypeString:
		s = strconv.Quote(stringish(v))
	case bson.TypeBoolean:
		s = strconv.FormatBool(truthy(v))
	case bson.TypeNull:
		s = "null"
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		var b strings.Builder
		renderValue(&b, v)
		s = b.String()
	default:
		s = v.String()
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// sanitizeFloat maps -0 to +0 so equal numbers have one representation.
func sanitizeFloat(f float64) float64 {
	if f == 0 {
		return 0
	}
	return f
}

var _ = math.MaxInt64

// validateDoc checks that b is well-formed BSON: framing, element
// boundaries, string terminators and nested documents. It is written here
// rather than delegated to bsoncore's Validate because that panics on some
// corrupt length prefixes, and hostile client input must never panic.
func validateDoc(b []byte) error {
	if !validDoc(b, 0) {
		return errCorrupt()
	}
	return nil
}

func validDoc(b []byte, depth int) bool {
	if depth > maxDepth || len(b) < 5 {
		return false
	}
	n := int(int32(binary.LittleEndian.Uint32(b)))
	if n != len(b) || b[n-1] != 0 {
		return false
	}
	body := b[4 : n-1]
	for len(body) > 0 {
		_, v, rem, ok := nextElem(body)
		if !ok || !validValue(v, depth) {
			return false
		}
		body = rem
	}
	return true
}

func validValue(v bson.RawValue, depth int) bool {
	switch v.Type {
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		return validDoc(v.Value, depth+1)
	case bson.TypeString, bson.TypeJavaScript, bson.TypeSymbol:
		return v.Value[len(v.Value)-1] == 0
	case bson.TypeDBPointer:
		n := int(int32(binary.LittleEndian.Uint32(v.Value)))
		return v.Value[4+n-1] == 0
	case bson.TypeCodeWithScope:
		if len(v.Value) < 14 {
			return false
		}
		sl := int(int32(binary.LittleEndian.Uint32(v.Value[4:])))
		if sl < 1 || 8+sl+5 > len(v.Value) || v.Value[8+sl-1] != 0 {
			return false
		}
		return validDoc(v.Value[8+sl:], depth+1)
	case bson.TypeBoolean:
		return v.Value[0] <= 1
	}
	return true
}
