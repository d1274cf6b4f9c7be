package query

import (
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Math operators: $ceil, $floor, $round, $trunc, $sqrt, $pow, $exp, $ln,
// $log, $log10, and $rand. Rounding is exact (decimal arithmetic on the
// value's decimal digits; a double first becomes its 34-digit decimal, as
// in mongod). $sqrt, $exp, $ln, $log, $log10 and $pow of a decimal are
// computed in double precision and returned as a decimal.

// codeSingleNumeric is mongod's error for a non-number given to a
// one-argument numeric operator.
const codeSingleNumeric mongoerr.Code = 28765

func init() {
	registerOp(fnOp(1, 1, evalCeilFloor), "$ceil", "$floor")
	registerOp(fnOp(1, 2, evalRoundTrunc), "$round", "$trunc")
	registerOp(fnOp(1, 1, evalUnaryMath), "$sqrt", "$exp", "$ln", "$log10")
	registerOp(fnOp(2, 2, evalLog), "$log")
	registerOp(fnOp(2, 2, evalPow), "$pow")
	registerOp(func(op string, arg bson.RawValue, depth int) (expr, error) {
		if arg.Type != bson.TypeEmbeddedDocument && arg.Type != bson.TypeArray {
			return nil, mongoerr.New(10065, "invalid parameter: expected an object ($rand)")
		}
		if len(docBody(arg.Value)) != 0 {
			return nil, mongoerr.New(3040501, "$rand does not currently accept arguments")
		}
		return exprFunc(func(*evalCtx) (bson.RawValue, error) { return rvDouble(rand.Float64()), nil }), nil
	}, "$rand")
}

type roundMode int

const (
	roundHalfEven roundMode = iota
	roundTrunc
	roundCeil
	roundFloor
)

// ratOf returns n as an exact rational (ok false for NaN and infinities).
func ratOf(n num) (*big.Rat, bool) {
	var s string
	switch n.kind {
	case bson.TypeInt32, bson.TypeInt64:
		return new(big.Rat).SetInt64(n.i), true
	case bson.TypeDouble:
		if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
			return nil, false
		}
		s = strconv.FormatFloat(n.f, 'e', 33, 64)
	default:
		s = n.d.String()
	}
	r, ok := new(big.Rat).SetString(s)
	return r, ok
}

// roundRat rounds r to place decimal digits (negative: tens, hundreds ...).
func roundRat(r *big.Rat, place int64, mode roundMode) *big.Rat {
	scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(abs64(place)), nil))
	x := new(big.Rat).Set(r)
	if place >= 0 {
		x.Mul(x, scale)
	} else {
		x.Quo(x, scale)
	}
	q, rem := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int)) // truncated toward zero
	if rem.Sign() != 0 {
		switch mode {
		case roundCeil:
			if x.Sign() > 0 {
				q.Add(q, big.NewInt(1))
			}
		case roundFloor:
			if x.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			}
		case roundHalfEven:
			twice := new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2))
			c := twice.Cmp(x.Denom())
			if c > 0 || (c == 0 && q.Bit(0) == 1) {
				if x.Sign() > 0 {
					q.Add(q, big.NewInt(1))
				} else {
					q.Sub(q, big.NewInt(1))
				}
			}
		}
	}
	out := new(big.Rat).SetInt(q)
	if place >= 0 {
		return out.Quo(out, scale)
	}
	return out.Mul(out, scale)
}

func abs64(i int64) int64 {
	if i < 0 {
		return -i
	}
	return i
}

// roundNum applies the rounding to n, keeping its type.
func roundNum(n num, place int64, mode roundMode) num {
	if n.isInt() && place >= 0 {
		return n
	}
	r, ok := ratOf(n)
	if !ok {
		return n // NaN, ±Infinity
	}
	res := roundRat(r, place, mode)
	switch n.kind {
	case bson.TypeInt32, bson.TypeInt64:
		i := res.Num().Int64()
		if n.kind == bson.TypeInt32 && (i > math.MaxInt32 || i < math.MinInt32) {
			return num{kind: bson.TypeInt64, i: i}
		}
		return num{kind: n.kind, i: i}
	case bson.TypeDouble:
		f, _ := res.Float64()
		if f == 0 && math.Signbit(n.f) {
			f = math.Copysign(0, -1)
		}
		return num{kind: bson.TypeDouble, f: f}
	}
	digits := max(place, 0)
	d, err := bson.ParseDecimal128(res.FloatString(int(digits)))
	if err != nil {
		return n
	}
	return num{kind: bson.TypeDecimal128, d: d}
}

func evalCeilFloor(op string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) {
		return rvNull, nil
	}
	if !isNumeric(a[0].Type) {
		return missing, mongoerr.New(codeSingleNumeric, "%s only supports numeric types, not %s", op, TypeName(a[0].Type))
	}
	mode := roundCeil
	if op == "$floor" {
		mode = roundFloor
	}
	n := toNum(a[0])
	if n.kind == bson.TypeDouble {
		if mode == roundCeil {
			return rvDouble(math.Ceil(n.f)), nil
		}
		return rvDouble(math.Floor(n.f)), nil
	}
	return roundNum(n, 0, mode).raw(), nil
}

func evalRoundTrunc(op string, a []bson.RawValue) (bson.RawValue, error) {
	for _, v := range a {
		if isNullish(v) {
			return rvNull, nil
		}
	}
	if !isNumeric(a[0].Type) {
		return missing, mongoerr.New(51081, "%s only supports numeric types, not %s", op, TypeName(a[0].Type))
	}
	place := int64(0)
	if len(a) == 2 {
		p, ok := exactInt(a[1])
		if !ok {
			return missing, mongoerr.New(51082, "precision argument to  %s must be a integral value", op)
		}
		if p < -20 || p > 100 {
			return missing, mongoerr.New(51083, "cannot apply %s with precision value %d value must be in [-20, 100]", op, p)
		}
		place = p
	}
	mode := roundHalfEven
	if op == "$trunc" {
		mode = roundTrunc
	}
	return roundNum(toNum(a[0]), place, mode).raw(), nil
}

// mathResult returns f as a double, or as a decimal when the input was one.
func mathResult(f float64, decimal bool) bson.RawValue {
	if decimal {
		d, err := bson.ParseDecimal128(decimalText(f))
		if err == nil {
			return rvDecimal(d)
		}
	}
	return rvDouble(f)
}

func decimalText(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strings.ToUpper(strconv.FormatFloat(f, 'g', -1, 64))
}

func evalUnaryMath(op string, a []bson.RawValue) (bson.RawValue, error) {
	v := a[0]
	if isNullish(v) {
		return rvNull, nil
	}
	if !isNumeric(v.Type) {
		return missing, mongoerr.New(codeSingleNumeric, "%s only supports numeric types, not %s", op, TypeName(v.Type))
	}
	n := toNum(v)
	f := n.float()
	dec := n.kind == bson.TypeDecimal128
	switch op {
	case "$sqrt":
		if f < 0 {
			return missing, mongoerr.New(28714, "$sqrt's argument must be greater than or equal to 0")
		}
		return mathResult(math.Sqrt(f), dec), nil
	case "$exp":
		return mathResult(math.Exp(f), dec), nil
	case "$ln":
		if f <= 0 {
			return missing, mongoerr.New(28766, "$ln's argument must be a positive number, but is %s", debugString(v))
		}
		return mathResult(math.Log(f), dec), nil
	}
	if f <= 0 {
		return missing, mongoerr.New(28761, "$log10's argument must be a positive number, but is %s", debugString(v))
	}
	return mathResult(math.Log10(f), dec), nil
}

func evalLog(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) || isNullish(a[1]) {
		return rvNull, nil
	}
	if !isNumeric(a[0].Type) {
		return missing, mongoerr.New(28756, "$log's argument must be numeric, not %s", TypeName(a[0].Type))
	}
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(28757, "$log's base must be numeric, not %s", TypeName(a[1].Type))
	}
	x, b := toNum(a[0]), toNum(a[1])
	if x.float() <= 0 {
		return missing, mongoerr.New(28758, "$log's argument must be a positive number, but is %s", debugString(a[0]))
	}
	if b.float() <= 0 || b.float() == 1 {
		return missing, mongoerr.New(28759, "$log's base must be a positive number not equal to 1, but is %s", debugString(a[1]))
	}
	dec := x.kind == bson.TypeDecimal128 || b.kind == bson.TypeDecimal128
	return mathResult(math.Log(x.float())/math.Log(b.float()), dec), nil
}

func evalPow(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) || isNullish(a[1]) {
		return rvNull, nil
	}
	if !isNumeric(a[0].Type) {
		return missing, mongoerr.New(28762, "$pow's base must be numeric, not %s", TypeName(a[0].Type))
	}
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(28763, "$pow's exponent must be numeric, not %s", TypeName(a[1].Type))
	}
	b, e := toNum(a[0]), toNum(a[1])
	if b.isZero() && e.float() < 0 {
		return missing, mongoerr.New(28764, "$pow cannot take a base of 0 and a negative exponent")
	}
	if b.kind == bson.TypeDecimal128 || e.kind == bson.TypeDecimal128 {
		return mathResult(math.Pow(b.float(), e.float()), true), nil
	}
	if b.kind == bson.TypeDouble || e.kind == bson.TypeDouble {
		return rvDouble(math.Pow(b.float(), e.float())), nil
	}
	// Both integers.
	if e.i < 0 {
		switch b.i {
		case 1:
			return num{kind: max(b.kind, e.kind), i: 1}.raw(), nil
		case -1:
			r := int64(1)
			if e.i%2 != 0 {
				r = -1
			}
			return num{kind: max(b.kind, e.kind), i: r}.raw(), nil
		}
		return rvDouble(math.Pow(float64(b.i), float64(e.i))), nil
	}
	if (b.i > 1 || b.i < -1) && e.i > 64 {
		return rvDouble(math.Pow(float64(b.i), float64(e.i))), nil
	}
	if b.i == 0 || b.i == 1 || (b.i == -1 && e.i%2 == 0) {
		e.i = min(e.i, 1)
	} else if b.i == -1 {
		e.i = 1
	}
	res := new(big.Int).Exp(big.NewInt(b.i), big.NewInt(e.i), nil)
	if res.IsInt64() {
		r := res.Int64()
		if b.kind == bson.TypeInt32 && e.kind == bson.TypeInt32 && r >= math.MinInt32 && r <= math.MaxInt32 {
			return rvInt32(int32(r)), nil
		}
		return rvInt64(r), nil
	}
	return rvDouble(math.Pow(float64(b.i), float64(e.i))), nil
}
