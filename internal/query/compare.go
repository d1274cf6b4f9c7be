package query

import (
	"bytes"
	"encoding/binary"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Compare orders two BSON values the way MongoDB sorts them: first by
// canonical type (MinKey < undefined/missing < null < numbers < strings
// and symbols < objects < arrays < binData < ObjectId < bool < date <
// timestamp < regex < DBPointer < code < code-with-scope < MaxKey), then by
// value. Numbers of different BSON types compare exactly by numeric value
// (NaN sorts below every other number). Strings compare by bytes (the
// "simple" collation). It returns -1, 0 or +1.
//
// Compare is the single source of truth for ordering: sorts, $min/$max,
// $group keys and EncodeIndexKey all agree with it.
func Compare(a, b bson.RawValue) int {
	ra, rb := canonRank(a.Type), canonRank(b.Type)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	switch ra {
	case rankNumber:
		return compareNum(toNum(a), toNum(b))
	case rankString:
		return strings.Compare(stringish(a), stringish(b))
	case rankObject:
		return compareDocs(a.Value, b.Value, true)
	case rankArray:
		return compareDocs(a.Value, b.Value, false)
	case rankBinary:
		// MongoDB compares length, then subtype, then bytes.
		sa, da, _ := a.BinaryOK()
		sb, db, _ := b.BinaryOK()
		if c := cmpInt(len(da), len(db)); c != 0 {
			return c
		}
		if c := cmpInt(int(sa), int(sb)); c != 0 {
			return c
		}
		return bytes.Compare(da, db)
	case rankObjectID:
		oa, _ := a.ObjectIDOK()
		ob, _ := b.ObjectIDOK()
		return bytes.Compare(oa[:], ob[:])
	case rankBool:
		ba, _ := a.BooleanOK()
		bb, _ := b.BooleanOK()
		return cmpInt(b2i(ba), b2i(bb))
	case rankDate:
		da, _ := a.DateTimeOK()
		db, _ := b.DateTimeOK()
		return cmpInt64(da, db)
	case rankTimestamp:
		ta, ia, _ := a.TimestampOK()
		tb, ib, _ := b.TimestampOK()
		if c := cmpInt64(int64(ta), int64(tb)); c != 0 {
			return c
		}
		return cmpInt64(int64(ia), int64(ib))
	case rankRegex:
		pa, oa, _ := a.RegexOK()
		pb, ob, _ := b.RegexOK()
		if c := strings.Compare(pa, pb); c != 0 {
			return c
		}
		return strings.Compare(oa, ob)
	case rankDBPointer:
		if c := cmpInt(len(a.Value), len(b.Value)); c != 0 {
			return c
		}
		return bytes.Compare(a.Value, b.Value)
	case rankCode:
		ja, _ := a.JavaScriptOK()
		jb, _ := b.JavaScriptOK()
		return strings.Compare(ja, jb)
	case rankCodeScope:
		ca, sa, _ := a.CodeWithScopeOK()
		cb, sb, _ := b.CodeWithScopeOK()
		if c := strings.Compare(ca, cb); c != 0 {
			return c
		}
		return compareDocs(sa, sb, true)
	case rankMaxKey - 1:
		// Unknown types (corrupt input): order by type byte, then bytes.
		if c := cmpInt(int(a.Type), int(b.Type)); c != 0 {
			return c
		}
		return bytes.Compare(a.Value, b.Value)
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// stringish returns the text of a string or symbol.
func stringish(v bson.RawValue) string {
	if v.Type == bson.TypeSymbol {
		s, _ := v.SymbolOK()
		return s
	}
	s, _ := v.StringValueOK()
	return s
}

// compareDocs compares embedded documents (or arrays) element by element,
// as BSONObj::woCompare does: canonical type, then field name (objects
// only), then value; a document that is a prefix of another sorts first.
func compareDocs(a, b []byte, names bool) int {
	ab, bb := docBody(a), docBody(b)
	for {
		ka, va, ra, oka := nextElem(ab)
		kb, vb, rb, okb := nextElem(bb)
		if !oka || !okb {
			return cmpInt(b2i(oka), b2i(okb))
		}
		if c := cmpInt(canonRank(va.Type), canonRank(vb.Type)); c != 0 {
			return c
		}
		if names {
			if c := bytes.Compare(ka, kb); c != 0 {
				return c
			}
		}
		if c := Compare(va, vb); c != 0 {
			return c
		}
		ab, bb = ra, rb
	}
}

// nextElem decodes the first element of a document body.
func nextElem(b []byte) (key []byte, v bson.RawValue, rem []byte, ok bool) {
	if len(b) == 0 {
		return nil, v, nil, false
	}
	t := bson.Type(b[0])
	i := 1
	for i < len(b) && b[i] != 0 {
		i++
	}
	if i >= len(b) {
		return nil, v, nil, false
	}
	n, ok := valueLen(b[i+1:], t)
	if !ok {
		return nil, v, nil, false
	}
	start := i + 1
	return b[1:i], bson.RawValue{Type: t, Value: b[start : start+n]}, b[start+n:], true
}

// valueLen returns the encoded length of a value of type t at the start of
// b, checking bounds so corrupt input cannot cause a panic.
func valueLen(b []byte, t bson.Type) (int, bool) {
	fixed := -1
	switch t {
	case bson.TypeDouble, bson.TypeInt64, bson.TypeDateTime, bson.TypeTimestamp:
		fixed = 8
	case bson.TypeInt32:
		fixed = 4
	case bson.TypeDecimal128:
		fixed = 16
	case bson.TypeObjectID:
		fixed = 12
	case bson.TypeBoolean:
		fixed = 1
	case bson.TypeNull, bson.TypeUndefined, bson.TypeMinKey, bson.TypeMaxKey:
		fixed = 0
	case bson.TypeString, bson.TypeJavaScript, bson.TypeSymbol:
		if len(b) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(b)))
		if n < 1 || 4+n > len(b) {
			return 0, false
		}
		return 4 + n, true
	case bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeCodeWithScope:
		if len(b) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(b)))
		if n < 5 || n > len(b) {
			return 0, false
		}
		return n, true
	case bson.TypeBinary:
		if len(b) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(b)))
		if n < 0 || 5+n > len(b) {
			return 0, false
		}
		return 5 + n, true
	case bson.TypeRegex:
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			return 0, false
		}
		j := bytes.IndexByte(b[i+1:], 0)
		if j < 0 {
			return 0, false
		}
		return i + 1 + j + 1, true
	case bson.TypeDBPointer:
		if len(b) < 4 {
			return 0, false
		}
		n := int(int32(binary.LittleEndian.Uint32(b)))
		if n < 1 || 4+n+12 > len(b) {
			return 0, false
		}
		return 4 + n + 12, true
	default:
		return 0, false
	}
	if fixed > len(b) {
		return 0, false
	}
	return fixed, true
}

// rawEqual reports binary equality (same type and bytes). MongoDB uses this
// to decide whether an update actually modified a field.
func rawEqual(a, b bson.RawValue) bool {
	return a.Type == b.Type && bytes.Equal(a.Value, b.Value)
}
