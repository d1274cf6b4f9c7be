package query

import (
	"context"
	"math"
	"math/big"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// $setWindowFields: documents are sorted by partition key then sortBy,
// split into partitions, and every output field is computed per document
// over its window (documents- or range-based bounds) of its partition.
// The whole input is held in memory, bounded like the other blocking
// stages (292 beyond 100 MB).

const (
	boundUnbounded = iota
	boundCurrent
	boundNumber
)

type windowBound struct {
	kind int
	n    int64         // documents bounds
	v    bson.RawValue // range bounds
}

type windowBounds struct {
	docs   bool // documents-based; else range-based
	lo, hi windowBound
	unit   string // range with unit (dates)
}

func (w windowBounds) whole() bool {
	return w.lo.kind == boundUnbounded && w.hi.kind == boundUnbounded
}

type windowFn struct {
	field  string
	parts  []string
	name   string
	input  expr
	bounds windowBounds
	// $shift
	by  int64
	def bson.RawValue
	// $derivative, $integral
	unitMs int64
	// $expMovingAvg
	alpha *big.Float
	// $firstN, $lastN, $minN, $maxN
	n int64
}

type setWindowStage struct {
	partition expr
	sortBy    *Sort
	sortParts []string // the sortBy field when it has one key
	sortDesc  bool
	fns       []windowFn
}

// Window functions MongoDB 7.0 has that cmkdb does not compute.
var windowNotImplemented = map[string]bool{
	"$top": true, "$topN": true, "$bottom": true, "$bottomN": true,
	"$median": true, "$percentile": true,
}

var windowAccumulators = map[string]bool{
	"$sum": true, "$avg": true, "$min": true, "$max": true, "$push": true, "$addToSet": true,
	"$count": true, "$first": true, "$last": true, "$stdDevPop": true, "$stdDevSamp": true,
	"$covariancePop": true, "$covarianceSamp": true,
}

// Window functions over the n first, last, smallest or largest values.
var windowN = map[string]bool{"$firstN": true, "$lastN": true, "$minN": true, "$maxN": true}

var windowRank = map[string]bool{"$rank": true, "$denseRank": true, "$documentNumber": true}

func isWindowFunction(name string) bool {
	return windowAccumulators[name] || windowRank[name] || windowNotImplemented[name] || windowN[name] ||
		name == "$shift" || name == "$locf" || name == "$derivative" || name == "$integral" || name == "$expMovingAvg" || name == "$linearFill"
}

func swfParseErr(format string, args ...any) error {
	return mongoerr.New(mongoerr.FailedToParse, format, args...)
}

func compileSetWindowFields(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, swfParseErr("the $setWindowFields stage specification must be an object, found %s", TypeName(arg.Type))
	}
	st := &setWindowStage{}
	var output bson.RawValue
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "partitionBy":
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return nil, err
			}
			if e.val.Type == bson.TypeArray {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "An expression used to partition cannot evaluate to value of type array")
			}
			st.partition = x
		case "sortBy":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$setWindowFields.sortBy' is the wrong type '%s', expected type 'object'", TypeName(e.val.Type))
			}
			if len(docBody(e.val.Value)) == 0 {
				return nil, mongoerr.New(15976, "$sort stage must have at least one sort key")
			}
			s, err := CompileSort(e.val.Value)
			if err != nil {
				return nil, err
			}
			st.sortBy = s
			if len(s.keys) == 1 {
				st.sortParts, st.sortDesc = s.keys[0].parts, s.keys[0].desc
			}
		case "output":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$setWindowFields.output' is the wrong type '%s', expected type 'object'", TypeName(e.val.Type))
			}
			output = e.val
		default:
			return nil, mongoerr.New(40415, "BSON field '$setWindowFields.%s' is an unknown field.", e.key)
		}
	}
	if isMissing(output) {
		return nil, mongoerr.New(40414, "BSON field '$setWindowFields.output' is missing but a required field")
	}
	var seen []string
	for _, e := range elems(output.Value) {
		for _, s := range seen {
			if s == e.key || strings.HasPrefix(s, e.key+".") || strings.HasPrefix(e.key, s+".") {
				return nil, mongoerr.New(6307900, "$setWindowFields 'output' specification contains two conflicting paths")
			}
		}
		seen = append(seen, e.key)
		parts, err := fieldPathParts(e.key)
		if err != nil {
			return nil, err
		}
		if e.val.Type != bson.TypeEmbeddedDocument {
			return nil, swfParseErr("The field '%s' must be an object", e.key)
		}
		fn, err := st.parseWindowFn(e.val.Value)
		if err != nil {
			return nil, err
		}
		fn.field, fn.parts = e.key, parts
		st.fns = append(st.fns, fn)
	}
	return st, nil
}

func (st *setWindowStage) parseWindowFn(obj []byte) (windowFn, error) {
	es := elems(obj)
	name := ""
	for _, e := range es {
		if strings.HasPrefix(e.key, "$") {
			if !isWindowFunction(e.key) {
				return windowFn{}, swfParseErr("Unrecognized window function, %s", e.key)
			}
			name = e.key
			break
		}
	}
	if name == "" {
		first := ""
		if len(es) > 0 {
			first = ", " + es[0].key
		}
		return windowFn{}, swfParseErr("Expected a $-prefixed window function%s", first)
	}
	if windowNotImplemented[name] {
		return windowFn{}, mongoerr.New(mongoerr.NotImplemented, "window function %s is not supported by cmkdb", name)
	}
	fn := windowFn{name: name, bounds: windowBounds{docs: true}}
	switch {
	case windowRank[name]:
		if len(es) != 1 {
			return fn, mongoerr.New(5371601, "Rank style window functions take no other arguments")
		}
		if v := es[0].val; v.Type != bson.TypeEmbeddedDocument || len(docBody(v.Value)) != 0 {
			return fn, mongoerr.New(5371603, "%s must be specified with '{}' as the value", name)
		}
		if st.sortBy == nil || len(st.sortBy.keys) != 1 {
			return fn, mongoerr.New(5371602, "%s must be specified with a top level sortBy expression with exactly one element", name)
		}
		return fn, nil
	case name == "$shift":
		return st.parseShift(es)
	case name == "$derivative" || name == "$integral":
		return st.parseRate(name, es)
	case name == "$expMovingAvg":
		return st.parseExpMovingAvg(es)
	case windowN[name]:
		return st.parseWindowN(name, es)
	}
	// Accumulators and $locf: {$fn: <expr>, window: {...}}.
	var input bson.RawValue
	hasWindow := false
	for _, e := range es {
		switch {
		case e.key == "window":
			if name == "$locf" || name == "$linearFill" {
				hasWindow = true
				continue
			}
			b, err := st.parseBounds(e.val)
			if err != nil {
				return fn, err
			}
			fn.bounds = b
		case e.key == name:
			input = e.val
		case isWindowFunction(e.key):
			return fn, swfParseErr("Cannot specify two functions in window function spec")
		case name == "$first" || name == "$last":
			return fn, swfParseErr("%s got unexpected argument: %s", name, e.key)
		default:
			return fn, swfParseErr("Window function found an unknown argument: %s", e.key)
		}
	}
	if hasWindow {
		return fn, swfParseErr("'window' field is not allowed in %s", name)
	}
	if name == "$linearFill" && (st.sortBy == nil || len(st.sortBy.keys) != 1) {
		return fn, mongoerr.New(605001, "$linearFill must be specified with a top level sortBy expression with exactly one element")
	}
	if name == "$count" {
		if input.Type != bson.TypeEmbeddedDocument || len(docBody(input.Value)) != 0 {
			return fn, swfParseErr("$count only accepts an empty object as input")
		}
		fn.input = constExpr{rvInt32(1)}
		return fn, nil
	}
	x, err := compileExpr(input, 0)
	if err != nil {
		return fn, err
	}
	fn.input = x
	return fn, nil
}

func (st *setWindowStage) parseShift(es []elem) (windowFn, error) {
	fn := windowFn{name: "$shift", def: rvNull}
	for _, e := range es {
		switch {
		case e.key == "window":
			return fn, swfParseErr("$shift does not accept a 'window' field")
		case e.key == "$shift":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return fn, swfParseErr("Argument to $shift must be an object")
			}
			hasBy := false
			for _, a := range elems(e.val.Value) {
				switch a.key {
				case "output":
					x, err := compileExpr(a.val, 0)
					if err != nil {
						return fn, err
					}
					fn.input = x
				case "default":
					if !isConstantSpec(a.val) {
						return fn, swfParseErr("'$shift:default' expression must yield a constant value.")
					}
					fn.def = a.val
				case "by":
					n, ok := exactInt(a.val)
					if !ok || n < math.MinInt32 || n > math.MaxInt32 {
						return fn, swfParseErr("'$shift:by' field must be an integer, but found  by: %s", debugString(a.val))
					}
					fn.by, hasBy = n, true
				default:
					return fn, swfParseErr("Unknown argument in $shift")
				}
			}
			if fn.input == nil {
				return fn, swfParseErr("$shift requires an 'output' expression.")
			}
			if !hasBy {
				return fn, swfParseErr("$shift requires 'by' as an integer value.")
			}
		case isWindowFunction(e.key):
			return fn, swfParseErr("Cannot specify multiple functions in window function spec")
		default:
			return fn, swfParseErr("Window function found an unknown argument: %s", e.key)
		}
	}
	if st.sortBy == nil {
		return fn, swfParseErr("'$shift' requires a sortBy")
	}
	return fn, nil
}

// timeUnitMs are the units $derivative and $integral accept.
var timeUnitMs = map[string]int64{"week": 7 * 24 * 3600 * 1000, "day": 24 * 3600 * 1000, "hour": 3600 * 1000,
	"minute": 60 * 1000, "second": 1000, "millisecond": 1}

func (st *setWindowStage) parseRate(name string, es []elem) (windowFn, error) {
	fn := windowFn{name: name, bounds: windowBounds{docs: true}}
	switch {
	case st.sortBy == nil:
		return fn, swfParseErr("%s requires a sortBy", name)
	case len(st.sortBy.keys) != 1:
		return fn, swfParseErr("%s requires a non-compound sortBy", name)
	}
	var args bson.RawValue
	hasWindow := false
	for _, e := range es {
		switch e.key {
		case "window":
			if hasWindow {
				return fn, swfParseErr("There can be only one 'window' field for %s", name)
			}
			b, err := st.parseBounds(e.val)
			if err != nil {
				return fn, err
			}
			fn.bounds, hasWindow = b, true
		case name:
			args = e.val
		default:
			return fn, swfParseErr("%s got unexpected argument: %s", name, e.key)
		}
	}
	if args.Type != bson.TypeEmbeddedDocument {
		return fn, swfParseErr("%s expects an object, but got a %s: %s", name, TypeName(args.Type), debugString(args))
	}
	for _, a := range elems(args.Value) {
		switch a.key {
		case "input":
			x, err := compileExpr(a.val, 0)
			if err != nil {
				return fn, err
			}
			fn.input = x
		case "unit":
			if a.val.Type != bson.TypeString {
				return fn, swfParseErr("unit' must be a string, but got %s", TypeName(a.val.Type))
			}
			u := stringish(a.val)
			if !dateUnits[u] {
				return fn, swfParseErr("unknown time unit value: %s", u)
			}
			ms, ok := timeUnitMs[u]
			if !ok {
				return fn, mongoerr.New(5490710, "unit must be 'week' or smaller")
			}
			fn.unitMs = ms
		default:
			return fn, swfParseErr("%s got unexpected argument: %s", name, a.key)
		}
	}
	if fn.input == nil {
		return fn, swfParseErr("%s requires an 'input' expression", name)
	}
	if name == "$derivative" && !hasWindow {
		return fn, swfParseErr("$derivative requires explicit window bounds")
	}
	return fn, nil
}

func (st *setWindowStage) parseBounds(v bson.RawValue) (windowBounds, error) {
	b := windowBounds{docs: true}
	if v.Type != bson.TypeEmbeddedDocument {
		return b, swfParseErr("'window' field must be an object")
	}
	var docs, rng, unit bson.RawValue
	n := 0
	for _, e := range elems(v.Value) {
		n++
		switch e.key {
		case "documents":
			docs = e.val
		case "range":
			rng = e.val
		case "unit":
			unit = e.val
		}
	}
	switch {
	case !isMissing(docs) && !isMissing(rng):
		return b, swfParseErr("Window bounds can specify either 'documents' or 'unit', not both.")
	case isMissing(rng) && !isMissing(unit):
		return b, swfParseErr("Window bounds can only specify 'unit' with range-based bounds.")
	case isMissing(rng) && isMissing(docs):
		if n != 0 {
			return b, swfParseErr("'window' field can only contain 'documents' as the only argument or 'range' with an optional 'unit' field")
		}
		return b, nil
	}
	pair := func(name string, e bson.RawValue) (bson.RawValue, bson.RawValue, error) {
		if e.Type != bson.TypeArray || len(arrayValues(e.Value)) != 2 {
			return missing, missing, swfParseErr("Window bounds must be a 2-element array: %s: %s", name, debugString(e))
		}
		vs := arrayValues(e.Value)
		return vs[0], vs[1], nil
	}
	parse := func(e bson.RawValue, conv func(bson.RawValue) (windowBound, error)) (windowBound, error) {
		if e.Type == bson.TypeString {
			switch stringish(e) {
			case "unbounded":
				return windowBound{kind: boundUnbounded}, nil
			case "current":
				return windowBound{kind: boundCurrent}, nil
			}
			if strings.HasPrefix(stringish(e), "$") {
				return windowBound{}, swfParseErr("Window bounds expression must be a constant.")
			}
			return windowBound{}, swfParseErr("Window bounds must be 'unbounded', 'current', or a number.")
		}
		if !isConstantSpec(e) {
			return windowBound{}, swfParseErr("Window bounds expression must be a constant.")
		}
		return conv(e)
	}
	if !isMissing(docs) {
		if n != 1 {
			return b, swfParseErr("'window' field that specifies documents cannot have other fields")
		}
		l, u, err := pair("documents", docs)
		if err != nil {
			return b, err
		}
		conv := func(e bson.RawValue) (windowBound, error) {
			i, ok := exactInt(e)
			if !ok || i < math.MinInt32 || i > math.MaxInt32 {
				return windowBound{}, swfParseErr("Numeric document-based bounds must be an integer")
			}
			return windowBound{kind: boundNumber, n: i}, nil
		}
		if b.lo, err = parse(l, conv); err != nil {
			return b, err
		}
		if b.hi, err = parse(u, conv); err != nil {
			return b, err
		}
		lo, hi := b.lo.n, b.hi.n
		if b.lo.kind != boundUnbounded && b.hi.kind != boundUnbounded && lo > hi {
			return b, mongoerr.New(5339900, "Lower bound must not exceed upper bound: [%s, %s]", boundString(l), boundString(u))
		}
		if !b.whole() && st.sortBy == nil {
			return b, mongoerr.New(5339901, "Document-based bounds require a sortBy")
		}
		return b, nil
	}
	b.docs = false
	l, u, err := pair("range", rng)
	if err != nil {
		return b, err
	}
	var conv func(bson.RawValue) (windowBound, error)
	if !isMissing(unit) {
		if n != 2 {
			return b, swfParseErr("'window' field that specifies unit cannot have other fields besides 'range'")
		}
		if unit.Type != bson.TypeString {
			return b, swfParseErr("'unit' must be a string")
		}
		if !dateUnits[stringish(unit)] {
			return b, swfParseErr("unknown time unit value: %s", stringish(unit))
		}
		b.unit = stringish(unit)
		conv = func(e bson.RawValue) (windowBound, error) {
			i, ok := exactInt(e)
			if !ok {
				return windowBound{}, swfParseErr("With 'unit', range-based bounds must be an integer")
			}
			return windowBound{kind: boundNumber, n: i, v: e}, nil
		}
	} else {
		if n != 1 {
			return b, swfParseErr("'window' field that specifies range cannot have other fields besides 'unit'")
		}
		conv = func(e bson.RawValue) (windowBound, error) {
			if !isNumeric(e.Type) {
				return windowBound{}, swfParseErr("Range-based bounds expression must be a number")
			}
			return windowBound{kind: boundNumber, v: e}, nil
		}
	}
	if b.lo, err = parse(l, conv); err != nil {
		return b, err
	}
	if b.hi, err = parse(u, conv); err != nil {
		return b, err
	}
	lv, hv := b.lo.v, b.hi.v
	if b.lo.kind == boundCurrent {
		lv = rvInt32(0)
	}
	if b.hi.kind == boundCurrent {
		hv = rvInt32(0)
	}
	if b.lo.kind != boundUnbounded && b.hi.kind != boundUnbounded && Compare(lv, hv) > 0 {
		return b, mongoerr.New(5339900, "Lower bound must not exceed upper bound: [%s, %s]", boundString(l), boundString(u))
	}
	if st.sortBy == nil || len(st.sortBy.keys) != 1 {
		return b, mongoerr.New(5339902, "Range-based bounds require sortBy a single field")
	}
	if st.sortDesc {
		return b, mongoerr.New(8947401, "Range-based bounds require an ascending sortBy")
	}
	return b, nil
}

func boundString(v bson.RawValue) string {
	if v.Type == bson.TypeString {
		return `"` + stringish(v) + `"`
	}
	return debugString(v)
}

func (st *setWindowStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drainBounded(ctx, in, "$setWindowFields")
	in.Close()
	if err != nil {
		return nil, err
	}
	n := len(docs)
	pkeys := make([]bson.RawValue, n)
	var skeys [][]bson.RawValue
	for i, d := range docs {
		if st.partition != nil {
			v, err := st.partition.eval(&evalCtx{root: rvDoc(d), current: rvDoc(d)})
			if err != nil {
				return nil, err
			}
			if v.Type == bson.TypeArray {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "An expression used to partition cannot evaluate to value of type array")
			}
			if isMissing(v) {
				v = rvNull
			}
			pkeys[i] = v
		} else {
			pkeys[i] = rvNull
		}
	}
	if st.sortBy != nil {
		skeys = make([][]bson.RawValue, n)
		for i, d := range docs {
			skeys[i] = st.sortBy.Key(d)
		}
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		x, y := idx[a], idx[b]
		if c := Compare(pkeys[x], pkeys[y]); c != 0 {
			return c < 0
		}
		if skeys != nil {
			return st.sortBy.CompareKeys(skeys[x], skeys[y]) < 0
		}
		return false
	})
	out := make([]bson.Raw, 0, n)
	size := 0
	for start := 0; start < n; {
		end := start + 1
		for end < n && Compare(pkeys[idx[end]], pkeys[idx[start]]) == 0 {
			end++
		}
		part := make([]bson.Raw, end-start)
		var pk [][]bson.RawValue
		for i := start; i < end; i++ {
			part[i-start] = docs[idx[i]]
			if skeys != nil {
				pk = append(pk, skeys[idx[i]])
			}
		}
		res, err := st.partitionOutputs(ctx, part, pk)
		if err != nil {
			return nil, err
		}
		for _, r := range res {
			if size += len(r); size > maxBlockingBytes {
				return nil, mongoerr.New(codeMemoryLimit, "$setWindowFields exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxBlockingBytes)
			}
		}
		out = append(out, res...)
		start = end
	}
	return NewSliceIterator(out), nil
}

// partitionOutputs computes every output field over one partition (in
// sortBy order) and returns the documents with the fields set.
func (st *setWindowStage) partitionOutputs(ctx context.Context, part []bson.Raw, skeys [][]bson.RawValue) ([]bson.Raw, error) {
	n := len(part)
	results := make([][]bson.RawValue, len(st.fns))
	var sortVals []bson.RawValue // the sortBy field's values, for range windows and rates
	sortValues := func() []bson.RawValue {
		if sortVals == nil {
			sortVals = make([]bson.RawValue, n)
			for i, d := range part {
				sortVals[i] = fieldPathValue(rvDoc(d), st.sortParts)
			}
		}
		return sortVals
	}
	for f, fn := range st.fns {
		var vals []bson.RawValue
		if fn.input != nil {
			vals = make([]bson.RawValue, n)
			for i, d := range part {
				v, err := fn.input.eval(&evalCtx{root: rvDoc(d), current: rvDoc(d)})
				if err != nil {
					return nil, err
				}
				vals[i] = v
			}
		}
		var windows [][2]int
		if fn.name != "$shift" && !windowRank[fn.name] && fn.name != "$locf" && fn.name != "$expMovingAvg" && fn.name != "$linearFill" {
			var err error
			if windows, err = st.windows(fn.bounds, n, sortValues); err != nil {
				return nil, err
			}
		}
		res := make([]bson.RawValue, n)
		switch {
		case fn.name == "$documentNumber":
			for i := range res {
				res[i] = rvInt32(int32(i + 1))
			}
		case fn.name == "$rank" || fn.name == "$denseRank":
			r := 0
			for i := range res {
				if i == 0 || Compare(skeys[i][0], skeys[i-1][0]) != 0 {
					if fn.name == "$rank" {
						r = i + 1
					} else {
						r++
					}
				}
				res[i] = rvInt32(int32(r))
			}
		case fn.name == "$shift":
			for i := range res {
				j := int64(i) + fn.by
				if j < 0 || j >= int64(n) {
					res[i] = fn.def
					continue
				}
				res[i] = vals[j]
				if isMissing(res[i]) {
					res[i] = rvNull
				}
			}
		case fn.name == "$locf":
			last := rvNull
			for i, v := range vals {
				if !isNullish(v) {
					last = v
				}
				res[i] = last
			}
		case fn.name == "$linearFill":
			if err := linearFill(sortValues(), vals, res); err != nil {
				return nil, err
			}
		case fn.name == "$expMovingAvg":
			expMovingAvg(fn.alpha, vals, res)
		case fn.name == "$derivative":
			xs := sortValues()
			for i, w := range windows {
				v, err := derivative(fn, xs, vals, w)
				if err != nil {
					return nil, err
				}
				res[i] = v
			}
		case fn.name == "$integral":
			xs := sortValues()
			for i, w := range windows {
				v, err := integral(fn, xs, vals, w)
				if err != nil {
					return nil, err
				}
				res[i] = v
			}
		case windowN[fn.name]:
			if err := windowNValues(fn, vals, windows, res); err != nil {
				return nil, err
			}
		default:
			if err := accumulateWindows(ctx, fn, vals, windows, res); err != nil {
				return nil, err
			}
		}
		results[f] = res
	}
	out := make([]bson.Raw, n)
	for i, d := range part {
		root, err := decodeDoc(d)
		if err != nil {
			return nil, err
		}
		for f, fn := range st.fns {
			setAggPath(root, fn.parts, results[f][i])
		}
		out[i] = root.encode()
		if len(out[i]) > maxBSONObjectSize {
			return nil, mongoerr.New(mongoerr.BSONObjectTooLarge, "$setWindowFields produced a document larger than %d bytes", maxBSONObjectSize)
		}
	}
	return out, nil
}

// windows returns, per document of a partition, the inclusive index range
// [lo, hi] of its window (lo > hi: empty).
func (st *setWindowStage) windows(b windowBounds, n int, sortValues func() []bson.RawValue) ([][2]int, error) {
	out := make([][2]int, n)
	if b.docs {
		for i := range out {
			lo, hi := 0, n-1
			switch b.lo.kind {
			case boundCurrent:
				lo = i
			case boundNumber:
				lo = max(i+int(b.lo.n), 0)
			}
			switch b.hi.kind {
			case boundCurrent:
				hi = i
			case boundNumber:
				hi = min(i+int(b.hi.n), n-1)
			}
			out[i] = [2]int{lo, hi}
		}
		return out, nil
	}
	xs := sortValues()
	for _, x := range xs {
		if b.unit != "" {
			if x.Type != bson.TypeDateTime {
				return nil, mongoerr.New(5429513, "Invalid range: Expected the sortBy field to be a Date, but it was %s", TypeName(x.Type))
			}
			continue
		}
		if x.Type == bson.TypeDateTime {
			return nil, mongoerr.New(5429413, "Invalid range: For windows that involve date or time ranges, a unit must be provided.")
		}
		if !isNumeric(x.Type) {
			return nil, mongoerr.New(5429414, "Invalid range: Expected the sortBy field to be a number, but it was %s", TypeName(x.Type))
		}
	}
	edge := func(x bson.RawValue, bd windowBound) bson.RawValue {
		if bd.kind == boundCurrent {
			return x
		}
		if b.unit != "" {
			t, _ := x.TimeOK()
			return rvDate(addUnits(t.UTC(), b.unit, bd.n).UnixMilli())
		}
		return addPromote('+', toNum(x), toNum(bd.v)).raw()
	}
	for i, x := range xs {
		lo, hi := 0, n-1
		if b.lo.kind != boundUnbounded {
			e := edge(x, b.lo)
			lo = sort.Search(n, func(j int) bool { return Compare(xs[j], e) >= 0 })
		}
		if b.hi.kind != boundUnbounded {
			e := edge(x, b.hi)
			hi = sort.Search(n, func(j int) bool { return Compare(xs[j], e) > 0 }) - 1
		}
		out[i] = [2]int{lo, hi}
	}
	return out, nil
}

// accumulateWindows computes an accumulator over each window. $first,
// $last and $count read the window's edges; windows that start at the
// partition's start grow monotonically and are accumulated incrementally,
// windows that end at its end likewise from the end for the accumulators
// whose result does not depend on order; the others are recomputed per
// document. What the results hold is bounded like the stage's input (292).
func accumulateWindows(ctx context.Context, fn windowFn, vals []bson.RawValue, windows [][2]int, res []bson.RawValue) error {
	op := fn.name
	size := 0
	emit := func(i int, v bson.RawValue) error {
		res[i] = v
		if size += len(v.Value); size > maxBlockingBytes {
			return mongoerr.New(codeMemoryLimit, "$setWindowFields exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxBlockingBytes)
		}
		return nil
	}
	switch op {
	case "$first", "$last", "$count":
		for i, w := range windows {
			var v bson.RawValue
			switch {
			case op == "$count":
				n := int64(max(w[1]-w[0]+1, 0))
				v = num{kind: bson.TypeInt32, i: n}.raw()
				if n > math.MaxInt32 {
					v = rvInt64(n)
				}
			case w[0] > w[1]:
				v = rvNull
			case op == "$first":
				v = vals[w[0]]
			default:
				v = vals[w[1]]
			}
			if isMissing(v) {
				v = rvNull
			}
			if err := emit(i, v); err != nil {
				return err
			}
		}
		return nil
	}
	if fn.bounds.lo.kind == boundUnbounded {
		st := newAccStates(1)
		next := 0
		for i, w := range windows {
			for ; next <= w[1]; next++ {
				accumulate(op, &st[0], vals[next])
			}
			if err := emit(i, finish(op, &st[0])); err != nil {
				return err
			}
		}
		return nil
	}
	if fn.bounds.hi.kind == boundUnbounded && op != "$push" {
		st := newAccStates(1)
		next := len(vals) - 1
		for i := len(windows) - 1; i >= 0; i-- {
			for ; next >= windows[i][0] && next >= 0; next-- {
				accumulate(op, &st[0], vals[next])
			}
			if err := emit(i, finish(op, &st[0])); err != nil {
				return err
			}
		}
		return nil
	}
	for i, w := range windows {
		if i%256 == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		st := newAccStates(1)
		for j := w[0]; j <= w[1]; j++ {
			accumulate(op, &st[0], vals[j])
		}
		if err := emit(i, finish(op, &st[0])); err != nil {
			return err
		}
	}
	return nil
}

func derivative(fn windowFn, xs, ys []bson.RawValue, w [2]int) (bson.RawValue, error) {
	if w[0] >= w[1] {
		return rvNull, nil
	}
	lx, rx := xs[w[0]], xs[w[1]]
	if fn.unitMs != 0 {
		if lx.Type != bson.TypeDateTime || rx.Type != bson.TypeDateTime {
			return missing, mongoerr.New(5624900, "$derivative with 'unit' expects the sortBy field to be a Date")
		}
	} else {
		if lx.Type == bson.TypeDateTime || rx.Type == bson.TypeDateTime {
			return missing, mongoerr.New(5624901, "$derivative where the sortBy is a Date requires an 'unit'")
		}
		if !isNumeric(lx.Type) || !isNumeric(rx.Type) {
			return missing, mongoerr.New(5624902, "$derivative (with no 'unit') expects the sortBy field to be numeric")
		}
	}
	run, err := evalSubtract([]bson.RawValue{rx, lx})
	if err != nil {
		return missing, err
	}
	rise, err := evalSubtract([]bson.RawValue{ys[w[1]], ys[w[0]]})
	if err != nil {
		return missing, err
	}
	if isNullish(rise) {
		return missing, mongoerr.New(5624903, "$derivative input must not be null or missing")
	}
	if toNum(run).isZero() {
		return rvNull, nil
	}
	r, err := evalDivide([]bson.RawValue{rise, run})
	if err != nil {
		return missing, err
	}
	if fn.unitMs != 0 {
		return evalMultiply([]bson.RawValue{r, rvInt64(fn.unitMs)})
	}
	return r, nil
}

func integral(fn windowFn, xs, ys []bson.RawValue, w [2]int) (bson.RawValue, error) {
	if w[0] > w[1] {
		return rvNull, nil
	}
	sum := 0.0
	for j := w[0]; j <= w[1]; j++ {
		x, y := xs[j], ys[j]
		if !isNumeric(y.Type) || !(isNumeric(x.Type) || x.Type == bson.TypeDateTime) {
			return missing, mongoerr.New(5423900, "The input value of $integral window function must be a vector of 2 value, the first value must be numeric or date type and the second must be numeric.")
		}
		if fn.unitMs != 0 && x.Type != bson.TypeDateTime {
			return missing, mongoerr.New(5423901, "$integral with 'outputUnit' expects the sortBy field to be a Date")
		}
		if fn.unitMs == 0 && !isNumeric(x.Type) {
			return missing, mongoerr.New(5423902, "$integral (with no 'outputUnit') expects the sortBy field to be numeric")
		}
		if j == w[0] {
			continue
		}
		px, py := xs[j-1], ys[j-1]
		dx := xFloat(x) - xFloat(px)
		sum += (toNum(y).float() + toNum(py).float()) * dx / 2
	}
	if fn.unitMs != 0 {
		sum /= float64(fn.unitMs)
	}
	return rvDouble(sum), nil
}

func xFloat(v bson.RawValue) float64 {
	if v.Type == bson.TypeDateTime {
		ms, _ := v.DateTimeOK()
		return float64(ms)
	}
	return toNum(v).float()
}

func (st *setWindowStage) parseExpMovingAvg(es []elem) (windowFn, error) {
	fn := windowFn{name: "$expMovingAvg"}
	if len(es) != 1 || es[0].val.Type != bson.TypeEmbeddedDocument {
		return fn, swfParseErr("$expMovingAvg must have exactly one argument that is an object")
	}
	args := elems(es[0].val.Value)
	var input, n, alpha bson.RawValue
	for _, a := range args {
		switch a.key {
		case "input":
			input = a.val
		case "N":
			n = a.val
		case "alpha":
			alpha = a.val
		}
	}
	if len(args) != 2 || isMissing(input) {
		return fn, swfParseErr("$expMovingAvg sub object must have exactly two fields: An 'input' field, and either an 'N' field or an 'alpha' field")
	}
	if st.sortBy == nil {
		return fn, swfParseErr("$expMovingAvg requires an explicit 'sortBy'")
	}
	x, err := compileExpr(input, 0)
	if err != nil {
		return fn, err
	}
	fn.input = x
	switch {
	case !isMissing(n):
		if !isNumeric(n.Type) {
			return fn, swfParseErr("'N' field must be an integer, but found type %s", TypeName(n.Type))
		}
		i, ok := exactInt(n)
		if !ok {
			return fn, swfParseErr("'N' field must be an integer, but found  N: %s. To use a non-integer, use the 'alpha' argument instead", debugString(n))
		}
		if i <= 0 {
			return fn, swfParseErr("'N' must be greater than zero. Got %d", i)
		}
		fn.alpha = new(big.Float).SetPrec(200).Quo(big.NewFloat(2).SetPrec(200), new(big.Float).SetPrec(200).SetInt64(i+1))
	case !isMissing(alpha):
		if !isNumeric(alpha.Type) {
			return fn, swfParseErr("'alpha' must be a number")
		}
		f := toNum(alpha).float()
		if !(f > 0 && f < 1) {
			return fn, swfParseErr("'alpha' must be between 0 and 1 (exclusive), found alpha: %s", debugString(alpha))
		}
		r, _ := ratOf(toNum(alpha))
		fn.alpha = new(big.Float).SetPrec(200).SetRat(r)
	default:
		return fn, swfParseErr("Got unrecognized field in $expMovingAvg$expMovingAvg sub object must have exactly two fields: An 'input' field, and either an 'N' field or an 'alpha' field")
	}
	return fn, nil
}

// expMovingAvg: the first number is the average, then each number x moves
// it to alpha*x + (1-alpha)*avg; other values leave it as it is. Computed
// exactly (mongod uses decimal arithmetic), returned as a double, or as a
// decimal once a decimal was seen.
func expMovingAvg(alpha *big.Float, vals, res []bson.RawValue) {
	var avg *big.Float
	decimal := false
	one := big.NewFloat(1).SetPrec(200)
	rest := new(big.Float).SetPrec(200).Sub(one, alpha)
	for i, v := range vals {
		if isNumeric(v.Type) {
			n := toNum(v)
			if n.kind == bson.TypeDecimal128 {
				decimal = true
			}
			r, ok := ratOf(n)
			if ok {
				x := new(big.Float).SetPrec(200).SetRat(r)
				if avg == nil {
					avg = x
				} else {
					a := new(big.Float).SetPrec(200).Mul(x, alpha)
					b := new(big.Float).SetPrec(200).Mul(avg, rest)
					avg = a.Add(a, b)
				}
			}
		}
		switch {
		case avg == nil:
			res[i] = rvNull
		case decimal:
			d, err := bson.ParseDecimal128(avg.Text('g', 34))
			if err != nil {
				f, _ := avg.Float64()
				res[i] = rvDouble(f)
			} else {
				res[i] = rvDecimal(d)
			}
		default:
			f, _ := avg.Float64()
			res[i] = rvDouble(f)
		}
	}
}

func dateLike(t bson.Type) bool {
	return t == bson.TypeDateTime || t == bson.TypeTimestamp || t == bson.TypeObjectID
}

// linearFill fills null and missing values by linear interpolation between
// the nearest non-null values before and after (by the sortBy field);
// values with no such neighbour on either side stay null.
func linearFill(xs, ys, res []bson.RawValue) error {
	var last bson.RawValue
	for i, y := range ys {
		x := xs[i]
		if !isNumeric(y.Type) && !isNullish(y) {
			return mongoerr.New(mongoerr.TypeMismatch, "Value to be filled must be numeric or nullish, but found %s", TypeName(y.Type))
		}
		if !isNumeric(x.Type) && !dateLike(x.Type) {
			return mongoerr.New(mongoerr.TypeMismatch, "Value of the sortBy field must be numeric or a date, but found %s", TypeName(x.Type))
		}
		if !isMissing(last) {
			if Compare(x, last) == 0 {
				return mongoerr.New(6050106, "There can be no repeated values in the sort field")
			}
			if isNumeric(x.Type) != isNumeric(last.Type) {
				return mongoerr.New(mongoerr.TypeMismatch, "Conflicting sort value types, previously received type %s, but found %s", TypeName(last.Type), TypeName(x.Type))
			}
		}
		last = x
	}
	prev := -1
	for i, y := range ys {
		if !isNullish(y) {
			res[i], prev = y, i
			continue
		}
		res[i] = rvNull
		if prev < 0 {
			continue
		}
		next := -1
		for j := i + 1; j < len(ys); j++ {
			if !isNullish(ys[j]) && !isNullish(xs[j]) {
				next = j
				break
			}
		}
		if next < 0 {
			continue
		}
		dy, err := evalSubtract([]bson.RawValue{ys[next], ys[prev]})
		if err != nil {
			return err
		}
		dx, err := evalSubtract([]bson.RawValue{xs[next], xs[prev]})
		if err != nil {
			return err
		}
		slope, err := evalDivide([]bson.RawValue{dy, dx})
		if err != nil {
			return err
		}
		off, err := evalSubtract([]bson.RawValue{xs[i], xs[prev]})
		if err != nil {
			return err
		}
		step, err := evalMultiply([]bson.RawValue{off, slope})
		if err != nil {
			return err
		}
		if res[i], err = evalAdd([]bson.RawValue{ys[prev], step}); err != nil {
			return err
		}
	}
	return nil
}

func (st *setWindowStage) parseWindowN(name string, es []elem) (windowFn, error) {
	fn := windowFn{name: name, bounds: windowBounds{docs: true}}
	var spec bson.RawValue
	for _, e := range es {
		switch {
		case e.key == "window":
			b, err := st.parseBounds(e.val)
			if err != nil {
				return fn, err
			}
			fn.bounds = b
		case e.key == name:
			spec = e.val
		case isWindowFunction(e.key):
			return fn, swfParseErr("Cannot specify two functions in window function spec")
		default:
			return fn, swfParseErr("Window function found an unknown argument: %s", e.key)
		}
	}
	if spec.Type != bson.TypeEmbeddedDocument {
		return fn, mongoerr.New(5787801, "specification must be an object; found %s", debugString(spec))
	}
	var nv bson.RawValue
	for _, a := range elems(spec.Value) {
		switch a.key {
		case "n":
			nx, err := compileExpr(a.val, 0)
			if err != nil {
				return fn, err
			}
			// n is evaluated once, without a document (a constant).
			if nv, err = nx.eval(&evalCtx{root: rvDoc(noFieldsDoc), current: rvDoc(noFieldsDoc)}); err != nil {
				return fn, err
			}
		case "input":
			x, err := compileExpr(a.val, 0)
			if err != nil {
				return fn, err
			}
			fn.input = x
		default:
			return fn, mongoerr.New(5787901, "Unknown argument for 'n' operator: %s", a.key)
		}
	}
	if isMissing(nv) && !hasKey(spec.Value, "n") {
		return fn, mongoerr.New(5787906, "Missing value for 'n'")
	}
	if fn.input == nil {
		return fn, mongoerr.New(5787907, "Missing value for 'input'")
	}
	if !isNumeric(nv.Type) {
		return fn, mongoerr.New(5787902, "Value for 'n' must be of integral type, but found %s", debugString(nv))
	}
	n, ok := exactInt(nv)
	if !ok {
		return fn, mongoerr.New(5787903, "Value for 'n' must be of integral type, but found %s", debugString(nv))
	}
	if n <= 0 {
		return fn, mongoerr.New(5787908, "'n' must be greater than 0, found %d", n)
	}
	fn.n = n
	return fn, nil
}

var noFieldsDoc = []byte{5, 0, 0, 0, 0}

func hasKey(doc []byte, key string) bool {
	_, ok := lookup(doc, key)
	return ok
}

// windowNValues computes $firstN/$lastN (nulls kept, missing as null) and
// $minN/$maxN (nulls and missing skipped) over each window.
func windowNValues(fn windowFn, vals []bson.RawValue, windows [][2]int, res []bson.RawValue) error {
	size := 0
	for i, w := range windows {
		var out []bson.RawValue
		switch fn.name {
		case "$firstN", "$lastN":
			lo, hi := w[0], w[1]
			if hi-lo+1 > int(fn.n) {
				if fn.name == "$firstN" {
					hi = lo + int(fn.n) - 1
				} else {
					lo = hi - int(fn.n) + 1
				}
			}
			for j := lo; j <= hi; j++ {
				v := vals[j]
				if isMissing(v) {
					v = rvNull
				}
				out = append(out, v)
			}
		default:
			for j := w[0]; j <= w[1]; j++ {
				if !isNullish(vals[j]) {
					out = append(out, vals[j])
				}
			}
			sort.SliceStable(out, func(a, b int) bool {
				c := Compare(out[a], out[b])
				if fn.name == "$maxN" {
					return c > 0
				}
				return c < 0
			})
			if int64(len(out)) > fn.n {
				out = out[:fn.n]
			}
		}
		res[i] = rvArray(buildArray(out))
		if size += len(res[i].Value); size > maxBlockingBytes {
			return mongoerr.New(codeMemoryLimit, "$setWindowFields exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxBlockingBytes)
		}
	}
	return nil
}
