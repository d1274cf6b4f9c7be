package query

import (
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The type conversion operators: $convert and its shorthands.

const codeConversionFailure mongoerr.Code = 241

func init() {
	for op, t := range map[string]bson.Type{"$toInt": bson.TypeInt32, "$toLong": bson.TypeInt64, "$toDouble": bson.TypeDouble,
		"$toDecimal": bson.TypeDecimal128, "$toString": bson.TypeString, "$toBool": bson.TypeBoolean, "$toObjectId": bson.TypeObjectID} {
		target := t
		registerOp(fnOp(1, 1, func(_ string, a []bson.RawValue) (bson.RawValue, error) { return convertValue(a[0], target) }), op)
	}
	registerOp(fnOp(1, 1, func(_ string, a []bson.RawValue) (bson.RawValue, error) { return rvBool(isNumeric(a[0].Type)), nil }), "$isNumber")
	registerOp(compileConvert, "$convert")
}

func convFail(v bson.RawValue, to bson.Type) error {
	return mongoerr.New(codeConversionFailure, "Unsupported conversion from %s to %s in $convert with no onError value", TypeName(v.Type), TypeName(to))
}

// convertValue implements $convert's table; null and missing give null.
func convertValue(v bson.RawValue, to bson.Type) (bson.RawValue, error) {
	if isNullish(v) {
		return rvNull, nil
	}
	if v.Type == to && to != bson.TypeString {
		return v, nil
	}
	switch to {
	case bson.TypeBoolean:
		switch {
		case isNumeric(v.Type):
			return rvBool(!toNum(v).isZero()), nil
		case v.Type == bson.TypeString || v.Type == bson.TypeDateTime || v.Type == bson.TypeObjectID || v.Type == bson.TypeTimestamp:
			return rvBool(true), nil
		}
	case bson.TypeInt32, bson.TypeInt64:
		var i int64
		switch {
		case v.Type == bson.TypeBoolean:
			if v.Boolean() {
				i = 1
			}
		case v.Type == bson.TypeDateTime && to == bson.TypeInt64:
			i, _ = v.DateTimeOK()
		case isNumeric(v.Type):
			n := toNum(v)
			if n.isInt() {
				i = n.i
			} else {
				f := n.float()
				if math.IsNaN(f) || math.IsInf(f, 0) || f >= 9.223372036854776e18 || f < -9.223372036854776e18 {
					return missing, mongoerr.New(codeConversionFailure, "Conversion would overflow target type in $convert with no onError value: %s", debugString(v))
				}
				i = int64(f)
			}
		case v.Type == bson.TypeString:
			s := stringish(v)
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return missing, mongoerr.New(codeConversionFailure, "Failed to parse number '%s' in $convert with no onError value: Bad digit \"%s\" while parsing %s", s, s, s)
			}
			i = n
		default:
			return missing, convFail(v, to)
		}
		if to == bson.TypeInt32 {
			if i > math.MaxInt32 || i < math.MinInt32 {
				return missing, mongoerr.New(codeConversionFailure, "Conversion would overflow target type in $convert with no onError value: %s", debugString(v))
			}
			return rvInt32(int32(i)), nil
		}
		return rvInt64(i), nil
	case bson.TypeDouble:
		switch {
		case v.Type == bson.TypeBoolean:
			if v.Boolean() {
				return rvDouble(1), nil
			}
			return rvDouble(0), nil
		case v.Type == bson.TypeDateTime:
			ms, _ := v.DateTimeOK()
			return rvDouble(float64(ms)), nil
		case isNumeric(v.Type):
			return rvDouble(toNum(v).float()), nil
		case v.Type == bson.TypeString:
			s := stringish(v)
			f, err := strconv.ParseFloat(s, 64)
			if err != nil && !strings.Contains(err.Error(), "range") {
				return missing, mongoerr.New(codeConversionFailure, "Failed to parse number '%s' in $convert with no onError value", s)
			}
			return rvDouble(f), nil
		}
	case bson.TypeDecimal128:
		switch {
		case v.Type == bson.TypeBoolean:
			d, _ := bson.ParseDecimal128(map[bool]string{true: "1", false: "0"}[v.Boolean()])
			return rvDecimal(d), nil
		case isNumeric(v.Type):
			return rvDecimal(decimalOf(toNum(v))), nil
		case v.Type == bson.TypeDateTime:
			ms, _ := v.DateTimeOK()
			d, _ := bson.ParseDecimal128(strconv.FormatInt(ms, 10))
			return rvDecimal(d), nil
		case v.Type == bson.TypeString:
			d, err := bson.ParseDecimal128(stringish(v))
			if err != nil {
				return missing, mongoerr.New(codeConversionFailure, "Failed to parse number '%s' in $convert with no onError value", stringish(v))
			}
			return rvDecimal(d), nil
		}
	case bson.TypeString:
		switch v.Type {
		case bson.TypeString:
			return v, nil
		case bson.TypeBoolean:
			return rvString(strconv.FormatBool(v.Boolean())), nil
		case bson.TypeObjectID:
			return rvString(v.ObjectID().Hex()), nil
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128, bson.TypeDateTime:
			s, err := coerceToString("$convert", v)
			return rvString(s), err
		}
	case bson.TypeObjectID:
		if v.Type == bson.TypeString {
			oid, err := bson.ObjectIDFromHex(stringish(v))
			if err != nil {
				return missing, mongoerr.New(codeConversionFailure, "Failed to parse objectId '%s' in $convert with no onError value: Invalid string length for parsing to OID, expected 24 but found %d", stringish(v), len(stringish(v)))
			}
			return bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}, nil
		}
	case bson.TypeDateTime:
		switch v.Type {
		case bson.TypeDouble, bson.TypeInt64, bson.TypeDecimal128:
			f := toNum(v).float()
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return missing, mongoerr.New(codeConversionFailure, "Conversion would overflow target type in $convert with no onError value: %s", debugString(v))
			}
			if v.Type == bson.TypeInt64 {
				return rvDate(toNum(v).i), nil
			}
			return rvDate(int64(f)), nil
		case bson.TypeTimestamp, bson.TypeObjectID:
			t, _, _ := asTime("$convert", v)
			return rvDate(t.UnixMilli()), nil
		case bson.TypeString:
			t, err := parseDateString(stringish(v))
			if err != nil {
				return missing, mongoerr.New(codeConversionFailure, "Error parsing date string '%s'", stringish(v))
			}
			return rvDate(t.UnixMilli()), nil
		}
	}
	return missing, convFail(v, to)
}

// parseDateString reads the ISO 8601 forms MongoDB accepts for dates.
func parseDateString(s string) (time.Time, error) {
	var err error
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05Z0700",
		"2006-01-02T15:04:05.000", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// convertTarget reads $convert's "to": a type name or number.
func convertTarget(v bson.RawValue) (bson.Type, error) {
	if v.Type == bson.TypeString {
		t, ok := typeByAlias(stringish(v))
		if ok {
			switch t {
			case bson.TypeDouble, bson.TypeString, bson.TypeObjectID, bson.TypeBoolean, bson.TypeDateTime,
				bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
				return t, nil
			}
		}
		return 0, mongoerr.New(mongoerr.BadValue, "Unknown type name: %s", stringish(v))
	}
	if isNumeric(v.Type) {
		n, ok := exactInt(v)
		if ok {
			return bson.Type(n), nil
		}
	}
	return 0, mongoerr.New(mongoerr.FailedToParse, "$convert's 'to' argument must be a string or number, but is %s", TypeName(v.Type))
}

func compileConvert(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.FailedToParse, "$convert expects an object of named arguments but found: %s", TypeName(arg.Type))
	}
	a, err := namedArgs(op, arg, depth, nil, []string{"input", "to", "onError", "onNull", "format", "base", "byteOrder"}, mongoerr.FailedToParse, mongoerr.FailedToParse, mongoerr.FailedToParse)
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"format", "base", "byteOrder"} {
		if _, ok := a[k]; ok {
			return nil, mongoerr.New(mongoerr.FailedToParse, "$convert found an unknown argument: %s", k)
		}
	}
	if a["input"] == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "Missing 'input' parameter to $convert")
	}
	if a["to"] == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "Missing 'to' parameter to $convert")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		in, err := a["input"].eval(ec)
		if err != nil {
			return missing, err
		}
		tv, err := a["to"].eval(ec)
		if err != nil || isNullish(tv) {
			return rvNull, err
		}
		to, err := convertTarget(tv)
		if err != nil {
			return missing, err
		}
		if isNullish(in) {
			if on, ok := a["onNull"]; ok {
				return on.eval(ec)
			}
			return rvNull, nil
		}
		out, err := convertValue(in, to)
		if err != nil && mongoerr.CodeOf(err) == codeConversionFailure {
			if on, ok := a["onError"]; ok {
				return on.eval(ec)
			}
		}
		return out, err
	}), nil
}
