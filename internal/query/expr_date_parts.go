package query

import (
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// $dateToParts, $dateFromParts, $dateFromString and $dateTrunc.

func init() {
	registerOp(compileDateToParts, "$dateToParts")
	registerOp(compileDateFromParts, "$dateFromParts")
	registerOp(compileDateFromString, "$dateFromString")
	registerOp(compileDateTrunc, "$dateTrunc")
}

// namedExprs compiles an object of named arguments.
func namedExprs(arg bson.RawValue, depth int, notObj func() error, unknown func(string) error, allowed ...string) (map[string]expr, error) {
	raw, err := objectArgs(arg, notObj, unknown, allowed...)
	if err != nil {
		return nil, err
	}
	return compileNamed(raw, depth)
}

func compileDateToParts(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := namedExprs(arg, depth,
		func() error { return mongoerr.New(40524, "$dateToParts only supports an object as its argument") },
		func(k string) error { return mongoerr.New(40520, "Unrecognized argument to $dateToParts: %s", k) },
		"date", "timezone", "iso8601")
	if err != nil {
		return nil, err
	}
	if a["date"] == nil {
		return nil, mongoerr.New(40522, "Missing 'date' parameter to $dateToParts")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		iso := false
		if x := a["iso8601"]; x != nil {
			v, err := x.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(v) {
				return rvNull, nil
			}
			if v.Type != bson.TypeBoolean {
				return missing, mongoerr.New(40521, "iso8601 must evaluate to a bool, found %s", TypeName(v.Type))
			}
			iso = v.Boolean()
		}
		dv, err := a["date"].eval(ec)
		if err != nil {
			return missing, err
		}
		t, ok, err := asTime(op, dv)
		if err != nil || !ok {
			return rvNull, err
		}
		t = t.In(loc)
		b := bsoncore.NewDocumentBuilder()
		if iso {
			y, w := t.ISOWeek()
			b.AppendInt32("isoWeekYear", int32(y)).AppendInt32("isoWeek", int32(w)).
				AppendInt32("isoDayOfWeek", int32(datePart("$isoDayOfWeek", t)))
		} else {
			b.AppendInt32("year", int32(t.Year())).AppendInt32("month", int32(t.Month())).AppendInt32("day", int32(t.Day()))
		}
		b.AppendInt32("hour", int32(t.Hour())).AppendInt32("minute", int32(t.Minute())).
			AppendInt32("second", int32(t.Second())).AppendInt32("millisecond", int32(t.Nanosecond()/1e6))
		return rvDoc(b.Build()), nil
	}), nil
}

var natParts = []string{"year", "month", "day"}
var isoParts = []string{"isoWeekYear", "isoWeek", "isoDayOfWeek"}
var timeParts = []string{"hour", "minute", "second", "millisecond"}

func compileDateFromParts(op string, arg bson.RawValue, depth int) (expr, error) {
	allowed := append(append(append([]string{"timezone"}, natParts...), isoParts...), timeParts...)
	a, err := namedExprs(arg, depth,
		func() error { return mongoerr.New(40519, "$dateFromParts only supports an object as its argument") },
		func(k string) error { return mongoerr.New(40518, "Unrecognized argument to $dateFromParts: %s", k) },
		allowed...)
	if err != nil {
		return nil, err
	}
	hasNat := a["year"] != nil
	hasISO := a["isoWeekYear"] != nil
	switch {
	case !hasNat && !hasISO:
		return nil, mongoerr.New(40516, "$dateFromParts requires either 'year' or 'isoWeekYear' to be present")
	case hasNat && (a["isoWeek"] != nil || a["isoDayOfWeek"] != nil || hasISO):
		return nil, mongoerr.New(40489, "$dateFromParts does not allow mixing natural dates with ISO dates")
	case hasISO && (a["month"] != nil || a["day"] != nil):
		return nil, mongoerr.New(40525, "$dateFromParts does not allow mixing ISO dates with natural dates")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		vals := map[string]int64{}
		for _, name := range allowed[1:] {
			x := a[name]
			def := int64(0)
			switch name {
			case "month", "day", "isoWeek", "isoDayOfWeek":
				def = 1
			}
			if x == nil {
				vals[name] = def
				continue
			}
			v, err := x.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(v) {
				return rvNull, nil
			}
			n, ok := exactInt(v)
			if !ok {
				return missing, mongoerr.New(40515, "'%s' must evaluate to an integer, found %s with value %s", name, TypeName(v.Type), debugString(v))
			}
			switch name {
			case "year", "isoWeekYear":
				if n < 1 || n > 9999 {
					code := mongoerr.Code(40523)
					if name == "isoWeekYear" {
						code = 31095
					}
					return missing, mongoerr.New(code, "'%s' must evaluate to an integer in the range 1 to 9999, found %d", name, n)
				}
			case "second", "millisecond":
			default:
				if n < -32768 || n > 32767 {
					return missing, mongoerr.New(31034, "'%s' must evaluate to a value in the range [-32768, 32767]; value %d is not in range", name, n)
				}
			}
			vals[name] = n
		}
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		var t time.Time
		if hasNat {
			t = time.Date(int(vals["year"]), time.Month(vals["month"]), int(vals["day"]), int(vals["hour"]), int(vals["minute"]), 0, 0, loc)
		} else {
			jan4 := time.Date(int(vals["isoWeekYear"]), 1, 4, 0, 0, 0, 0, loc)
			monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
			days := (vals["isoWeek"]-1)*7 + vals["isoDayOfWeek"] - 1
			t = time.Date(monday.Year(), monday.Month(), monday.Day()+int(days), int(vals["hour"]), int(vals["minute"]), 0, 0, loc)
		}
		ms := t.UnixMilli() + vals["second"]*1000 + vals["millisecond"]
		return rvDate(ms), nil
	}), nil
}

func compileDateFromString(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := namedExprs(arg, depth,
		func() error {
			return mongoerr.New(40540, "$dateFromString only supports an object as an argument, found: %s", TypeName(arg.Type))
		},
		func(k string) error { return mongoerr.New(40541, "Unrecognized argument to $dateFromString: %s", k) },
		"dateString", "format", "timezone", "onError", "onNull")
	if err != nil {
		return nil, err
	}
	if a["dateString"] == nil {
		return nil, mongoerr.New(40542, "Missing 'dateString' parameter to $dateFromString")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		ds, err := a["dateString"].eval(ec)
		if err != nil {
			return missing, err
		}
		format := ""
		hasFormat := false
		if x := a["format"]; x != nil {
			fv, err := x.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(fv) {
				return rvNull, nil
			}
			if fv.Type != bson.TypeString {
				return missing, mongoerr.New(40684, "$dateFromString requires that 'format' be a string, found: %s with value %s", TypeName(fv.Type), debugString(fv))
			}
			format, hasFormat = stringish(fv), true
			if err := checkDateFormat(format); err != nil {
				return missing, err
			}
		}
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		if isNullish(ds) {
			if x := a["onNull"]; x != nil {
				return x.eval(ec)
			}
			return rvNull, nil
		}
		fail := func(err error) (bson.RawValue, error) {
			if x := a["onError"]; x != nil {
				return x.eval(ec)
			}
			return missing, err
		}
		if ds.Type != bson.TypeString {
			return fail(mongoerr.New(codeConversionFailure, "$dateFromString requires that 'dateString' be a string, found: %s with value %s", TypeName(ds.Type), debugString(ds)))
		}
		s := stringish(ds)
		var t time.Time
		var zoned bool
		if hasFormat {
			t, zoned, err = parseWithFormat(s, format, loc)
		} else {
			t, zoned, err = parseDateDefault(s, loc)
		}
		if err != nil {
			return fail(err)
		}
		if zoned && a["timezone"] != nil {
			return fail(mongoerr.New(codeConversionFailure, "you cannot pass in a date/time string with time zone information ('%s') together with a timezone argument", s))
		}
		return rvDate(t.UnixMilli()), nil
	}), nil
}

func dateParseErr(s, why string) error {
	return mongoerr.New(codeConversionFailure, "Error parsing date string '%s'; %s", s, why)
}

// parseDateDefault reads the ISO 8601 forms (and "YYYY-MM-DD hh:mm:ss");
// strings without a zone are in loc.
func parseDateDefault(s string, loc *time.Location) (time.Time, bool, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04Z07:00", "2006-01-02 15:04:05.999999999Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true, nil
		}
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02", "2006/01/02", "2006/01/02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, false, nil
		}
	}
	return time.Time{}, false, dateParseErr(s, "the string is not a date in a format cmkdb reads without 'format' (ISO 8601)")
}

// parseWithFormat reads s with $dateFromString's format specifiers.
func parseWithFormat(s, f string, loc *time.Location) (time.Time, bool, error) {
	year, month, day, hour, minute, sec, ms := 1970, 1, 1, 0, 0, 0, 0
	isoYear, isoWeek, isoDay, yday := -1, -1, -1, -1
	var offset *int
	pos := 0
	num := func(minDigits, maxDigits int) (int, bool) {
		start := pos
		for pos < len(s) && pos-start < maxDigits && s[pos] >= '0' && s[pos] <= '9' {
			pos++
		}
		if pos-start < minDigits {
			return 0, false
		}
		n, _ := strconv.Atoi(s[start:pos])
		return n, true
	}
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			if pos >= len(s) || s[pos] != f[i] {
				return time.Time{}, false, dateParseErr(s, "the string does not match the format")
			}
			pos++
			continue
		}
		i++
		var ok bool
		switch f[i] {
		case 'Y':
			year, ok = num(4, 4)
		case 'm':
			month, ok = num(1, 2)
		case 'd':
			day, ok = num(1, 2)
		case 'H':
			hour, ok = num(1, 2)
		case 'M':
			minute, ok = num(1, 2)
		case 'S':
			sec, ok = num(1, 2)
		case 'L':
			var n int
			start := pos
			n, ok = num(1, 3)
			for d := pos - start; d < 3; d++ {
				n *= 10
			}
			ms = n
		case 'j':
			yday, ok = num(1, 3)
		case 'G':
			isoYear, ok = num(4, 4)
		case 'V':
			isoWeek, ok = num(1, 2)
		case 'u':
			isoDay, ok = num(1, 1)
		case 'z':
			if pos < len(s) && (s[pos] == '+' || s[pos] == '-') {
				sign := 1
				if s[pos] == '-' {
					sign = -1
				}
				pos++
				var h, m int
				if h, ok = num(2, 2); ok {
					if pos < len(s) && s[pos] == ':' {
						pos++
					}
					m, ok = num(2, 2)
				}
				o := sign * (h*3600 + m*60)
				offset = &o
			} else if pos < len(s) && s[pos] == 'Z' {
				pos++
				o := 0
				offset, ok = &o, true
			}
		case 'Z':
			sign := 1
			if pos < len(s) && (s[pos] == '+' || s[pos] == '-') {
				if s[pos] == '-' {
					sign = -1
				}
				pos++
			}
			var m int
			if m, ok = num(1, 4); ok {
				o := sign * m * 60
				offset = &o
			}
		case '%':
			ok = pos < len(s) && s[pos] == '%'
			pos++
		default:
			return time.Time{}, false, mongoerr.New(18536, "Invalid format character '%%%c' in format string", f[i])
		}
		if !ok {
			return time.Time{}, false, dateParseErr(s, "the string does not match the format")
		}
	}
	if pos != len(s) {
		return time.Time{}, false, dateParseErr(s, "trailing data")
	}
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false, dateParseErr(s, "a date part is out of range")
	}
	if offset != nil {
		loc = time.FixedZone("", *offset)
	}
	var t time.Time
	switch {
	case isoYear >= 0:
		jan4 := time.Date(isoYear, 1, 4, 0, 0, 0, 0, loc)
		monday := jan4.AddDate(0, 0, -((int(jan4.Weekday()) + 6) % 7))
		w, d := max(isoWeek, 1), max(isoDay, 1)
		t = time.Date(monday.Year(), monday.Month(), monday.Day()+(w-1)*7+d-1, hour, minute, sec, ms*1e6, loc)
	case yday >= 0:
		t = time.Date(year, 1, yday, hour, minute, sec, ms*1e6, loc)
	default:
		t = time.Date(year, time.Month(month), day, hour, minute, sec, ms*1e6, loc)
		if t.Day() != day {
			return time.Time{}, false, dateParseErr(s, "the day is not valid for the month")
		}
	}
	return t, offset != nil, nil
}

func compileDateTrunc(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := namedExprs(arg, depth,
		func() error { return mongoerr.New(5439007, "$dateTrunc only supports an object as its argument") },
		func(k string) error { return mongoerr.New(5439008, "Unrecognized argument to $dateTrunc: %s", k) },
		"date", "unit", "binSize", "timezone", "startOfWeek")
	if err != nil {
		return nil, err
	}
	if a["date"] == nil {
		return nil, mongoerr.New(5439009, "Missing 'date' parameter to $dateTrunc")
	}
	if a["unit"] == nil {
		return nil, mongoerr.New(5439010, "Missing 'unit' parameter to $dateTrunc")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		vals := map[string]bson.RawValue{}
		for _, k := range []string{"date", "unit", "binSize", "timezone", "startOfWeek"} {
			if a[k] == nil {
				continue
			}
			v, err := a[k].eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(v) && (k != "startOfWeek" || (vals["unit"].Type == bson.TypeString && stringish(vals["unit"]) == "week")) {
				return rvNull, nil
			}
			vals[k] = v
		}
		t, _, err := asTime(op, vals["date"])
		if err != nil {
			return missing, mongoerr.New(5439012, "$dateTrunc requires 'date' to be a date, but got %s", TypeName(vals["date"].Type))
		}
		u := vals["unit"]
		if u.Type != bson.TypeString {
			return missing, mongoerr.New(5439013, "$dateTrunc requires 'unit' to be a string, but got %s", TypeName(u.Type))
		}
		unit := stringish(u)
		if !dateUnits[unit] {
			return missing, mongoerr.New(5439014, "$dateTrunc parameter 'unit' value cannot be recognized as a time unit: %s", unit)
		}
		bin := int64(1)
		if b, ok := vals["binSize"]; ok {
			n, ok := exactInt(b)
			if !ok {
				return missing, mongoerr.New(5439017, "$dateTrunc requires 'binSize' to be a 64-bit integer, but got value '%s' of type %s", debugString(b), TypeName(b.Type))
			}
			if n <= 0 {
				return missing, mongoerr.New(5439018, "$dateTrunc requires 'binSize' to be greater than 0, but got value %d", n)
			}
			bin = n
		}
		loc := time.UTC
		if tz, ok := vals["timezone"]; ok {
			if loc, err = parseTZ(tz); err != nil {
				return missing, err
			}
		}
		sow := time.Sunday
		if w, ok := vals["startOfWeek"]; ok && unit == "week" {
			if w.Type != bson.TypeString {
				return missing, mongoerr.New(5439015, "$dateTrunc requires 'startOfWeek' to be a string, but got %s", TypeName(w.Type))
			}
			d, ok := weekdays[strings.ToLower(stringish(w))]
			if !ok {
				return missing, mongoerr.New(5439016, "$dateTrunc parameter 'startOfWeek' value cannot be recognized as a day of a week: %s", stringish(w))
			}
			sow = d
		}
		return rvDate(dateTrunc(t.In(loc), unit, bin, sow).UnixMilli()), nil
	}), nil
}

// dateTrunc truncates t (in its location) to the start of its bin of bin
// units, bins counted from 2000-01-01T00:00 local time (for weeks, from
// the first startOfWeek day on or after it), as mongod.
func dateTrunc(t time.Time, unit string, bin int64, sow time.Weekday) time.Time {
	loc := t.Location()
	floorDiv := func(a, b int64) int64 {
		q := a / b
		if (a%b != 0) && ((a < 0) != (b < 0)) {
			q--
		}
		return q
	}
	switch unit {
	case "year", "quarter", "month":
		per := int64(1)
		if unit == "quarter" {
			per = 3
		} else if unit == "year" {
			per = 12
		}
		months := int64(t.Year()-2000)*12 + int64(t.Month()-1)
		m := floorDiv(months, bin*per) * bin * per
		return time.Date(2000+int(floorDiv(m, 12)), time.Month(m-floorDiv(m, 12)*12+1), 1, 0, 0, 0, 0, loc)
	case "week", "day":
		ref := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		if unit == "week" {
			ref = ref.AddDate(0, 0, (int(sow)-int(ref.Weekday())+7)%7)
		}
		y, mo, d := t.Date()
		days := int64(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Sub(ref).Hours() / 24)
		per := int64(1)
		if unit == "week" {
			per = 7
		}
		n := floorDiv(days, bin*per) * bin * per
		r := ref.AddDate(0, 0, int(n))
		return time.Date(r.Year(), r.Month(), r.Day(), 0, 0, 0, 0, loc)
	}
	ms := map[string]int64{"hour": 3600000, "minute": 60000, "second": 1000, "millisecond": 1}[unit]
	_, off := t.Zone()
	local := t.UnixMilli() + int64(off)*1000
	ref := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	size := bin * ms
	trunc := ref + floorDiv(local-ref, size)*size
	return time.UnixMilli(trunc - int64(off)*1000).In(loc)
}
