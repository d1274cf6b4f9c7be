package query

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The date operators. Dates are UTC milliseconds; a timezone (an Olson
// name or a UTC offset) changes how they are split into parts.

func init() {
	for _, op := range []string{"$year", "$month", "$dayOfMonth", "$hour", "$minute", "$second", "$millisecond",
		"$dayOfWeek", "$dayOfYear", "$week", "$isoWeek", "$isoWeekYear", "$isoDayOfWeek"} {
		registerOp(compileDatePart, op)
	}
	registerOp(compileDateToString, "$dateToString")
	registerOp(fnOp(1, 1, func(_ string, a []bson.RawValue) (bson.RawValue, error) { return convertValue(a[0], bson.TypeDateTime) }), "$toDate")
	registerOp(compileDateAdd, "$dateAdd", "$dateSubtract")
	registerOp(compileDateDiff, "$dateDiff")
}

// asTime converts a date-like value; ok is false for null/missing.
func asTime(op string, v bson.RawValue) (time.Time, bool, error) {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return time.Time{}, false, nil
	case bson.TypeDateTime:
		ms, _ := v.DateTimeOK()
		return time.UnixMilli(ms).UTC(), true, nil
	case bson.TypeTimestamp:
		t, _, _ := v.TimestampOK()
		return time.Unix(int64(t), 0).UTC(), true, nil
	case bson.TypeObjectID:
		oid, _ := v.ObjectIDOK()
		return oid.Timestamp().UTC(), true, nil
	}
	return time.Time{}, false, mongoerr.New(16006, "can't convert from BSON type %s to Date", TypeName(v.Type))
}

// parseTZ reads a timezone argument: missing/null is UTC.
func parseTZ(v bson.RawValue) (*time.Location, error) {
	if isNullish(v) {
		return time.UTC, nil
	}
	if v.Type != bson.TypeString {
		return nil, mongoerr.New(40517, "timezone must evaluate to a string, found %s", TypeName(v.Type))
	}
	s := stringish(v)
	if s != "" && (s[0] == '+' || s[0] == '-') {
		digits := strings.ReplaceAll(s[1:], ":", "")
		if n := len(digits); (n == 2 || n == 4) && allDigits(digits) {
			h, _ := strconv.Atoi(digits[:2])
			m := 0
			if n == 4 {
				m, _ = strconv.Atoi(digits[2:])
			}
			off := h*3600 + m*60
			if s[0] == '-' {
				off = -off
			}
			return time.FixedZone(s, off), nil
		}
	} else if s != "" && s != "Local" {
		if loc, err := time.LoadLocation(s); err == nil {
			return loc, nil
		}
	}
	return nil, mongoerr.New(40485, "unrecognized time zone identifier: \"%s\"", s)
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// dateArgs compiles the {date, timezone} / [date] / date forms.
func dateArgs(op string, arg bson.RawValue, depth int) (date, tz expr, err error) {
	if arg.Type == bson.TypeEmbeddedDocument && !strings.HasPrefix(firstKey(arg.Value), "$") && len(docBody(arg.Value)) > 0 {
		for _, e := range elems(arg.Value) {
			x, err := compileExpr(e.val, depth+1)
			if err != nil {
				return nil, nil, err
			}
			switch e.key {
			case "date":
				date = x
			case "timezone":
				tz = x
			default:
				return nil, nil, mongoerr.New(40535, "unrecognized option to %s: \"%s\". Only 'date' and 'timezone' are allowed.", op, e.key)
			}
		}
		if date == nil {
			return nil, nil, mongoerr.New(40539, "missing 'date' argument to %s, provided: %s", op, debugString(arg))
		}
		return date, tz, nil
	}
	args, err := compileArgs(arg, depth)
	if err != nil {
		return nil, nil, err
	}
	if len(args) != 1 {
		return nil, nil, arityErr(op, "exactly 1", len(args))
	}
	return args[0], nil, nil
}

func evalTZ(ec *evalCtx, tz expr) (*time.Location, bool, error) {
	if tz == nil {
		return time.UTC, true, nil
	}
	v, err := tz.eval(ec)
	if err != nil {
		return nil, false, err
	}
	if isNullish(v) {
		return nil, false, nil // a null timezone makes the result null
	}
	loc, err := parseTZ(v)
	return loc, err == nil, err
}

func compileDatePart(op string, arg bson.RawValue, depth int) (expr, error) {
	date, tz, err := dateArgs(op, arg, depth)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		dv, err := date.eval(ec)
		if err != nil {
			return missing, err
		}
		t, ok, err := asTime(op, dv)
		if err != nil || !ok {
			return rvNull, err
		}
		loc, ok, err := evalTZ(ec, tz)
		if err != nil || !ok {
			return rvNull, err
		}
		return rvInt32(int32(datePart(op, t.In(loc)))), nil
	}), nil
}

func datePart(op string, t time.Time) int {
	switch op {
	case "$year":
		return t.Year()
	case "$month":
		return int(t.Month())
	case "$dayOfMonth":
		return t.Day()
	case "$hour":
		return t.Hour()
	case "$minute":
		return t.Minute()
	case "$second":
		return t.Second()
	case "$millisecond":
		return t.Nanosecond() / 1e6
	case "$dayOfWeek":
		return int(t.Weekday()) + 1
	case "$dayOfYear":
		return t.YearDay()
	case "$week": // weeks start on Sunday; days before the first Sunday are week 0
		return (t.YearDay() - 1 + 7 - int(t.Weekday())) / 7
	case "$isoWeek":
		_, w := t.ISOWeek()
		return w
	case "$isoWeekYear":
		y, _ := t.ISOWeek()
		return y
	case "$isoDayOfWeek":
		return (int(t.Weekday())+6)%7 + 1
	}
	return 0
}

const defaultDateFormat = "%Y-%m-%dT%H:%M:%S.%LZ"

func compileDateToString(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(18629, "$dateToString only supports an object as its argument")
	}
	a := map[string]expr{}
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "date", "format", "timezone", "onNull":
		default:
			return nil, mongoerr.New(18534, "Unrecognized parameter to $dateToString: %s", e.key)
		}
		x, err := compileExpr(e.val, depth+1)
		if err != nil {
			return nil, err
		}
		a[e.key] = x
		if e.key == "format" && e.val.Type == bson.TypeString {
			if err := checkDateFormat(stringish(e.val)); err != nil {
				return nil, err
			}
		}
	}
	if a["date"] == nil {
		return nil, mongoerr.New(18628, "Missing 'date' parameter to $dateToString")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		dv, err := a["date"].eval(ec)
		if err != nil {
			return missing, err
		}
		if isNullish(dv) {
			if on, ok := a["onNull"]; ok {
				return on.eval(ec)
			}
			return rvNull, nil
		}
		format := defaultDateFormat
		if f, ok := a["format"]; ok {
			fv, err := f.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(fv) {
				return rvNull, nil
			}
			if fv.Type != bson.TypeString {
				return missing, mongoerr.New(18533, "$dateToString requires that 'format' be a string, found: %s with value %s", TypeName(fv.Type), debugString(fv))
			}
			format = stringish(fv)
			if err := checkDateFormat(format); err != nil {
				return missing, err
			}
		}
		t, _, err := asTime(op, dv)
		if err != nil {
			return missing, err
		}
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		return rvString(formatDate(format, t.In(loc))), nil
	}), nil
}

func checkDateFormat(f string) error {
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			continue
		}
		if i+1 >= len(f) {
			return mongoerr.New(18535, "Unmatched '%%' at end of format string")
		}
		i++
		if !strings.ContainsRune("dGHjLmMSwuUVYzZ%", rune(f[i])) {
			return mongoerr.New(18536, "Invalid format character '%%%c' in format string", f[i])
		}
	}
	return nil
}

// formatDate applies MongoDB's $dateToString specifiers.
func formatDate(f string, t time.Time) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'G':
			y, _ := t.ISOWeek()
			fmt.Fprintf(&b, "%04d", y)
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'L':
			fmt.Fprintf(&b, "%03d", t.Nanosecond()/1e6)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday())+1)
		case 'u':
			fmt.Fprintf(&b, "%d", datePart("$isoDayOfWeek", t))
		case 'U':
			fmt.Fprintf(&b, "%02d", datePart("$week", t))
		case 'V':
			_, w := t.ISOWeek()
			fmt.Fprintf(&b, "%02d", w)
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'z':
			_, off := t.Zone()
			sign := '+'
			if off < 0 {
				sign, off = '-', -off
			}
			fmt.Fprintf(&b, "%c%02d%02d", sign, off/3600, off%3600/60)
		case 'Z':
			_, off := t.Zone()
			fmt.Fprintf(&b, "%d", off/60)
		case '%':
			b.WriteByte('%')
		}
	}
	return b.String()
}

// Units of $dateAdd, $dateSubtract and $dateDiff.
var dateUnits = map[string]bool{"year": true, "quarter": true, "month": true, "week": true, "day": true,
	"hour": true, "minute": true, "second": true, "millisecond": true}

func evalUnit(ec *evalCtx, x expr) (string, bool, error) {
	v, err := x.eval(ec)
	if err != nil || isNullish(v) {
		return "", false, err
	}
	if v.Type != bson.TypeString {
		return "", false, mongoerr.New(5439013, "unit must be a string, but got %s", TypeName(v.Type))
	}
	u := stringish(v)
	if !dateUnits[u] {
		return "", false, mongoerr.New(mongoerr.FailedToParse, "unknown time unit value: %s", u)
	}
	return u, true, nil
}

// addUnits adds n units to t (in t's location); months clamp the day to
// the end of the month, as mongod does.
func addUnits(t time.Time, unit string, n int64) time.Time {
	switch unit {
	case "year", "quarter", "month":
		months := n
		if unit == "year" {
			months *= 12
		} else if unit == "quarter" {
			months *= 3
		}
		y, m, d := t.Date()
		total := int64(y)*12 + int64(m-1) + months
		ny, nm := int(total/12), time.Month(total%12+1)
		if total < 0 && total%12 != 0 {
			ny, nm = int(total/12)-1, time.Month(total%12+13)
		}
		last := time.Date(ny, nm+1, 0, 0, 0, 0, 0, t.Location()).Day()
		if d > last {
			d = last
		}
		return time.Date(ny, nm, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
	case "week":
		return t.AddDate(0, 0, int(n*7))
	case "day":
		return t.AddDate(0, 0, int(n))
	case "hour":
		return t.Add(time.Duration(n) * time.Hour)
	case "minute":
		return t.Add(time.Duration(n) * time.Minute)
	case "second":
		return t.Add(time.Duration(n) * time.Second)
	}
	return t.Add(time.Duration(n) * time.Millisecond)
}

func compileDateAdd(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := namedArgs(op, arg, depth, []string{"startDate", "unit", "amount"}, []string{"timezone"}, 5166400, 5166401, 5166402)
	if err != nil {
		return nil, err
	}
	sign := int64(1)
	if op == "$dateSubtract" {
		sign = -1
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		sv, err := a["startDate"].eval(ec)
		if err != nil {
			return missing, err
		}
		unit, ok, err := evalUnit(ec, a["unit"])
		if err != nil || !ok {
			return rvNull, err
		}
		av, err := a["amount"].eval(ec)
		if err != nil || isNullish(av) {
			return rvNull, err
		}
		n, ok := exactInt(av)
		if !ok {
			return missing, mongoerr.New(5166405, "%s expects integer amount of time units", op)
		}
		t, ok, err := asTime(op, sv)
		if err != nil {
			return missing, mongoerr.New(5166403, "%s requires startDate to be convertible to a date", op)
		}
		if !ok {
			return rvNull, nil
		}
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		return rvDate(addUnits(t.In(loc), unit, sign*n).UnixMilli()), nil
	}), nil
}

var weekdays = map[string]time.Weekday{"sunday": time.Sunday, "sun": time.Sunday, "monday": time.Monday, "mon": time.Monday,
	"tuesday": time.Tuesday, "tue": time.Tuesday, "wednesday": time.Wednesday, "wed": time.Wednesday,
	"thursday": time.Thursday, "thu": time.Thursday, "friday": time.Friday, "fri": time.Friday, "saturday": time.Saturday, "sat": time.Saturday}

func compileDateDiff(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := namedArgs(op, arg, depth, []string{"startDate", "endDate", "unit"}, []string{"timezone", "startOfWeek"}, 5166301, 5166302, 5166303)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		var ts [2]time.Time
		for i, k := range []string{"startDate", "endDate"} {
			v, err := a[k].eval(ec)
			if err != nil {
				return missing, err
			}
			t, ok, err := asTime(op, v)
			if err != nil {
				return missing, mongoerr.New(5166307, "$dateDiff requires '%s' to be a date, but got %s", k, TypeName(v.Type))
			}
			if !ok {
				return rvNull, nil
			}
			ts[i] = t
		}
		unit, ok, err := evalUnit(ec, a["unit"])
		if err != nil || !ok {
			return rvNull, err
		}
		loc, ok, err := evalTZ(ec, a["timezone"])
		if err != nil || !ok {
			return rvNull, err
		}
		sow := time.Sunday
		if x, ok := a["startOfWeek"]; ok && unit == "week" {
			v, err := x.eval(ec)
			if err != nil || isNullish(v) {
				return rvNull, err
			}
			d, ok := weekdays[strings.ToLower(stringish(v))]
			if v.Type != bson.TypeString || !ok {
				return missing, mongoerr.New(5439015, "$dateDiff parameter 'startOfWeek' value cannot be recognized as a day of a week: %s", debugString(v))
			}
			sow = d
		}
		return rvInt64(dateDiff(ts[0].In(loc), ts[1].In(loc), unit, sow)), nil
	}), nil
}

// dateDiff counts the unit boundaries crossed from s to e.
func dateDiff(s, e time.Time, unit string, sow time.Weekday) int64 {
	days := func(t time.Time) int64 {
		y, m, d := t.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	}
	local := func(t time.Time) int64 { _, off := t.Zone(); return t.UnixMilli() + int64(off)*1000 }
	floorDiv := func(a, b int64) int64 { return int64(math.Floor(float64(a) / float64(b))) }
	switch unit {
	case "year":
		return int64(e.Year() - s.Year())
	case "quarter":
		q := func(t time.Time) int64 { return int64(t.Year())*4 + int64(t.Month()-1)/3 }
		return q(e) - q(s)
	case "month":
		m := func(t time.Time) int64 { return int64(t.Year())*12 + int64(t.Month()-1) }
		return m(e) - m(s)
	case "week":
		w := func(t time.Time) int64 {
			shift := (int64(t.Weekday()) - int64(sow) + 7) % 7
			return floorDiv(days(t)-shift+3, 7) // any fixed anchor: only differences count
		}
		return w(e) - w(s)
	case "day":
		return days(e) - days(s)
	case "hour":
		return floorDiv(local(e), 3600000) - floorDiv(local(s), 3600000)
	case "minute":
		return floorDiv(local(e), 60000) - floorDiv(local(s), 60000)
	case "second":
		return floorDiv(local(e), 1000) - floorDiv(local(s), 1000)
	}
	return e.UnixMilli() - s.UnixMilli()
}
