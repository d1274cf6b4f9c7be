package query

import (
	"math"
	"strings"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// String operators. Byte-oriented operators ($substrBytes, $strLenBytes,
// $indexOfBytes) count UTF-8 bytes, the CP ones Unicode code points.

func init() {
	registerOp(fnOp(3, 3, evalSubstrBytes), "$substrBytes", "$substr")
	registerOp(fnOp(3, 3, evalSubstrCP), "$substrCP")
	registerOp(fnOp(1, 1, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		if a[0].Type != bson.TypeString {
			return missing, mongoerr.New(34473, "$strLenBytes requires a string argument, found: %s", TypeName(a[0].Type))
		}
		return rvInt32(int32(len(stringish(a[0])))), nil
	}), "$strLenBytes")
	registerOp(fnOp(1, 1, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		if a[0].Type != bson.TypeString {
			return missing, mongoerr.New(34471, "$strLenCP requires a string argument, found: %s", TypeName(a[0].Type))
		}
		return rvInt32(int32(utf8.RuneCountInString(stringish(a[0])))), nil
	}), "$strLenCP")
	registerOp(fnOp(2, 2, evalSplit), "$split")
	registerOp(compileTrim, "$trim", "$ltrim", "$rtrim")
	registerOp(fnOp(2, 4, evalIndexOf), "$indexOfBytes", "$indexOfCP")
	registerOp(fnOp(2, 2, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		x, err := coerceToString(op, a[0])
		if err != nil {
			return missing, err
		}
		y, err := coerceToString(op, a[1])
		if err != nil {
			return missing, err
		}
		return rvInt32(int32(strings.Compare(asciiUpper(x), asciiUpper(y)))), nil
	}), "$strcasecmp")
	registerOp(compileRegexOp, "$regexMatch", "$regexFind", "$regexFindAll")
	registerOp(compileReplace, "$replaceOne", "$replaceAll")
}

func evalSubstrBytes(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(16034, "$substrBytes:  starting index must be a numeric type (is BSON type %s)", TypeName(a[1].Type))
	}
	if !isNumeric(a[2].Type) {
		return missing, mongoerr.New(16035, "$substrBytes:  length must be a numeric type (is BSON type %s)", TypeName(a[2].Type))
	}
	s, err := coerceToString("$substrBytes", a[0])
	if err != nil {
		return missing, err
	}
	start, _ := truncInt64(toNum(a[1]))
	length, _ := truncInt64(toNum(a[2]))
	if toNum(a[1]).float() < 0 {
		return missing, mongoerr.New(50752, "$substrBytes:  starting index must be non-negative (got: %d)", start)
	}
	if start >= int64(len(s)) {
		return rvString(""), nil
	}
	if !utf8.RuneStart(s[start]) {
		return missing, mongoerr.New(28656, "$substrBytes:  Invalid range, starting index is a UTF-8 continuation byte.")
	}
	end := int64(len(s))
	if length >= 0 && start+length < end {
		end = start + length
	}
	if end < int64(len(s)) && !utf8.RuneStart(s[end]) {
		return missing, mongoerr.New(28657, "$substrBytes:  Invalid range, ending index is in the middle of a UTF-8 character.")
	}
	return rvString(s[start:end]), nil
}

// int32Arg returns v as an int32 if it is a number with an integral value.
func int32Arg(v bson.RawValue) (int64, bool) {
	n, ok := exactInt(v)
	return n, ok && n >= math.MinInt32 && n <= math.MaxInt32
}

func evalSubstrCP(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(34450, "$substrCP: starting index must be a numeric type (is BSON type %s)", TypeName(a[1].Type))
	}
	start, ok := int32Arg(a[1])
	if !ok {
		return missing, mongoerr.New(34451, "$substrCP: starting index cannot be represented as a 32-bit integral value: %s", debugString(a[1]))
	}
	if !isNumeric(a[2].Type) {
		return missing, mongoerr.New(34452, "$substrCP: length must be a numeric type (is BSON type %s)", TypeName(a[2].Type))
	}
	length, ok := int32Arg(a[2])
	if !ok {
		return missing, mongoerr.New(34453, "$substrCP: length cannot be represented as a 32-bit integral value: %s", debugString(a[2]))
	}
	if isNullish(a[0]) {
		return rvString(""), nil
	}
	s, err := coerceToString("$substrCP", a[0])
	if err != nil {
		return missing, err
	}
	if length < 0 {
		return missing, mongoerr.New(34454, "$substrCP: length must be a nonnegative integer.")
	}
	if start < 0 {
		return missing, mongoerr.New(34455, "$substrCP: the starting index must be nonnegative integer.")
	}
	rs := []rune(s)
	if start >= int64(len(rs)) {
		return rvString(""), nil
	}
	end := min(start+length, int64(len(rs)))
	return rvString(string(rs[start:end])), nil
}

func evalSplit(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) || isNullish(a[1]) {
		return rvNull, nil
	}
	if a[0].Type != bson.TypeString {
		return missing, mongoerr.New(40085, "$split requires an expression that evaluates to a string as a first argument, found: %s", TypeName(a[0].Type))
	}
	if a[1].Type != bson.TypeString {
		return missing, mongoerr.New(40086, "$split requires an expression that evaluates to a string as a second argument, found: %s", TypeName(a[1].Type))
	}
	sep := stringish(a[1])
	if sep == "" {
		return missing, mongoerr.New(40087, "$split requires a non-empty separator")
	}
	var out []bson.RawValue
	for _, p := range strings.Split(stringish(a[0]), sep) {
		out = append(out, rvString(p))
	}
	return rvArray(buildArray(out)), nil
}

// objectArgs splits a named-argument object, with the operator's codes
// for a non-object, an unknown field and the messages mongod uses.
func objectArgs(arg bson.RawValue, notObj func() error, unknown func(string) error, allowed ...string) (map[string]bson.RawValue, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, notObj()
	}
	out := map[string]bson.RawValue{}
	for _, e := range elems(arg.Value) {
		if !contains(allowed, e.key) {
			return nil, unknown(e.key)
		}
		out[e.key] = e.val
	}
	return out, nil
}

func compileNamed(raw map[string]bson.RawValue, depth int) (map[string]expr, error) {
	out := make(map[string]expr, len(raw))
	for k, v := range raw {
		x, err := compileExpr(v, depth+1)
		if err != nil {
			return nil, err
		}
		out[k] = x
	}
	return out, nil
}

// Whitespace $trim removes when no chars are given (mongod's list).
var trimDefault = []rune{0, ' ', '\t', '\n', '\v', '\f', '\r', 0xA0, 0x1680,
	0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200A}

func compileTrim(op string, arg bson.RawValue, depth int) (expr, error) {
	raw, err := objectArgs(arg,
		func() error {
			return mongoerr.New(50696, "%s only supports an object as an argument, found %s", op, TypeName(arg.Type))
		},
		func(k string) error { return mongoerr.New(50694, "%s found an unknown argument: %s", op, k) },
		"input", "chars")
	if err != nil {
		return nil, err
	}
	if _, ok := raw["input"]; !ok {
		return nil, mongoerr.New(50695, "%s requires an 'input' field", op)
	}
	a, err := compileNamed(raw, depth)
	if err != nil {
		return nil, err
	}
	left, right := op != "$rtrim", op != "$ltrim"
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		in, err := a["input"].eval(ec)
		if err != nil {
			return missing, err
		}
		if isNullish(in) {
			return rvNull, nil
		}
		if in.Type != bson.TypeString {
			return missing, mongoerr.New(50699, "%s requires its input to be a string, got %s (of type %s) instead.", op, debugString(in), TypeName(in.Type))
		}
		set := trimDefault
		if c, ok := a["chars"]; ok {
			cv, err := c.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(cv) {
				return rvNull, nil
			}
			if cv.Type != bson.TypeString {
				return missing, mongoerr.New(50700, "%s requires 'chars' to be a string, got %s (of type %s) instead.", op, debugString(cv), TypeName(cv.Type))
			}
			set = []rune(stringish(cv))
		}
		cut := func(r rune) bool {
			for _, c := range set {
				if c == r {
					return true
				}
			}
			return false
		}
		s := stringish(in)
		if left {
			s = strings.TrimLeftFunc(s, cut)
		}
		if right {
			s = strings.TrimRightFunc(s, cut)
		}
		return rvString(s), nil
	}), nil
}

func evalIndexOf(op string, a []bson.RawValue) (bson.RawValue, error) {
	cp := op == "$indexOfCP"
	firstCode, secondCode := mongoerr.Code(40091), mongoerr.Code(40092)
	if cp {
		firstCode, secondCode = 40093, 40094
	}
	if isNullish(a[0]) {
		return rvNull, nil
	}
	if a[0].Type != bson.TypeString {
		return missing, mongoerr.New(firstCode, "%s requires a string as the first argument, found: %s", op, TypeName(a[0].Type))
	}
	if a[1].Type != bson.TypeString {
		return missing, mongoerr.New(secondCode, "%s requires a string as the second argument, found: %s", op, TypeName(a[1].Type))
	}
	s, sub := stringish(a[0]), stringish(a[1])
	var rs, rsub []rune
	n := int64(len(s))
	if cp {
		rs, rsub = []rune(s), []rune(sub)
		n = int64(len(rs))
	}
	bound := func(v bson.RawValue, what string) (int64, error) {
		i, ok := exactInt(v)
		if !ok {
			return 0, mongoerr.New(40096, "%s requires an integral %s index, found a value of type: %s, with value: %s", op, what, TypeName(v.Type), debugString(v))
		}
		if i < 0 {
			return 0, mongoerr.New(40097, "%s requires a nonnegative %s index, found: %d", op, what, i)
		}
		return i, nil
	}
	start, end := int64(0), n
	if len(a) > 2 {
		var err error
		if start, err = bound(a[2], "starting"); err != nil {
			return missing, err
		}
	}
	if len(a) > 3 {
		e, err := bound(a[3], "ending")
		if err != nil {
			return missing, err
		}
		end = min(e, n)
	}
	if start > n || end < start {
		return rvInt32(-1), nil
	}
	var idx int
	if cp {
		idx = runeIndex(rs[start:end], rsub)
	} else {
		idx = strings.Index(s[start:end], sub)
	}
	if idx < 0 {
		return rvInt32(-1), nil
	}
	return rvInt32(int32(start + int64(idx))), nil
}

func runeIndex(s, sub []rune) int {
outer:
	for i := 0; i+len(sub) <= len(s); i++ {
		for j, r := range sub {
			if s[i+j] != r {
				continue outer
			}
		}
		return i
	}
	return -1
}

func compileRegexOp(op string, arg bson.RawValue, depth int) (expr, error) {
	raw, err := objectArgs(arg,
		func() error {
			return mongoerr.New(51103, "%s expects an object of named arguments but found: %s", op, TypeName(arg.Type))
		},
		func(k string) error { return mongoerr.New(31024, "%s found an unknown argument: %s", op, k) },
		"input", "regex", "options")
	if err != nil {
		return nil, err
	}
	if _, ok := raw["input"]; !ok {
		return nil, mongoerr.New(31022, "%s requires 'input' parameter", op)
	}
	if _, ok := raw["regex"]; !ok {
		return nil, mongoerr.New(31023, "%s requires 'regex' parameter", op)
	}
	a, err := compileNamed(raw, depth)
	if err != nil {
		return nil, err
	}
	nullResult := func() bson.RawValue {
		switch op {
		case "$regexMatch":
			return rvBool(false)
		case "$regexFindAll":
			return rvArray(buildArray(nil))
		}
		return rvNull
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		in, err := a["input"].eval(ec)
		if err != nil {
			return missing, err
		}
		rx, err := a["regex"].eval(ec)
		if err != nil {
			return missing, err
		}
		opts, err := evalOpt(ec, a, "options")
		if err != nil {
			return missing, err
		}
		var pattern, flags string
		switch {
		case isNullish(rx):
		case rx.Type == bson.TypeString:
			pattern = stringish(rx)
		case rx.Type == bson.TypeRegex:
			pattern, flags = rx.Regex()
		default:
			return missing, mongoerr.New(51105, "%s needs 'regex' to be of type string or regex", op)
		}
		if !isNullish(opts) {
			if opts.Type != bson.TypeString {
				return missing, mongoerr.New(51106, "%s needs 'options' to be of type string", op)
			}
			if o := stringish(opts); o != "" {
				if flags != "" {
					return missing, mongoerr.New(51107, "%s: found regex option(s) specified in both 'regex' and 'option' fields", op)
				}
				flags = o
			}
		}
		if strings.ContainsRune(flags, 0) {
			return missing, mongoerr.New(51110, "%s: regular expression options cannot contain an embedded null byte", op)
		}
		for _, c := range flags {
			if !strings.ContainsRune("imsxu", c) {
				return missing, mongoerr.New(51108, "%s: invalid flag in regex options: %c", op, c)
			}
		}
		if strings.ContainsRune(pattern, 0) {
			return missing, mongoerr.New(51109, "%s: regular expression cannot contain an embedded null byte", op)
		}
		if isNullish(in) || isNullish(rx) {
			return nullResult(), nil
		}
		if in.Type != bson.TypeString {
			return missing, mongoerr.New(51104, "%s needs 'input' to be of type string", op)
		}
		re, err := compileRegex(pattern, flags)
		if err != nil {
			return missing, mongoerr.New(51111, "Invalid Regex in %s: %s", op, err.Error())
		}
		s := stringish(in)
		switch op {
		case "$regexMatch":
			return rvBool(re.MatchString(s)), nil
		case "$regexFind":
			m := re.FindStringSubmatchIndex(s)
			if m == nil {
				return rvNull, nil
			}
			return regexResult(s, m), nil
		}
		var out []bson.RawValue
		for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
			out = append(out, regexResult(s, m))
		}
		return rvArray(buildArray(out)), nil
	}), nil
}

// regexResult is $regexFind's {match, idx, captures}: idx counts code
// points, an unmatched group captures null.
func regexResult(s string, m []int) bson.RawValue {
	var caps []bson.RawValue
	for g := 1; 2*g < len(m); g++ {
		if m[2*g] < 0 {
			caps = append(caps, rvNull)
		} else {
			caps = append(caps, rvString(s[m[2*g]:m[2*g+1]]))
		}
	}
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = bsoncore.AppendStringElement(d, "match", s[m[0]:m[1]])
	d = bsoncore.AppendInt32Element(d, "idx", int32(utf8.RuneCountInString(s[:m[0]])))
	d = bsoncore.AppendArrayElement(d, "captures", buildArray(caps))
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return rvDoc(d)
}

func compileReplace(op string, arg bson.RawValue, depth int) (expr, error) {
	raw, err := objectArgs(arg,
		func() error {
			return mongoerr.New(51751, "%s requires an object as an argument, found: %s", op, TypeName(arg.Type))
		},
		func(k string) error { return mongoerr.New(51750, "%s found an unknown argument: %s", op, k) },
		"input", "find", "replacement")
	if err != nil {
		return nil, err
	}
	for _, r := range []struct {
		name string
		code mongoerr.Code
	}{{"input", 51749}, {"find", 51748}, {"replacement", 51747}} {
		if _, ok := raw[r.name]; !ok {
			return nil, mongoerr.New(r.code, "%s requires '%s' to be specified", op, r.name)
		}
	}
	a, err := compileNamed(raw, depth)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		var v [3]bson.RawValue
		for i, r := range []struct {
			name string
			code mongoerr.Code
		}{{"input", 51746}, {"find", 51745}, {"replacement", 51744}} {
			x, err := a[r.name].eval(ec)
			if err != nil {
				return missing, err
			}
			if x.Type != bson.TypeString && !isNullish(x) {
				return missing, mongoerr.New(r.code, "%s requires that '%s' be a string, found: %s", op, r.name, debugString(x))
			}
			v[i] = x
		}
		for _, x := range v {
			if isNullish(x) {
				return rvNull, nil
			}
		}
		n := 1
		if op == "$replaceAll" {
			n = -1
		}
		return rvString(strings.Replace(stringish(v[0]), stringish(v[1]), stringish(v[2]), n)), nil
	}), nil
}
