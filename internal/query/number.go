package query

import (
	"math"
	"math/big"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// num is a decoded BSON number. Arithmetic follows MongoDB's promotion
// rules: int32 widens to int64 on overflow, any double makes the result a
// double, any decimal makes it a decimal.
type num struct {
	kind bson.Type // TypeInt32, TypeInt64, TypeDouble or TypeDecimal128
	i    int64
	f    float64
	d    bson.Decimal128
}

// toNum decodes a numeric RawValue; non-numbers (and corrupt values) decode
// as int32 zero so callers that validated the type never see garbage.
func toNum(v bson.RawValue) num {
	switch v.Type {
	case bson.TypeInt32:
		i, _ := v.Int32OK()
		return num{kind: bson.TypeInt32, i: int64(i)}
	case bson.TypeInt64:
		i, _ := v.Int64OK()
		return num{kind: bson.TypeInt64, i: i}
	case bson.TypeDouble:
		f, _ := v.DoubleOK()
		return num{kind: bson.TypeDouble, f: f}
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		if !ok {
			return num{kind: bson.TypeInt32}
		}
		return num{kind: bson.TypeDecimal128, d: d}
	}
	return num{kind: bson.TypeInt32}
}

func (n num) raw() bson.RawValue {
	switch n.kind {
	case bson.TypeInt32:
		return rvInt32(int32(n.i))
	case bson.TypeInt64:
		return rvInt64(n.i)
	case bson.TypeDouble:
		return rvDouble(n.f)
	default:
		return rvDecimal(n.d)
	}
}

func (n num) isInt() bool { return n.kind == bson.TypeInt32 || n.kind == bson.TypeInt64 }

// float returns n as a float64 (rounded for big int64s and decimals).
func (n num) float() float64 {
	switch n.kind {
	case bson.TypeInt32, bson.TypeInt64:
		return float64(n.i)
	case bson.TypeDouble:
		return n.f
	}
	f, err := strconv.ParseFloat(n.d.String(), 64)
	if err != nil {
		switch {
		case n.d.IsNaN():
			return math.NaN()
		case n.d.IsInf() > 0:
			return math.Inf(1)
		case n.d.IsInf() < 0:
			return math.Inf(-1)
		}
	}
	return f
}

func (n num) isNaN() bool {
	switch n.kind {
	case bson.TypeDouble:
		return math.IsNaN(n.f)
	case bson.TypeDecimal128:
		return n.d.IsNaN()
	}
	return false
}

func (n num) isZero() bool {
	switch n.kind {
	case bson.TypeInt32, bson.TypeInt64:
		return n.i == 0
	case bson.TypeDouble:
		return n.f == 0
	}
	return n.d.IsZero()
}

// ext is an extended rational: NaN, ±Inf or an exact finite value. It is
// the common ground for comparing numbers of different BSON types exactly.
type ext struct {
	special int // 0 finite, 1 +Inf, -1 -Inf, 2 NaN
	r       *big.Rat
}

func (n num) ext() ext {
	switch n.kind {
	case bson.TypeInt32, bson.TypeInt64:
		return ext{r: new(big.Rat).SetInt64(n.i)}
	case bson.TypeDouble:
		switch {
		case math.IsNaN(n.f):
			return ext{special: 2}
		case math.IsInf(n.f, 1):
			return ext{special: 1}
		case math.IsInf(n.f, -1):
			return ext{special: -1}
		}
		return ext{r: new(big.Rat).SetFloat64(n.f)}
	}
	bi, exp, err := n.d.BigInt()
	if err != nil {
		switch {
		case n.d.IsNaN():
			return ext{special: 2}
		case n.d.IsInf() < 0:
			return ext{special: -1}
		default:
			return ext{special: 1}
		}
	}
	r := new(big.Rat).SetInt(bi)
	if exp != 0 {
		p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
		if exp > 0 {
			r.Mul(r, new(big.Rat).SetInt(p))
		} else {
			r.Quo(r, new(big.Rat).SetInt(p))
		}
	}
	return ext{r: r}
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}

// cmpExt orders NaN below everything (as MongoDB does), then by value.
func cmpExt(a, b ext) int {
	ra, rb := extRank(a), extRank(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	if ra != 2 {
		return 0
	}
	return a.r.Cmp(b.r)
}

func extRank(e ext) int {
	switch e.special {
	case 2:
		return 0
	case -1:
		return 1
	case 0:
		return 2
	}
	return 3
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpFloat orders NaN below all numbers and equal to itself.
func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpIntFloat compares an int64 with a float64 exactly, without rounding
// the integer (float64(i) loses precision beyond 2^53).
func cmpIntFloat(i int64, f float64) int {
	if math.IsNaN(f) {
		return 1
	}
	if i >= -(1<<53) && i <= 1<<53 {
		return cmpFloat(float64(i), f)
	}
	if f >= 9223372036854775808.0 {
		return -1
	}
	if f < -9223372036854775808.0 {
		return 1
	}
	fl := math.Floor(f)
	fi := int64(fl)
	switch {
	case i < fi:
		return -1
	case i > fi:
		return 1
	case f > fl:
		return -1
	}
	return 0
}

// compareNum compares two numbers exactly across types.
func compareNum(a, b num) int {
	switch {
	case a.isInt() && b.isInt():
		return cmpInt64(a.i, b.i)
	case a.kind == bson.TypeDouble && b.kind == bson.TypeDouble:
		return cmpFloat(a.f, b.f)
	case a.isInt() && b.kind == bson.TypeDouble:
		return cmpIntFloat(a.i, b.f)
	case a.kind == bson.TypeDouble && b.isInt():
		return -cmpIntFloat(b.i, a.f)
	}
	return cmpExt(a.ext(), b.ext())
}

// decimalOf converts n to Decimal128 the way MongoDB does for mixed
// arithmetic: doubles are rounded to 15 significant digits.
func decimalOf(n num) bson.Decimal128 {
	switch n.kind {
	case bson.TypeDecimal128:
		return n.d
	case bson.TypeInt32, bson.TypeInt64:
		d, _ := bson.ParseDecimal128(strconv.FormatInt(n.i, 10))
		return d
	}
	switch {
	case math.IsNaN(n.f):
		d, _ := bson.ParseDecimal128("NaN")
		return d
	case math.IsInf(n.f, 1):
		d, _ := bson.ParseDecimal128("Infinity")
		return d
	case math.IsInf(n.f, -1):
		d, _ := bson.ParseDecimal128("-Infinity")
		return d
	}
	d, _ := bson.ParseDecimal128(strconv.FormatFloat(n.f, 'e', 14, 64))
	return d
}

// decimalFromExt rounds an exact value to 34 significant digits.
func decimalFromExt(e ext) bson.Decimal128 {
	var s string
	switch e.special {
	case 2:
		s = "NaN"
	case 1:
		s = "Infinity"
	case -1:
		s = "-Infinity"
	default:
		f := new(big.Float).SetPrec(256).SetRat(e.r)
		s = f.Text('e', 33)
	}
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		// Exponent out of Decimal128 range: saturate.
		if e.r != nil && e.r.Sign() < 0 {
			d, _ = bson.ParseDecimal128("-Infinity")
		} else {
			d, _ = bson.ParseDecimal128("Infinity")
		}
	}
	return d
}

func extArith(op byte, a, b ext) ext {
	if a.special != 0 || b.special != 0 {
		fa, fb := extFloat(a), extFloat(b)
		var r float64
		switch op {
		case '+':
			r = fa + fb
		case '-':
			r = fa - fb
		case '*':
			r = fa * fb
		case '/':
			r = fa / fb
		}
		n := num{kind: bson.TypeDouble, f: r}
		return n.ext()
	}
	r := new(big.Rat)
	switch op {
	case '+':
		r.Add(a.r, b.r)
	case '-':
		r.Sub(a.r, b.r)
	case '*':
		r.Mul(a.r, b.r)
	case '/':
		if b.r.Sign() == 0 {
			return ext{special: 2}
		}
		r.Quo(a.r, b.r)
	}
	return ext{r: r}
}

func extFloat(e ext) float64 {
	switch e.special {
	case 2:
		return math.NaN()
	case 1:
		return math.Inf(1)
	case -1:
		return math.Inf(-1)
	}
	f, _ := e.r.Float64()
	return f
}

// arith applies +, - or * with MongoDB's type promotion. overflow reports
// that an int64 result overflowed; callers decide whether that is an error
// ($inc, $mul) or a promotion to double (aggregation arithmetic).
func arith(op byte, a, b num) (res num, overflow bool) {
	if a.kind == bson.TypeDecimal128 || b.kind == bson.TypeDecimal128 {
		da, db := num{kind: bson.TypeDecimal128, d: decimalOf(a)}, num{kind: bson.TypeDecimal128, d: decimalOf(b)}
		return num{kind: bson.TypeDecimal128, d: decimalFromExt(extArith(op, da.ext(), db.ext()))}, false
	}
	if a.kind == bson.TypeDouble || b.kind == bson.TypeDouble {
		fa, fb := a.float(), b.float()
		var r float64
		switch op {
		case '+':
			r = fa + fb
		case '-':
			r = fa - fb
		case '*':
			r = fa * fb
		}
		return num{kind: bson.TypeDouble, f: r}, false
	}
	var r int64
	var of bool
	switch op {
	case '+':
		r = a.i + b.i
		of = (a.i > 0 && b.i > 0 && r < 0) || (a.i < 0 && b.i < 0 && r >= 0)
	case '-':
		r = a.i - b.i
		of = (a.i >= 0 && b.i < 0 && r < 0) || (a.i < 0 && b.i > 0 && r >= 0)
	case '*':
		if a.i != 0 && b.i != 0 {
			hi, lo := mul64(a.i, b.i)
			r = lo
			of = !(hi == 0 && lo >= 0) && !(hi == -1 && lo < 0)
		}
	}
	if of {
		return num{kind: bson.TypeInt64, i: r}, true
	}
	if a.kind == bson.TypeInt32 && b.kind == bson.TypeInt32 && r >= math.MinInt32 && r <= math.MaxInt32 {
		return num{kind: bson.TypeInt32, i: r}, false
	}
	return num{kind: bson.TypeInt64, i: r}, false
}

// mul64 returns the 128-bit signed product of a and b as (hi, lo).
func mul64(a, b int64) (int64, int64) {
	p := new(big.Int).Mul(big.NewInt(a), big.NewInt(b))
	if p.IsInt64() {
		v := p.Int64()
		if v < 0 {
			return -1, v
		}
		return 0, v
	}
	return 1, 0 // any non-canonical hi marks overflow
}
