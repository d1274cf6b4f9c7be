package query

import (
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Array operators ($slice, $reverseArray, $range, $indexOfArray, $zip,
// $first/$last, $arrayToObject, $objectToArray, $sortArray, $firstN,
// $lastN, $maxN, $minN) and set operators ($setUnion ... $allElementsTrue).

func init() {
	registerOp(fnOp(2, 3, evalSlice), "$slice")
	registerOp(fnOp(1, 1, func(_ string, a []bson.RawValue) (bson.RawValue, error) {
		if isNullish(a[0]) {
			return rvNull, nil
		}
		if a[0].Type != bson.TypeArray {
			return missing, mongoerr.New(34435, "The argument to $reverseArray must be an array, but was of type: %s", TypeName(a[0].Type))
		}
		vs := arrayValues(a[0].Value)
		out := make([]bson.RawValue, len(vs))
		for i, v := range vs {
			out[len(vs)-1-i] = v
		}
		return rvArray(buildArray(out)), nil
	}), "$reverseArray")
	registerOp(fnOp(2, 3, evalRange), "$range")
	registerOp(fnOp(2, 4, evalIndexOfArray), "$indexOfArray")
	registerOp(compileZip, "$zip")
	registerOp(fnOp(1, 1, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		if isNullish(a[0]) {
			return rvNull, nil
		}
		if a[0].Type != bson.TypeArray {
			return missing, mongoerr.New(codeArrayElemArr, "%s's argument must be an array, but is %s", op, TypeName(a[0].Type))
		}
		vs := arrayValues(a[0].Value)
		if len(vs) == 0 {
			return missing, nil
		}
		if op == "$first" {
			return vs[0], nil
		}
		return vs[len(vs)-1], nil
	}), "$first", "$last")
	registerOp(fnOp(1, 1, evalArrayToObject), "$arrayToObject")
	registerOp(fnOp(1, 1, func(_ string, a []bson.RawValue) (bson.RawValue, error) {
		if isNullish(a[0]) {
			return rvNull, nil
		}
		if a[0].Type != bson.TypeEmbeddedDocument {
			return missing, mongoerr.New(40390, "$objectToArray requires a document input, found: %s", TypeName(a[0].Type))
		}
		var out []bson.RawValue
		for _, e := range elems(a[0].Value) {
			idx, d := bsoncore.AppendDocumentStart(nil)
			d = bsoncore.AppendStringElement(d, "k", e.key)
			d = appendRawElement(d, "v", e.val)
			d, _ = bsoncore.AppendDocumentEnd(d, idx)
			out = append(out, rvDoc(d))
		}
		return rvArray(buildArray(out)), nil
	}), "$objectToArray")
	registerOp(compileSortArray, "$sortArray")
	registerOp(compileNOp, "$firstN", "$lastN", "$maxN", "$minN")

	registerOp(fnOp(0, -1, evalSetUnionInter), "$setUnion", "$setIntersection")
	registerOp(fnOp(2, 2, evalSetDifference), "$setDifference")
	registerOp(fnOp(2, -1, evalSetEquals), "$setEquals")
	registerOp(fnOp(2, 2, evalSetIsSubset), "$setIsSubset")
	registerOp(fnOp(1, 1, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		if a[0].Type != bson.TypeArray {
			code := mongoerr.Code(17041)
			if op == "$allElementsTrue" {
				code = 17040
			}
			return missing, mongoerr.New(code, "%s's argument must be an array, but is %s", op, TypeName(a[0].Type))
		}
		all := op == "$allElementsTrue"
		for _, v := range arrayValues(a[0].Value) {
			if truthy(v) != all {
				return rvBool(!all), nil
			}
		}
		return rvBool(all), nil
	}), "$anyElementTrue", "$allElementsTrue")
}

func evalSlice(_ string, a []bson.RawValue) (bson.RawValue, error) {
	for _, v := range a {
		if isNullish(v) {
			return rvNull, nil
		}
	}
	if a[0].Type != bson.TypeArray {
		return missing, mongoerr.New(28724, "First argument to $slice must be an array, but is of type: %s", TypeName(a[0].Type))
	}
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(28725, "Second argument to $slice must be a numeric value, but is of type: %s", TypeName(a[1].Type))
	}
	second, ok := int32Arg(a[1])
	if !ok {
		return missing, mongoerr.New(28726, "Second argument to $slice can't be represented as a 32-bit integer: %s", debugString(a[1]))
	}
	vs := arrayValues(a[0].Value)
	n := int64(len(vs))
	var start, end int64
	if len(a) == 2 {
		if second >= 0 {
			start, end = 0, min(second, n)
		} else {
			start, end = max(n+second, 0), n
		}
	} else {
		if !isNumeric(a[2].Type) {
			return missing, mongoerr.New(28727, "Third argument to $slice must be numeric, but is of type: %s", TypeName(a[2].Type))
		}
		count, ok := int32Arg(a[2])
		if !ok {
			return missing, mongoerr.New(28728, "Third argument to $slice can't be represented as a 32-bit integer: %s", debugString(a[2]))
		}
		if count <= 0 {
			return missing, mongoerr.New(28729, "Third argument to $slice must be positive: %s", debugString(a[2]))
		}
		switch {
		case second >= n:
			start = n
		case second >= 0:
			start = second
		default:
			start = max(n+second, 0)
		}
		end = min(start+count, n)
	}
	return rvArray(buildArray(vs[start:end])), nil
}

func evalRange(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if !isNumeric(a[0].Type) {
		return missing, mongoerr.New(34443, "$range requires a numeric starting value, found value of type: %s", TypeName(a[0].Type))
	}
	start, ok := int32Arg(a[0])
	if !ok {
		return missing, mongoerr.New(34444, "$range requires a starting value that can be represented as a 32-bit integer, found value: %s", debugString(a[0]))
	}
	if !isNumeric(a[1].Type) {
		return missing, mongoerr.New(34445, "$range requires a numeric ending value, found value of type: %s", TypeName(a[1].Type))
	}
	end, ok := int32Arg(a[1])
	if !ok {
		return missing, mongoerr.New(34446, "$range requires an ending value that can be represented as a 32-bit integer, found value: %s", debugString(a[1]))
	}
	step := int64(1)
	if len(a) == 3 {
		if !isNumeric(a[2].Type) {
			return missing, mongoerr.New(34447, "$range requires a numeric step value, found value of type:%s", TypeName(a[2].Type))
		}
		if step, ok = int32Arg(a[2]); !ok {
			return missing, mongoerr.New(34448, "$range requires a step value that can be represented as a 32-bit integer, found value: %s", debugString(a[2]))
		}
		if step == 0 {
			return missing, mongoerr.New(34449, "$range requires a non-zero step value")
		}
	}
	var count int64
	if step > 0 && end > start {
		count = (end - start + step - 1) / step
	} else if step < 0 && end < start {
		count = (start - end - step - 1) / -step
	}
	// Each element costs at least 8 bytes (type, index key, int32): the
	// array must fit in a document.
	if count*8 > maxBSONObjectSize {
		return missing, mongoerr.New(mongoerr.BSONObjectTooLarge, "$range would produce an array larger than %d bytes", maxBSONObjectSize)
	}
	out := make([]bson.RawValue, 0, count)
	for i, v := int64(0), start; i < count; i, v = i+1, v+step {
		out = append(out, rvInt32(int32(v)))
	}
	return rvArray(buildArray(out)), nil
}

func evalIndexOfArray(op string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) {
		return rvNull, nil
	}
	if a[0].Type != bson.TypeArray {
		return missing, mongoerr.New(40090, "$indexOfArray requires an array as a first argument, found: %s", TypeName(a[0].Type))
	}
	vs := arrayValues(a[0].Value)
	n := int64(len(vs))
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
	var err error
	if len(a) > 2 {
		if start, err = bound(a[2], "starting"); err != nil {
			return missing, err
		}
	}
	if len(a) > 3 {
		var e int64
		if e, err = bound(a[3], "ending"); err != nil {
			return missing, err
		}
		end = min(e, n)
	}
	for i := start; i < end; i++ {
		if Compare(vs[i], a[1]) == 0 {
			return rvInt32(int32(i)), nil
		}
	}
	return rvInt32(-1), nil
}

func compileZip(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(34460, "$zip only supports an object as an argument, found %s", TypeName(arg.Type))
	}
	var inputs, defaults []expr
	longest, hasDefaults, hasInputs := false, false, false
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "inputs", "defaults":
			if e.val.Type != bson.TypeArray {
				if e.key == "inputs" {
					return nil, mongoerr.New(34461, "inputs must be an array of expressions, found %s", TypeName(e.val.Type))
				}
				return nil, mongoerr.New(34462, "defaults must be an array of expressions, found %s", TypeName(e.val.Type))
			}
			for _, v := range arrayValues(e.val.Value) {
				x, err := compileExpr(v, depth+1)
				if err != nil {
					return nil, err
				}
				if e.key == "inputs" {
					inputs = append(inputs, x)
				} else {
					defaults = append(defaults, x)
				}
			}
			if e.key == "inputs" {
				hasInputs = true
			} else {
				hasDefaults = true
			}
		case "useLongestLength":
			if e.val.Type != bson.TypeBoolean {
				return nil, mongoerr.New(34463, "useLongestLength must be a bool, found %s", TypeName(e.val.Type))
			}
			longest = e.val.Boolean()
		default:
			return nil, mongoerr.New(34464, "$zip found an unknown argument: %s", e.key)
		}
	}
	switch {
	case !hasInputs || len(inputs) == 0:
		return nil, mongoerr.New(34465, "$zip requires at least one input array")
	case hasDefaults && !longest:
		return nil, mongoerr.New(34466, "cannot specify defaults unless useLongestLength is true")
	case hasDefaults && len(defaults) != len(inputs):
		return nil, mongoerr.New(34467, "defaults and inputs must have the same length")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		arrays := make([][]bson.RawValue, len(inputs))
		minLen, maxLen := -1, 0
		for i, x := range inputs {
			v, err := x.eval(ec)
			if err != nil {
				return missing, err
			}
			if isNullish(v) {
				return rvNull, nil
			}
			if v.Type != bson.TypeArray {
				return missing, mongoerr.New(34468, "$zip found a non-array expression in input: %s", debugString(v))
			}
			arrays[i] = arrayValues(v.Value)
			if minLen < 0 || len(arrays[i]) < minLen {
				minLen = len(arrays[i])
			}
			maxLen = max(maxLen, len(arrays[i]))
		}
		defs := make([]bson.RawValue, len(inputs))
		for i := range defs {
			defs[i] = rvNull
			if hasDefaults {
				v, err := defaults[i].eval(ec)
				if err != nil {
					return missing, err
				}
				defs[i] = v
			}
		}
		n := minLen
		if longest {
			n = maxLen
		}
		out := make([]bson.RawValue, n)
		for j := 0; j < n; j++ {
			row := make([]bson.RawValue, len(arrays))
			for i, arr := range arrays {
				if j < len(arr) {
					row[i] = arr[j]
				} else {
					row[i] = defs[i]
				}
			}
			out[j] = rvArray(buildArray(row))
		}
		return rvArray(buildArray(out)), nil
	}), nil
}

func evalArrayToObject(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) {
		return rvNull, nil
	}
	if a[0].Type != bson.TypeArray {
		return missing, mongoerr.New(40386, "$arrayToObject requires an array input, found: %s", TypeName(a[0].Type))
	}
	root := &mdoc{}
	vs := arrayValues(a[0].Value)
	for i, v := range vs {
		var k, val bson.RawValue
		switch v.Type {
		case bson.TypeArray:
			if i > 0 && vs[0].Type != bson.TypeArray {
				return missing, mongoerr.New(40396, "$arrayToObject requires a consistent input format. Elements must all be arrays or all be objects. Object was detected, now found: %s", TypeName(v.Type))
			}
			pair := arrayValues(v.Value)
			if len(pair) != 2 {
				return missing, mongoerr.New(40397, "$arrayToObject requires an array of size 2 arrays,found array of size: %d", len(pair))
			}
			if pair[0].Type != bson.TypeString {
				return missing, mongoerr.New(40395, "$arrayToObject requires an array of key-value pairs, where the key must be of type string. Found key type: %s", TypeName(pair[0].Type))
			}
			k, val = pair[0], pair[1]
		case bson.TypeEmbeddedDocument:
			if i > 0 && vs[0].Type != bson.TypeEmbeddedDocument {
				return missing, mongoerr.New(40391, "$arrayToObject requires a consistent input format. Elements must all be arrays or all be objects. Array was detected, now found: %s", TypeName(v.Type))
			}
			es := elems(v.Value)
			if len(es) != 2 {
				return missing, mongoerr.New(40392, "$arrayToObject requires an object keys of 'k' and 'v'. Found incorrect number of keys:%d", len(es))
			}
			kv, kok := lookup(v.Value, "k")
			vv, vok := lookup(v.Value, "v")
			if !kok || !vok {
				return missing, mongoerr.New(40393, "$arrayToObject requires an object with keys 'k' and 'v'. Missing either or both keys from: %s", debugString(v))
			}
			if kv.Type != bson.TypeString {
				return missing, mongoerr.New(40394, "$arrayToObject requires an object with keys 'k' and 'v', where the value of 'k' must be of type string. Found type: %s", TypeName(kv.Type))
			}
			k, val = kv, vv
		default:
			return missing, mongoerr.New(40398, "Unrecognised input type format for $arrayToObject: %s", TypeName(v.Type))
		}
		key := stringish(k)
		for _, c := range []byte(key) {
			if c == 0 {
				return missing, mongoerr.New(4940400, "Key field cannot contain an embedded null byte")
			}
		}
		root.set(key, mustDecode(val))
	}
	return rvDoc(root.encode()), nil
}

func compileSortArray(op string, arg bson.RawValue, depth int) (expr, error) {
	raw, err := objectArgs(arg,
		func() error {
			return mongoerr.New(2942500, "$sortArray requires an object as input, found: %s", TypeName(arg.Type))
		},
		func(k string) error { return mongoerr.New(2942501, "$sortArray found an unknown argument: %s", k) },
		"input", "sortBy")
	if err != nil {
		return nil, err
	}
	in, ok := raw["input"]
	if !ok {
		return nil, mongoerr.New(2942502, "$sortArray requires 'input' to be specified")
	}
	by, ok := raw["sortBy"]
	if !ok {
		return nil, mongoerr.New(2942503, "$sortArray requires 'sortBy' to be specified")
	}
	input, err := compileExpr(in, depth+1)
	if err != nil {
		return nil, err
	}
	var whole int // ±1: compare the elements themselves
	var byFields *Sort
	switch {
	case isNumeric(by.Type) && (toNum(by).float() == 1 || toNum(by).float() == -1):
		whole = int(toNum(by).float())
	case by.Type == bson.TypeEmbeddedDocument && len(docBody(by.Value)) > 0:
		if byFields, err = CompileSort(by.Value); err != nil {
			return nil, err
		}
	default:
		return nil, mongoerr.New(2942505, "$sortArray's sortBy must be 1, -1 or a non-empty sort specification object")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		v, err := input.eval(ec)
		if err != nil {
			return missing, err
		}
		if isNullish(v) {
			return rvNull, nil
		}
		if v.Type != bson.TypeArray {
			return missing, mongoerr.New(2942504, "The input argument to $sortArray must be an array, but was of type: %s", TypeName(v.Type))
		}
		vs := arrayValues(v.Value)
		if whole != 0 {
			sort.SliceStable(vs, func(i, j int) bool { return Compare(vs[i], vs[j])*whole < 0 })
			return rvArray(buildArray(vs)), nil
		}
		keys := make([][]bson.RawValue, len(vs))
		empty := bson.Raw(bsoncore.NewDocumentBuilder().Build())
		for i, e := range vs {
			d := empty
			if e.Type == bson.TypeEmbeddedDocument {
				d = bson.Raw(e.Value)
			}
			keys[i] = byFields.Key(d)
		}
		idx := make([]int, len(vs))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(i, j int) bool { return byFields.CompareKeys(keys[idx[i]], keys[idx[j]]) < 0 })
		out := make([]bson.RawValue, len(vs))
		for i, j := range idx {
			out[i] = vs[j]
		}
		return rvArray(buildArray(out)), nil
	}), nil
}

// $firstN, $lastN, $maxN, $minN over an array: {n, input}.
func compileNOp(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(5787801, "specification must be an object; found %s", debugString(arg))
	}
	var nx, inx expr
	for _, e := range elems(arg.Value) {
		x, err := compileExpr(e.val, depth+1)
		if err != nil {
			return nil, err
		}
		switch e.key {
		case "n":
			nx = x
		case "input":
			inx = x
		default:
			return nil, mongoerr.New(5787901, "Unknown argument for 'n' operator: %s", e.key)
		}
	}
	if nx == nil {
		return nil, mongoerr.New(5787906, "Missing value for 'n'")
	}
	if inx == nil {
		return nil, mongoerr.New(5787907, "Missing value for 'input'")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		nv, err := nx.eval(ec)
		if err != nil {
			return missing, err
		}
		n, ok := exactInt(nv)
		if !ok {
			return missing, mongoerr.New(5787902, "Value for 'n' must be of integral type, but found %s", debugString(nv))
		}
		if n <= 0 {
			return missing, mongoerr.New(5787908, "'n' must be greater than 0, found %d", n)
		}
		v, err := inx.eval(ec)
		if err != nil {
			return missing, err
		}
		if v.Type != bson.TypeArray {
			return missing, mongoerr.New(5788200, "Input must be an array")
		}
		vs := arrayValues(v.Value)
		switch op {
		case "$firstN":
			vs = vs[:min(int64(len(vs)), n)]
		case "$lastN":
			vs = vs[max(int64(len(vs))-n, 0):]
		default:
			var kept []bson.RawValue
			for _, x := range vs {
				if !isNullish(x) {
					kept = append(kept, x)
				}
			}
			sort.SliceStable(kept, func(i, j int) bool {
				c := Compare(kept[i], kept[j])
				if op == "$maxN" {
					return c > 0
				}
				return c < 0
			})
			vs = kept[:min(int64(len(kept)), n)]
		}
		return rvArray(buildArray(vs)), nil
	}), nil
}

// sortedSet returns the distinct values in MongoDB's order.
func sortedSet(vals []bson.RawValue) []bson.RawValue {
	s := append([]bson.RawValue(nil), vals...)
	sort.SliceStable(s, func(i, j int) bool { return Compare(s[i], s[j]) < 0 })
	var out []bson.RawValue
	for _, v := range s {
		if len(out) == 0 || Compare(out[len(out)-1], v) != 0 {
			out = append(out, v)
		}
	}
	return out
}

func setContains(set []bson.RawValue, v bson.RawValue) bool {
	i := sort.Search(len(set), func(i int) bool { return Compare(set[i], v) >= 0 })
	return i < len(set) && Compare(set[i], v) == 0
}

func evalSetUnionInter(op string, a []bson.RawValue) (bson.RawValue, error) {
	code := mongoerr.Code(17043)
	if op == "$setIntersection" {
		code = 17047
	}
	var acc []bson.RawValue
	null, started := false, false
	for _, v := range a {
		if isNullish(v) {
			null = true
			continue
		}
		if v.Type != bson.TypeArray {
			return missing, mongoerr.New(code, "All operands of %s must be arrays. One argument is of type: %s", op, TypeName(v.Type))
		}
		vs := sortedSet(arrayValues(v.Value))
		switch {
		case op == "$setUnion":
			acc = sortedSet(append(acc, vs...))
		case !started:
			acc, started = vs, true
		default:
			var keep []bson.RawValue
			for _, x := range acc {
				if setContains(vs, x) {
					keep = append(keep, x)
				}
			}
			acc = keep
			if acc == nil {
				acc = []bson.RawValue{}
			}
		}
	}
	if null {
		return rvNull, nil
	}
	return rvArray(buildArray(acc)), nil
}

func evalSetDifference(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if isNullish(a[0]) || isNullish(a[1]) {
		return rvNull, nil
	}
	if a[0].Type != bson.TypeArray {
		return missing, mongoerr.New(17048, "both operands of $setDifference must be arrays. First argument is of type: %s", TypeName(a[0].Type))
	}
	if a[1].Type != bson.TypeArray {
		return missing, mongoerr.New(17049, "both operands of $setDifference must be arrays. Second argument is of type: %s", TypeName(a[1].Type))
	}
	seen := sortedSet(arrayValues(a[1].Value))
	var out []bson.RawValue
	for _, v := range arrayValues(a[0].Value) {
		if !setContains(seen, v) {
			out = append(out, v)
			seen = sortedSet(append(seen, v))
		}
	}
	return rvArray(buildArray(out)), nil
}

func evalSetEquals(_ string, a []bson.RawValue) (bson.RawValue, error) {
	var first []bson.RawValue
	for i, v := range a {
		if v.Type != bson.TypeArray {
			return missing, mongoerr.New(17044, "All operands of $setEquals must be arrays. One argument is of type: %s", TypeName(v.Type))
		}
		s := sortedSet(arrayValues(v.Value))
		if i == 0 {
			first = s
			continue
		}
		if len(s) != len(first) {
			return rvBool(false), nil
		}
		for j := range s {
			if Compare(s[j], first[j]) != 0 {
				return rvBool(false), nil
			}
		}
	}
	return rvBool(true), nil
}

func evalSetIsSubset(_ string, a []bson.RawValue) (bson.RawValue, error) {
	if a[0].Type != bson.TypeArray {
		return missing, mongoerr.New(17046, "both operands of $setIsSubset must be arrays. First argument is of type: %s", TypeName(a[0].Type))
	}
	if a[1].Type != bson.TypeArray {
		return missing, mongoerr.New(17042, "both operands of $setIsSubset must be arrays. Second argument is of type: %s", TypeName(a[1].Type))
	}
	super := sortedSet(arrayValues(a[1].Value))
	for _, v := range arrayValues(a[0].Value) {
		if !setContains(super, v) {
			return rvBool(false), nil
		}
	}
	return rvBool(true), nil
}
