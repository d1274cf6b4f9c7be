package query

import (
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The bitwise query operators: $bitsAllSet, $bitsAllClear, $bitsAnySet,
// $bitsAnyClear. The argument names bit positions: an array of positions,
// a non-negative integral number (its set bits) or BinData (its set bits,
// byte 0 holding bits 0–7). A number field is tested as a 64-bit two's
// complement integer (positions from 64 up are its sign); a double or
// decimal that is not an integer in the int64 range never matches. A
// BinData field's bits past its end are clear. Other types never match.

// bitsOp is one of the four operators.
type bitsOp struct {
	all bool // all positions, else any
	set bool // test for set bits, else clear
}

var bitsOps = map[string]bitsOp{
	"$bitsAllSet":   {all: true, set: true},
	"$bitsAllClear": {all: true, set: false},
	"$bitsAnySet":   {all: false, set: true},
	"$bitsAnyClear": {all: false, set: false},
}

// bitsPred builds the predicate of a bitwise operator, refusing its
// argument with mongod's errors.
func bitsPred(name string, op bitsOp, arg bson.RawValue) (func(bson.RawValue) bool, error) {
	positions, err := bitPositions(name, arg)
	if err != nil {
		return nil, err
	}
	return func(v bson.RawValue) bool {
		var isSet func(p uint32) bool
		switch v.Type {
		case bson.TypeBinary:
			_, data, ok := v.BinaryOK()
			if !ok {
				return false
			}
			isSet = func(p uint32) bool {
				i := int(p / 8)
				return i < len(data) && data[i]&(1<<(p%8)) != 0
			}
		default:
			n, ok := exactInt64(v)
			if !ok {
				return false
			}
			isSet = func(p uint32) bool {
				if p >= 64 {
					return n < 0 // the sign, extended
				}
				return uint64(n)&(1<<p) != 0
			}
		}
		for _, p := range positions {
			if isSet(p) == op.set {
				if !op.all {
					return true
				}
			} else if op.all {
				return false
			}
		}
		return op.all
	}, nil
}

// bitPositions reads a bitwise operator's argument.
func bitPositions(name string, arg bson.RawValue) ([]uint32, error) {
	switch {
	case arg.Type == bson.TypeArray:
		var out []uint32
		for i, e := range arrayValues(arg.Value) {
			p, err := bitPosition(i, e)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	case isNumeric(arg.Type):
		mask, err := nonNegativeInt64(name, arg)
		if err != nil {
			return nil, err
		}
		var out []uint32
		for p := uint32(0); p < 63; p++ {
			if mask&(1<<p) != 0 {
				out = append(out, p)
			}
		}
		return out, nil
	case arg.Type == bson.TypeBinary:
		_, data, _ := arg.BinaryOK()
		var out []uint32
		for i, b := range data {
			for j := uint32(0); j < 8; j++ {
				if b&(1<<j) != 0 {
					out = append(out, uint32(i)*8+j)
				}
			}
		}
		return out, nil
	}
	return nil, badValue("%s takes an Array, a number, or a BinData but received: %s: %s", name, name, debugString(arg))
}

// bitPosition reads element i of a positions array (mongod: BadValue).
func bitPosition(i int, e bson.RawValue) (uint32, error) {
	show := func() string { return strconv.Itoa(i) + ": " + debugString(e) }
	if !isNumeric(e.Type) {
		return 0, badValue("bit positions must be an integer but got: %s", show())
	}
	var n int64
	switch e.Type {
	case bson.TypeDouble:
		f := toNum(e).f
		switch {
		case math.IsNaN(f):
			return 0, badValue("bit positions cannot take a NaN: %s", show())
		case f > math.MaxInt32 || f < math.MinInt32:
			return 0, badValue("bit positions cannot be represented as a 32-bit signed integer: %s", show())
		case f != math.Trunc(f):
			return 0, badValue("bit positions must be an integer but got: %s", show())
		}
		n = int64(f)
	case bson.TypeDecimal128:
		v, ok := exactInt64(e)
		if !ok {
			return 0, badValue("bit positions cannot be represented as a 32-bit signed integer: %s", show())
		}
		n = v
	default:
		n = toNum(e).i
	}
	if n > math.MaxInt32 || n < math.MinInt32 {
		return 0, badValue("bit positions cannot be represented as a 32-bit signed integer: %s", show())
	}
	if n < 0 {
		return 0, badValue("bit positions must be >= 0 but got: %s", show())
	}
	return uint32(n), nil
}

// nonNegativeInt64 reads a numeric bitmask as mongod's
// parseIntegerElementToNonNegativeLong does (FailedToParse).
func nonNegativeInt64(name string, v bson.RawValue) (int64, error) {
	show := name + ": " + debugString(v)
	fail := func(format string) error { return mongoerr.New(mongoerr.FailedToParse, format, show) }
	var n int64
	switch v.Type {
	case bson.TypeDouble:
		f := toNum(v).f
		switch {
		case math.IsNaN(f):
			return 0, fail("Expected an integer, but found NaN in: %s")
		case f >= 0x1p63 || f < -0x1p63:
			return 0, fail("Cannot represent as a 64-bit integer: %s")
		case f != math.Trunc(f):
			return 0, fail("Expected an integer: %s")
		}
		n = int64(f)
	case bson.TypeDecimal128:
		x, ok := exactInt64(v)
		if !ok {
			return 0, fail("Cannot represent as a 64-bit integer: %s")
		}
		n = x
	default:
		n = toNum(v).i
	}
	if n < 0 {
		return 0, fail("Expected a positive number in: %s")
	}
	return n, nil
}

// exactInt64 is a number's value when it is an integer in the int64 range.
func exactInt64(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		return toNum(v).i, true
	case bson.TypeDouble:
		f := toNum(v).f
		if math.IsNaN(f) || f >= 0x1p63 || f < -0x1p63 || f != math.Trunc(f) {
			return 0, false
		}
		return int64(f), true
	case bson.TypeDecimal128:
		r, ok := new(big.Rat).SetString(toNum(v).d.String())
		if !ok || !r.IsInt() || !r.Num().IsInt64() {
			return 0, false
		}
		return r.Num().Int64(), true
	}
	return 0, false
}
