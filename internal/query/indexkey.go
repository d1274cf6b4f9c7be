package query

import (
	"encoding/binary"
	"math"
	"math/big"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Order-preserving index key encoding.
//
// EncodeIndexKey maps BSON values to byte strings such that
// bytes.Compare(enc(a), enc(b)) == Compare(a, b) for every pair of values,
// so a KV store can serve equality and range predicates with plain byte
// range scans. Every value encoding is prefix-free (self-delimiting), which
// is what makes concatenating the fields of a compound key preserve the
// lexicographic tuple order, and inverting all bytes of a descending
// field reverse its order.
//
// Layout: one tag byte per value (canonical type rank + 10, so tags are
// >= 0x09 and 0x00 is free to terminate documents), then:
//
//	MinKey, undefined, null, MaxKey: nothing.
//	numbers:   0x00 for NaN (below every other number); otherwise 0x01,
//	           8 bytes of the value rounded to the nearest float64 (sign-
//	           flipped IEEE bits; -0 is +0, huge decimals clamp to
//	           ±MaxFloat64), then the exact remainder value-minus-float:
//	           0x01 if zero, 0x02+magnitude if positive, 0x00+inverted
//	           magnitude if negative. The magnitude is the remainder's exact
//	           decimal expansion, normalised to 0.d1d2…dn × 10^E: E as a
//	           biased big-endian uint32, the digit characters, then 0x00.
//	           Rounding is monotonic, so (float, remainder) orders exactly
//	           like the real value; int32/int64 ≤ 2^53 and all doubles have
//	           a zero remainder, so int 5, long 5 and 5.0 encode identically
//	           (they are equal for MongoDB), while longs beyond 2^53 and
//	           decimals that are not exactly a double keep full precision.
//	strings, symbols, code: bytes with 0x00 escaped as 0x00 0xFF, then
//	           0x00 0x01.
//	objects:   per element: value tag, escaped field name, value body;
//	           then 0x00. (Type, then name, then value: BSONObj order.)
//	arrays:    per element: tag, body; then 0x00.
//	binData:   big-endian uint32 length, subtype, bytes.
//	ObjectId:  12 bytes. bool: 0x00/0x01. date: int64 with sign bit
//	           flipped. timestamp: big-endian t, then i.
//	regex:     escaped pattern, escaped options. DBPointer: length, bytes.
//	code w/ scope: escaped code, scope as an object.
//
// A missing field is indexed as null, as MongoDB does.

func tagOf(t bson.Type) byte { return byte(canonRank(t) + 10) }

// EncodeIndexKey encodes a compound index key. directions[i] < 0 marks a
// descending field (its bytes are inverted); missing directions mean
// ascending.
func EncodeIndexKey(values []bson.RawValue, directions []int) []byte {
	var dst []byte
	for i, v := range values {
		start := len(dst)
		dst = EncodeValue(dst, v)
		if i < len(directions) && directions[i] < 0 {
			invert(dst[start:])
		}
	}
	return dst
}

func invert(b []byte) {
	for i := range b {
		b[i] = ^b[i]
	}
}

// EncodeValue appends the ascending encoding of one value to dst.
func EncodeValue(dst []byte, v bson.RawValue) []byte {
	if isMissing(v) {
		v = rvNull
	}
	dst = append(dst, tagOf(v.Type))
	return appendBody(dst, v)
}

func appendBody(dst []byte, v bson.RawValue) []byte {
	switch canonRank(v.Type) {
	case rankMinKey, rankUndefined, rankNull, rankMaxKey:
		return dst
	case rankNumber:
		return appendNumber(dst, toNum(v))
	case rankString:
		return appendEscaped(dst, stringish(v))
	case rankObject:
		return appendObject(dst, v.Value)
	case rankArray:
		forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			dst = EncodeValue(dst, e)
			return false
		})
		return append(dst, 0)
	case rankBinary:
		sub, data, _ := v.BinaryOK()
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
		dst = append(dst, sub)
		return append(dst, data...)
	case rankObjectID:
		oid, _ := v.ObjectIDOK()
		return append(dst, oid[:]...)
	case rankBool:
		b, _ := v.BooleanOK()
		return append(dst, byte(b2i(b)))
	case rankDate:
		d, _ := v.DateTimeOK()
		return binary.BigEndian.AppendUint64(dst, uint64(d)^(1<<63))
	case rankTimestamp:
		t, i, _ := v.TimestampOK()
		dst = binary.BigEndian.AppendUint32(dst, t)
		return binary.BigEndian.AppendUint32(dst, i)
	case rankRegex:
		p, o, _ := v.RegexOK()
		return appendEscaped(appendEscaped(dst, p), o)
	case rankDBPointer:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.Value)))
		return append(dst, v.Value...)
	case rankCode:
		js, _ := v.JavaScriptOK()
		return appendEscaped(dst, js)
	case rankCodeScope:
		c, s, _ := v.CodeWithScopeOK()
		return appendObject(appendEscaped(dst, c), s)
	}
	// Unknown type (corrupt input): type byte then escaped raw bytes, which
	// mirrors Compare's fallback.
	dst = append(dst, byte(v.Type))
	return appendEscaped(dst, string(v.Value))
}

func appendObject(dst []byte, doc []byte) []byte {
	forEachElem(doc, func(k []byte, e bson.RawValue) bool {
		dst = append(dst, tagOf(e.Type))
		dst = appendEscaped(dst, string(k))
		dst = appendBody(dst, e)
		return false
	})
	return append(dst, 0)
}

func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			dst = append(dst, 0, 0xFF)
		} else {
			dst = append(dst, s[i])
		}
	}
	return append(dst, 0, 1)
}

func appendFloat(dst []byte, f float64) []byte {
	bits := math.Float64bits(sanitizeFloat(f))
	if bits>>63 == 1 {
		bits = ^bits
	} else {
		bits |= 1 << 63
	}
	return binary.BigEndian.AppendUint64(dst, bits)
}

func appendNumber(dst []byte, n num) []byte {
	if n.isNaN() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	switch {
	case n.kind == bson.TypeDouble:
		return append(appendFloat(dst, n.f), 1)
	case n.isInt() && n.i >= -(1<<53) && n.i <= 1<<53:
		return append(appendFloat(dst, float64(n.i)), 1)
	}
	e := n.ext()
	switch e.special {
	case 1:
		return append(appendFloat(dst, math.Inf(1)), 1)
	case -1:
		return append(appendFloat(dst, math.Inf(-1)), 1)
	}
	f, _ := e.r.Float64()
	if math.IsInf(f, 1) {
		f = math.MaxFloat64
	} else if math.IsInf(f, -1) {
		f = -math.MaxFloat64
	}
	dst = appendFloat(dst, f)
	delta := new(big.Rat).Sub(e.r, new(big.Rat).SetFloat64(f))
	switch delta.Sign() {
	case 0:
		return append(dst, 1)
	case 1:
		return appendMagnitude(append(dst, 2), delta)
	}
	dst = append(dst, 0)
	start := len(dst)
	dst = appendMagnitude(dst, delta.Neg(delta))
	invert(dst[start:])
	return dst
}

// appendMagnitude encodes a positive rational whose denominator has only
// factors 2 and 5 (a finite decimal) as exponent plus digit string.
func appendMagnitude(dst []byte, r *big.Rat) []byte {
	den := new(big.Int).Set(r.Denom())
	twos := den.TrailingZeroBits()
	den.Rsh(den, twos)
	fives := uint(0)
	five := big.NewInt(5)
	m := new(big.Int)
	for den.Cmp(big.NewInt(1)) > 0 {
		q, rem := new(big.Int).QuoRem(den, five, m)
		if rem.Sign() != 0 {
			break // not a finite decimal; cannot happen for BSON numbers
		}
		den = q
		fives++
	}
	k := max(twos, fives)
	scaled := new(big.Int).Mul(r.Num(), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(k)), nil))
	scaled.Quo(scaled, r.Denom())
	digits := scaled.String()
	exp := len(digits) - int(k)
	for len(digits) > 1 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(int32(exp))^(1<<31))
	dst = append(dst, digits...)
	return append(dst, 0)
}

// KeyPattern is a parsed index key pattern such as {a: 1, "b.c": -1}.
type KeyPattern struct {
	Fields     []string
	Directions []int
	parts      [][]string
}

// ParseKeyPattern accepts ascending/descending fields only; special index
// types (text, 2dsphere, hashed) are rejected with CannotCreateIndex-like
// BadValue, as cmkdb does not implement them.
func ParseKeyPattern(spec bson.Raw) (*KeyPattern, error) {
	kp := &KeyPattern{}
	for _, e := range elems(spec) {
		if e.key == "" {
			return nil, badValue("Index keys cannot be an empty field")
		}
		if !isNumeric(e.val.Type) {
			return nil, badValue("Values in the index key pattern can only be numbers; unsupported index type for field %s", e.key)
		}
		f := toNum(e.val).float()
		dir := 1
		switch {
		case f < 0:
			dir = -1
		case f == 0 || math.IsNaN(f):
			return nil, badValue("Values in the index key pattern can't be 0: %s", e.key)
		}
		parts, err := splitFieldPath(0, e.key)
		if err != nil {
			return nil, err
		}
		kp.Fields = append(kp.Fields, e.key)
		kp.Directions = append(kp.Directions, dir)
		kp.parts = append(kp.parts, parts)
	}
	if len(kp.Fields) == 0 {
		return nil, badValue("Index keys cannot be empty.")
	}
	return kp, nil
}

// maxIndexKeys bounds the fan-out of a multikey document.
const maxIndexKeys = 10000

// IndexKeys returns the encoded index keys for doc: one per distinct
// combination of values, since an array field contributes one key per
// element (multikey). At most one field may be an array; otherwise
// MongoDB's CannotIndexParallelArrays error is returned.
func (kp *KeyPattern) IndexKeys(doc bson.Raw) ([][]byte, error) {
	keys, _, err := kp.IndexEntries(doc)
	return keys, err
}

// IndexEntries is IndexKeys that also returns, for each key, the field
// values it encodes (for messages such as a duplicate key's).
func (kp *KeyPattern) IndexEntries(doc bson.Raw) ([][]byte, [][]bson.RawValue, error) {
	perField := make([][]bson.RawValue, len(kp.Fields))
	arrayField := -1
	for i, parts := range kp.parts {
		var vals []bson.RawValue
		walkPath(doc, parts, leafElems, func(v bson.RawValue) bool {
			if isMissing(v) {
				v = rvNull
			}
			for _, x := range vals {
				if Compare(x, v) == 0 && x.Type == v.Type {
					return false
				}
			}
			vals = append(vals, v)
			return false
		})
		if len(vals) == 0 {
			vals = []bson.RawValue{rvNull}
		}
		if pathHasArray(doc, parts) {
			if arrayField >= 0 {
				return nil, nil, mongoerr.New(mongoerr.CannotIndexParallelArrays, "cannot index parallel arrays [%s] [%s]", kp.Fields[i], kp.Fields[arrayField])
			}
			arrayField = i
		}
		perField[i] = vals
	}
	keys := [][]bson.RawValue{{}}
	for _, vals := range perField {
		var next [][]bson.RawValue
		for _, k := range keys {
			for _, v := range vals {
				next = append(next, append(append([]bson.RawValue{}, k...), v))
			}
		}
		if len(next) > maxIndexKeys {
			return nil, nil, badValue("document generates too many index keys")
		}
		keys = next
	}
	out := make([][]byte, 0, len(keys))
	vals := make([][]bson.RawValue, 0, len(keys))
	seen := map[string]bool{}
	for _, k := range keys {
		enc := EncodeIndexKey(k, kp.Directions)
		if !seen[string(enc)] {
			seen[string(enc)] = true
			out = append(out, enc)
			vals = append(vals, k)
		}
	}
	return out, vals, nil
}

// pathHasArray reports whether any value along the path is an array.
func pathHasArray(doc []byte, parts []string) bool {
	found := false
	var visit func(v bson.RawValue, rest []string)
	visit = func(v bson.RawValue, rest []string) {
		if found {
			return
		}
		if v.Type == bson.TypeArray {
			found = true
			return
		}
		if len(rest) == 0 || v.Type != bson.TypeEmbeddedDocument {
			return
		}
		c, ok := lookup(v.Value, rest[0])
		if ok {
			visit(c, rest[1:])
		}
	}
	visit(rvDoc(doc), parts)
	return found
}
