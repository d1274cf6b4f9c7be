package query

import (
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// expr is a compiled aggregation expression.
type expr interface {
	eval(ec *evalCtx) (bson.RawValue, error)
}

// evalCtx carries the variables an expression can see. root is $$ROOT,
// current is $$CURRENT (the base of "$field" paths).
type evalCtx struct {
	root    bson.RawValue
	current bson.RawValue
	vars    map[string]bson.RawValue
}

// Expression error codes MongoDB uses.
const (
	codeExprArity       mongoerr.Code = 16020
	codeExprOneField    mongoerr.Code = 15983
	codeFieldPath       mongoerr.Code = 16872
	codeUndefinedVar    mongoerr.Code = 17276
	codeAddType         mongoerr.Code = 16554
	codeSubtractType    mongoerr.Code = 16556
	codeMultiplyType    mongoerr.Code = 16555
	codeDivideType      mongoerr.Code = 16609
	codeModType         mongoerr.Code = 16611
	codeModZero         mongoerr.Code = 16610
	codeConcatType      mongoerr.Code = 16702
	codeSizeType        mongoerr.Code = 17124
	codeArrayElemArr    mongoerr.Code = 28689
	codeArrayElemIdx    mongoerr.Code = 28690
	codeArrayElemInt    mongoerr.Code = 28691
	codeCondMissing     mongoerr.Code = 17080
	codeCondUnknown     mongoerr.Code = 17083
	codeInArray         mongoerr.Code = 40081
	codeFieldNameDollar mongoerr.Code = 16410
)

// CompileExpression compiles an aggregation expression (as found in
// $project, $addFields, $group, $expr ...). It is exported so command
// handlers can evaluate expressions outside pipelines.
func CompileExpression(v bson.RawValue) (*Expression, error) {
	e, err := compileExpr(v, 0)
	if err != nil {
		return nil, err
	}
	return &Expression{e: e}, nil
}

// Expression is a compiled aggregation expression.
type Expression struct{ e expr }

// Evaluate evaluates the expression against doc ($$ROOT and $$CURRENT).
// A missing result is returned as the zero RawValue.
func (x *Expression) Evaluate(doc bson.Raw) (bson.RawValue, error) {
	d := rvDoc(doc)
	return x.e.eval(&evalCtx{root: d, current: d})
}

func compileExpr(v bson.RawValue, depth int) (expr, error) {
	if depth > maxFilterDepth {
		return nil, badValue("expression nesting exceeds %d levels", maxFilterDepth)
	}
	switch v.Type {
	case bson.TypeString:
		s := stringish(v)
		if strings.HasPrefix(s, "$$") {
			return compileVar(s[2:])
		}
		if strings.HasPrefix(s, "$") {
			parts, err := fieldPathParts(s[1:])
			if err != nil {
				return nil, err
			}
			return fieldExpr{parts: parts}, nil
		}
		return constExpr{v}, nil
	case bson.TypeArray:
		var items []expr
		for _, it := range arrayValues(v.Value) {
			e, err := compileExpr(it, depth+1)
			if err != nil {
				return nil, err
			}
			items = append(items, e)
		}
		return arrayExpr(items), nil
	case bson.TypeEmbeddedDocument:
		es := elems(v.Value)
		if len(es) > 0 && strings.HasPrefix(es[0].key, "$") {
			if len(es) != 1 {
				return nil, mongoerr.New(codeExprOneField, "an expression specification must contain exactly one field, the name of the expression. Found %d fields in %s", len(es), debugString(v))
			}
			return compileOp(es[0].key, es[0].val, depth+1)
		}
		obj := objectExpr{}
		for _, e := range es {
			if strings.HasPrefix(e.key, "$") {
				return nil, mongoerr.New(codeFieldNameDollar, "field names may not start with '$': %s", e.key)
			}
			sub, err := compileExpr(e.val, depth+1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, objField{e.key, sub})
		}
		return obj, nil
	}
	return constExpr{v}, nil
}

func fieldPathParts(p string) ([]string, error) {
	if p == "" {
		return nil, mongoerr.New(codeFieldPath, "'$' by itself is not a valid FieldPath")
	}
	parts, err := splitFieldPath(0, p)
	if err != nil {
		return nil, err
	}
	for _, s := range parts {
		if s == "" {
			return nil, mongoerr.New(15998, "FieldPath field names may not be empty strings.")
		}
		if strings.HasPrefix(s, "$") {
			return nil, mongoerr.New(codeFieldNameDollar, "FieldPath field names may not start with '$'.")
		}
	}
	return parts, nil
}

func compileVar(s string) (expr, error) {
	name, rest, _ := strings.Cut(s, ".")
	var parts []string
	if rest != "" {
		var err error
		if parts, err = fieldPathParts(rest); err != nil {
			return nil, err
		}
	}
	if name == "" {
		return nil, mongoerr.New(codeUndefinedVar, "empty variable names are not allowed")
	}
	return varExpr{name: name, parts: parts}, nil
}

type constExpr struct{ v bson.RawValue }

func (c constExpr) eval(*evalCtx) (bson.RawValue, error) { return c.v, nil }

type fieldExpr struct{ parts []string }

func (f fieldExpr) eval(ec *evalCtx) (bson.RawValue, error) {
	return fieldPathValue(ec.current, f.parts), nil
}

type varExpr struct {
	name  string
	parts []string
}

func (v varExpr) eval(ec *evalCtx) (bson.RawValue, error) {
	var base bson.RawValue
	switch v.name {
	case "ROOT":
		base = ec.root
	case "CURRENT":
		base = ec.current
	case "REMOVE":
		return missing, nil
	default:
		b, ok := ec.vars[v.name]
		if !ok {
			return missing, mongoerr.New(codeUndefinedVar, "Use of undefined variable: %s", v.name)
		}
		base = b
	}
	return fieldPathValue(base, v.parts), nil
}

// fieldPathValue resolves an aggregation field path. Unlike query paths,
// arrays are mapped over: "$a.b" on a: [{b: 1}, {b: 2}] is [1, 2], and
// numeric components are field names, not indexes.
func fieldPathValue(v bson.RawValue, parts []string) bson.RawValue {
	if len(parts) == 0 {
		return v
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		c, ok := lookup(v.Value, parts[0])
		if !ok {
			return missing
		}
		return fieldPathValue(c, parts[1:])
	case bson.TypeArray:
		var out []bson.RawValue
		forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			if e.Type == bson.TypeEmbeddedDocument || e.Type == bson.TypeArray {
				if r := fieldPathValue(e, parts); !isMissing(r) {
					out = append(out, r)
				}
			}
			return false
		})
		return rvArray(buildArray(out))
	}
	return missing
}

type arrayExpr []expr

func (a arrayExpr) eval(ec *evalCtx) (bson.RawValue, error) {
	vals := make([]bson.RawValue, len(a))
	for i, e := range a {
		v, err := e.eval(ec)
		if err != nil {
			return missing, err
		}
		if isMissing(v) {
			v = rvNull
		}
		vals[i] = v
	}
	return rvArray(buildArray(vals)), nil
}

type objField struct {
	key string
	e   expr
}

type objectExpr []objField

func (o objectExpr) eval(ec *evalCtx) (bson.RawValue, error) {
	idx, dst := bsoncore.AppendDocumentStart(nil)
	for _, f := range o {
		v, err := f.e.eval(ec)
		if err != nil {
			return missing, err
		}
		dst = appendRawElement(dst, f.key, v)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return rvDoc(dst), nil
}

// opExpr is an operator applied to evaluated arguments.
type opExpr struct {
	args []expr
	fn   func(args []bson.RawValue) (bson.RawValue, error)
}

func (o opExpr) eval(ec *evalCtx) (bson.RawValue, error) {
	vals := make([]bson.RawValue, len(o.args))
	for i, a := range o.args {
		v, err := a.eval(ec)
		if err != nil {
			return missing, err
		}
		vals[i] = v
	}
	return o.fn(vals)
}

// lazyExpr is an operator that controls evaluation of its own arguments
// ($cond, $and, $or, $ifNull short-circuit).
type lazyExpr struct {
	args []expr
	fn   func(ec *evalCtx, args []expr) (bson.RawValue, error)
}

func (l lazyExpr) eval(ec *evalCtx) (bson.RawValue, error) { return l.fn(ec, l.args) }

func arityErr(op string, want string, got int) error {
	return mongoerr.New(codeExprArity, "Expression %s takes %s argument%s. %d were passed in.", op, want, plural(want), got)
}

func plural(want string) string {
	if want == "exactly 1" {
		return ""
	}
	return "s"
}

func compileOp(op string, arg bson.RawValue, depth int) (expr, error) {
	if op == "$literal" {
		return constExpr{arg}, nil
	}
	if op == "$cond" && arg.Type == bson.TypeEmbeddedDocument {
		return compileCondObject(arg, depth)
	}
	if c, ok := exprOps[op]; ok {
		return c(op, arg, depth)
	}
	// Operator arguments: an array is the argument list, anything else is a
	// single argument.
	var args []expr
	if arg.Type == bson.TypeArray {
		for _, it := range arrayValues(arg.Value) {
			e, err := compileExpr(it, depth+1)
			if err != nil {
				return nil, err
			}
			args = append(args, e)
		}
	} else {
		e, err := compileExpr(arg, depth+1)
		if err != nil {
			return nil, err
		}
		args = []expr{e}
	}
	exactly := func(n int) error {
		if len(args) != n {
			return arityErr(op, "exactly "+strconv.Itoa(n), len(args))
		}
		return nil
	}
	switch op {
	case "$add":
		return opExpr{args, evalAdd}, nil
	case "$multiply":
		return opExpr{args, evalMultiply}, nil
	case "$subtract":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, evalSubtract}, nil
	case "$divide":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, evalDivide}, nil
	case "$mod":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, evalMod}, nil
	case "$abs":
		if err := exactly(1); err != nil {
			return nil, err
		}
		return opExpr{args, evalAbs}, nil
	case "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$cmp":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) {
			c := Compare(a[0], a[1])
			switch op {
			case "$eq":
				return rvBool(c == 0), nil
			case "$ne":
				return rvBool(c != 0), nil
			case "$gt":
				return rvBool(c > 0), nil
			case "$gte":
				return rvBool(c >= 0), nil
			case "$lt":
				return rvBool(c < 0), nil
			case "$lte":
				return rvBool(c <= 0), nil
			}
			return rvInt32(int32(c)), nil
		}}, nil
	case "$and", "$or":
		isAnd := op == "$and"
		return lazyExpr{args, func(ec *evalCtx, as []expr) (bson.RawValue, error) {
			for _, a := range as {
				v, err := a.eval(ec)
				if err != nil {
					return missing, err
				}
				if truthy(v) != isAnd {
					return rvBool(!isAnd), nil
				}
			}
			return rvBool(isAnd), nil
		}}, nil
	case "$not":
		if err := exactly(1); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) { return rvBool(!truthy(a[0])), nil }}, nil
	case "$cond":
		if err := exactly(3); err != nil {
			return nil, err
		}
		return condExpr(args[0], args[1], args[2]), nil
	case "$ifNull":
		if len(args) < 2 {
			return nil, arityErr(op, "at least 2", len(args))
		}
		return lazyExpr{args, func(ec *evalCtx, as []expr) (bson.RawValue, error) {
			for i, a := range as {
				v, err := a.eval(ec)
				if err != nil {
					return missing, err
				}
				if !isNullish(v) || i == len(as)-1 {
					return v, nil
				}
			}
			return missing, nil
		}}, nil
	case "$concat":
		return opExpr{args, evalConcat}, nil
	case "$toUpper", "$toLower":
		if err := exactly(1); err != nil {
			return nil, err
		}
		upper := op == "$toUpper"
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) {
			s, err := coerceToString(op, a[0])
			if err != nil {
				return missing, err
			}
			if upper {
				return rvString(asciiUpper(s)), nil
			}
			return rvString(asciiLower(s)), nil
		}}, nil
	case "$size":
		if err := exactly(1); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) {
			if a[0].Type != bson.TypeArray {
				return missing, mongoerr.New(codeSizeType, "The argument to $size must be an array. Type of argument was: %s", TypeName(a[0].Type))
			}
			return rvInt32(int32(len(arrayValues(a[0].Value)))), nil
		}}, nil
	case "$arrayElemAt":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, evalArrayElemAt}, nil
	case "$in":
		if err := exactly(2); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) {
			if a[1].Type != bson.TypeArray {
				return missing, mongoerr.New(codeInArray, "$in requires an array as a second argument, found: %s", TypeName(a[1].Type))
			}
			found := forEachElem(a[1].Value, func(_ []byte, e bson.RawValue) bool { return Compare(a[0], e) == 0 })
			return rvBool(found), nil
		}}, nil
	case "$isArray":
		if err := exactly(1); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) { return rvBool(a[0].Type == bson.TypeArray), nil }}, nil
	case "$type":
		if err := exactly(1); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) { return rvString(TypeName(a[0].Type)), nil }}, nil
	case "$concatArrays":
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) {
			var out []bson.RawValue
			for _, v := range a {
				if isNullish(v) {
					return rvNull, nil
				}
				if v.Type != bson.TypeArray {
					return missing, mongoerr.New(28664, "$concatArrays only supports arrays, not %s", TypeName(v.Type))
				}
				out = append(out, arrayValues(v.Value)...)
			}
			return rvArray(buildArray(out)), nil
		}}, nil
	}
	return nil, mongoerr.New(mongoerr.InvalidPipelineOperator, "Unrecognized expression '%s'", op)
}

func condExpr(ifE, thenE, elseE expr) expr {
	return lazyExpr{[]expr{ifE, thenE, elseE}, func(ec *evalCtx, as []expr) (bson.RawValue, error) {
		c, err := as[0].eval(ec)
		if err != nil {
			return missing, err
		}
		if truthy(c) {
			return as[1].eval(ec)
		}
		return as[2].eval(ec)
	}}
}

func compileCondObject(arg bson.RawValue, depth int) (expr, error) {
	var ifE, thenE, elseE expr
	for _, e := range elems(arg.Value) {
		x, err := compileExpr(e.val, depth+1)
		if err != nil {
			return nil, err
		}
		switch e.key {
		case "if":
			ifE = x
		case "then":
			thenE = x
		case "else":
			elseE = x
		default:
			return nil, mongoerr.New(codeCondUnknown, "Unrecognized parameter to $cond: %s", e.key)
		}
	}
	switch {
	case ifE == nil:
		return nil, mongoerr.New(codeCondMissing, "Missing 'if' parameter to $cond")
	case thenE == nil:
		return nil, mongoerr.New(17081, "Missing 'then' parameter to $cond")
	case elseE == nil:
		return nil, mongoerr.New(17082, "Missing 'else' parameter to $cond")
	}
	return condExpr(ifE, thenE, elseE), nil
}

// addPromote adds with aggregation semantics: integer overflow widens
// int32 -> int64 -> double instead of failing.
func addPromote(op byte, a, b num) num {
	r, of := arith(op, a, b)
	if of {
		fa, fb := a.float(), b.float()
		switch op {
		case '+':
			return num{kind: bson.TypeDouble, f: fa + fb}
		case '-':
			return num{kind: bson.TypeDouble, f: fa - fb}
		default:
			return num{kind: bson.TypeDouble, f: fa * fb}
		}
	}
	return r
}

func evalAdd(a []bson.RawValue) (bson.RawValue, error) {
	total := num{kind: bson.TypeInt32}
	var date *int64
	for _, v := range a {
		switch {
		case isNullish(v):
			return rvNull, nil
		case isNumeric(v.Type):
			total = addPromote('+', total, toNum(v))
		case v.Type == bson.TypeDateTime:
			if date != nil {
				return missing, mongoerr.New(16612, "only one date allowed in an $add expression")
			}
			d, _ := v.DateTimeOK()
			date = &d
		default:
			return missing, mongoerr.New(codeAddType, "$add only supports numeric or date types, not %s", TypeName(v.Type))
		}
	}
	if date != nil {
		return rvDate(*date + int64(math.Round(total.float()))), nil
	}
	return total.raw(), nil
}

func evalMultiply(a []bson.RawValue) (bson.RawValue, error) {
	total := num{kind: bson.TypeInt32, i: 1}
	for _, v := range a {
		switch {
		case isNullish(v):
			return rvNull, nil
		case isNumeric(v.Type):
			total = addPromote('*', total, toNum(v))
		default:
			return missing, mongoerr.New(codeMultiplyType, "$multiply only supports numeric types, not %s", TypeName(v.Type))
		}
	}
	return total.raw(), nil
}

func evalSubtract(a []bson.RawValue) (bson.RawValue, error) {
	x, y := a[0], a[1]
	switch {
	case isNullish(x) || isNullish(y):
		return rvNull, nil
	case isNumeric(x.Type) && isNumeric(y.Type):
		return addPromote('-', toNum(x), toNum(y)).raw(), nil
	case x.Type == bson.TypeDateTime && y.Type == bson.TypeDateTime:
		dx, _ := x.DateTimeOK()
		dy, _ := y.DateTimeOK()
		return rvInt64(dx - dy), nil
	case x.Type == bson.TypeDateTime && isNumeric(y.Type):
		dx, _ := x.DateTimeOK()
		return rvDate(dx - int64(math.Round(toNum(y).float()))), nil
	}
	return missing, mongoerr.New(codeSubtractType, "can't $subtract %s from %s", TypeName(y.Type), TypeName(x.Type))
}

func evalDivide(a []bson.RawValue) (bson.RawValue, error) {
	x, y := a[0], a[1]
	if isNullish(x) || isNullish(y) {
		return rvNull, nil
	}
	if !isNumeric(x.Type) || !isNumeric(y.Type) {
		return missing, mongoerr.New(codeDivideType, "$divide only supports numeric types, not %s and %s", TypeName(x.Type), TypeName(y.Type))
	}
	nx, ny := toNum(x), toNum(y)
	if ny.isZero() {
		return missing, mongoerr.New(mongoerr.BadValue, "can't $divide by zero")
	}
	if nx.kind == bson.TypeDecimal128 || ny.kind == bson.TypeDecimal128 {
		dx := num{kind: bson.TypeDecimal128, d: decimalOf(nx)}
		dy := num{kind: bson.TypeDecimal128, d: decimalOf(ny)}
		return rvDecimal(decimalFromExt(extArith('/', dx.ext(), dy.ext()))), nil
	}
	return rvDouble(nx.float() / ny.float()), nil
}

func evalMod(a []bson.RawValue) (bson.RawValue, error) {
	x, y := a[0], a[1]
	if isNullish(x) || isNullish(y) {
		return rvNull, nil
	}
	if !isNumeric(x.Type) || !isNumeric(y.Type) {
		return missing, mongoerr.New(codeModType, "$mod only supports numeric types, not %s and %s", TypeName(x.Type), TypeName(y.Type))
	}
	nx, ny := toNum(x), toNum(y)
	if ny.isZero() {
		return missing, mongoerr.New(codeModZero, "can't $mod by zero")
	}
	if nx.isInt() && ny.isInt() {
		var r int64
		if ny.i == -1 {
			r = 0
		} else {
			r = nx.i % ny.i
		}
		if nx.kind == bson.TypeInt32 && ny.kind == bson.TypeInt32 {
			return rvInt32(int32(r)), nil
		}
		return rvInt64(r), nil
	}
	if nx.kind == bson.TypeDecimal128 || ny.kind == bson.TypeDecimal128 {
		return rvDecimal(decimalOf(num{kind: bson.TypeDouble, f: math.Mod(nx.float(), ny.float())})), nil
	}
	return rvDouble(math.Mod(nx.float(), ny.float())), nil
}

func evalAbs(a []bson.RawValue) (bson.RawValue, error) {
	v := a[0]
	if isNullish(v) {
		return rvNull, nil
	}
	if !isNumeric(v.Type) {
		return missing, mongoerr.New(28765, "$abs only supports numeric types, not %s", TypeName(v.Type))
	}
	n := toNum(v)
	switch n.kind {
	case bson.TypeInt32:
		if n.i < 0 {
			n.i = -n.i
			if n.i > math.MaxInt32 {
				return rvInt64(n.i), nil
			}
		}
	case bson.TypeInt64:
		if n.i == math.MinInt64 {
			return missing, mongoerr.New(28680, "can't take $abs of long long min")
		}
		if n.i < 0 {
			n.i = -n.i
		}
	case bson.TypeDouble:
		n.f = math.Abs(n.f)
	case bson.TypeDecimal128:
		h, l := n.d.GetBytes()
		n.d = bson.NewDecimal128(h&^(1<<63), l)
	}
	return n.raw(), nil
}

func evalConcat(a []bson.RawValue) (bson.RawValue, error) {
	var b strings.Builder
	for _, v := range a {
		if isNullish(v) {
			return rvNull, nil
		}
		if v.Type != bson.TypeString {
			return missing, mongoerr.New(codeConcatType, "$concat only supports strings, not %s", TypeName(v.Type))
		}
		b.WriteString(stringish(v))
	}
	return rvString(b.String()), nil
}

func evalArrayElemAt(a []bson.RawValue) (bson.RawValue, error) {
	arr, idx := a[0], a[1]
	if isNullish(arr) || isNullish(idx) {
		return rvNull, nil
	}
	if arr.Type != bson.TypeArray {
		return missing, mongoerr.New(codeArrayElemArr, "$arrayElemAt's first argument must be an array, but is %s", TypeName(arr.Type))
	}
	if !isNumeric(idx.Type) {
		return missing, mongoerr.New(codeArrayElemIdx, "$arrayElemAt's second argument must be a numeric value, but is %s", TypeName(idx.Type))
	}
	f := toNum(idx).float()
	if f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
		return missing, mongoerr.New(codeArrayElemInt, "$arrayElemAt's second argument must be representable as a 32-bit integer: %s", debugString(idx))
	}
	vals := arrayValues(arr.Value)
	i := int(f)
	if i < 0 {
		i += len(vals)
	}
	if i < 0 || i >= len(vals) {
		return missing, nil
	}
	return vals[i], nil
}

// coerceToString implements the string conversion $toUpper/$toLower apply:
// null and missing become "", numbers and dates their text form.
func coerceToString(op string, v bson.RawValue) (string, error) {
	switch v.Type {
	case 0, bson.TypeNull, bson.TypeUndefined:
		return "", nil
	case bson.TypeString, bson.TypeSymbol:
		return stringish(v), nil
	case bson.TypeInt32, bson.TypeInt64:
		return strconv.FormatInt(toNum(v).i, 10), nil
	case bson.TypeDouble:
		return strconv.FormatFloat(toNum(v).f, 'g', -1, 64), nil
	case bson.TypeDecimal128:
		return toNum(v).d.String(), nil
	case bson.TypeDateTime:
		t, _ := v.TimeOK()
		return t.UTC().Format("2006-01-02T15:04:05.000Z"), nil
	}
	return "", mongoerr.New(16007, "can't convert from BSON type %s to String", TypeName(v.Type))
}

// MongoDB's $toUpper/$toLower only map ASCII letters.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}
