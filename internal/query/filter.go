package query

import (
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Matcher is a compiled query filter. It is immutable and safe for
// concurrent use.
type Matcher struct {
	root node
}

// Compile parses a MongoDB query filter. Invalid filters return a
// *mongoerr.Error with code BadValue and MongoDB's wording.
func Compile(filter bson.Raw) (*Matcher, error) {
	if len(filter) == 0 {
		return &Matcher{root: andNode(nil)}, nil
	}
	if err := validateDoc(filter); err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid filter document: %v", err)
	}
	n, err := parseFilterDoc(filter, 0)
	if err != nil {
		return nil, err
	}
	return &Matcher{root: n}, nil
}

// Match reports whether doc satisfies the filter. Runtime errors inside
// $expr (which MongoDB would report as a query failure) count as no match.
func (m *Matcher) Match(doc bson.Raw) bool {
	return m.root.matches(rvDoc(doc), nil)
}

// MatchPosition is Match that also reports MongoDB's "elemMatchKey": the
// position of the array element through which the filter matched, which
// is what the positional $ of an update or projection designates. It is
// -1 when no predicate matched through an array. As in MongoDB, only
// predicates ANDed at the top level record it ($or, $nor and $not do
// not), the outermost array traversed counts, and when several predicates
// record one, the last wins: MongoDB documents the result of several
// conditions on different arrays as undefined.
func (m *Matcher) MatchPosition(doc bson.Raw) (bool, int) {
	d := matchDetails{elemKey: -1}
	ok := m.root.matches(rvDoc(doc), &d)
	if !ok {
		return false, -1
	}
	return true, d.elemKey
}

// matchDetails collects what MatchPosition reports; nil when not wanted.
type matchDetails struct {
	elemKey int
}

func (d *matchDetails) record(off int) {
	if d != nil && off >= 0 {
		d.elemKey = off
	}
}

// node is a compiled match expression evaluated against a context value:
// the document for top-level expressions, or an array element inside
// $elemMatch. d, when not nil, receives the array position matched.
type node interface {
	matches(ctx bson.RawValue, d *matchDetails) bool
}

type andNode []node

func (a andNode) matches(v bson.RawValue, d *matchDetails) bool {
	for _, n := range a {
		if !n.matches(v, d) {
			return false
		}
	}
	return true
}

type orNode []node

func (o orNode) matches(v bson.RawValue, _ *matchDetails) bool {
	for _, n := range o {
		if n.matches(v, nil) {
			return true
		}
	}
	return false
}

type norNode []node

func (o norNode) matches(v bson.RawValue, _ *matchDetails) bool { return !orNode(o).matches(v, nil) }

type notNode struct{ n node }

func (n notNode) matches(v bson.RawValue, _ *matchDetails) bool { return !n.n.matches(v, nil) }

type constNode bool

func (c constNode) matches(bson.RawValue, *matchDetails) bool { return bool(c) }

// pathNode matches when any value the path reaches satisfies pred. An empty
// path applies pred to the context value itself ($elemMatch value form).
// keyed replaces pred for $elemMatch, which reports the position of the
// element that matched inside the array it tests.
type pathNode struct {
	parts []string
	mode  pathMode
	pred  func(bson.RawValue) bool
	keyed func(bson.RawValue) (bool, int)
}

func (p *pathNode) matches(ctx bson.RawValue, d *matchDetails) bool {
	if len(p.parts) == 0 {
		return pathVisit{p, d}.visit(ctx, -1)
	}
	if ctx.Type != bson.TypeEmbeddedDocument && ctx.Type != bson.TypeArray {
		return pathVisit{p, d}.visit(missing, -1)
	}
	return walkDoc(ctx.Value, p.parts, p.mode, -1, pathVisit{p, d})
}

// pathVisit evaluates a pathNode's predicate on one value the path
// reached and records the array position it came from.
type pathVisit struct {
	p *pathNode
	d *matchDetails
}

func (pv pathVisit) visit(v bson.RawValue, off int) bool {
	if pv.p.keyed != nil {
		ok, k := pv.p.keyed(v)
		if ok {
			pv.d.record(k)
			pv.d.record(off)
		}
		return ok
	}
	if pv.p.pred(v) {
		pv.d.record(off)
		return true
	}
	return false
}

// exprNode implements $expr.
type exprNode struct{ e expr }

func (e exprNode) matches(ctx bson.RawValue, _ *matchDetails) bool {
	v, err := e.e.eval(&evalCtx{root: ctx, current: ctx})
	return err == nil && truthy(v)
}

const maxFilterDepth = 100

type elem struct {
	key string
	val bson.RawValue
}

// elems lists a document's elements (compile-time convenience).
func elems(doc []byte) []elem {
	var out []elem
	forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		out = append(out, elem{string(k), v})
		return false
	})
	return out
}

func badValue(format string, args ...any) error {
	return mongoerr.New(mongoerr.BadValue, format, args...)
}

func parseFilterDoc(doc []byte, depth int) (node, error) {
	if depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing the query", maxFilterDepth)
	}
	var out andNode
	for _, e := range elems(doc) {
		if strings.HasPrefix(e.key, "$") {
			n, err := parseTopLevel(e.key, e.val, depth)
			if err != nil {
				return nil, err
			}
			if n != nil {
				out = append(out, n)
			}
			continue
		}
		if pathParts(e.key) > maxMatchPathParts {
			return nil, mongoerr.New(codeMatchPathLong, "FieldPath is too long")
		}
		n, err := parseField(splitPath(e.key), e.val, depth)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

func parseTopLevel(op string, v bson.RawValue, depth int) (node, error) {
	switch op {
	case "$and", "$or", "$nor":
		if v.Type != bson.TypeArray {
			return nil, badValue("%s must be an array", op)
		}
		items := arrayValues(v.Value)
		if len(items) == 0 {
			return nil, badValue("$and/$or/$nor must be a nonempty array")
		}
		var kids []node
		for _, it := range items {
			if it.Type != bson.TypeEmbeddedDocument {
				return nil, badValue("$or/$and/$nor entries need to be full objects")
			}
			n, err := parseFilterDoc(it.Value, depth+1)
			if err != nil {
				return nil, err
			}
			kids = append(kids, n)
		}
		switch op {
		case "$and":
			return andNode(kids), nil
		case "$or":
			return orNode(kids), nil
		}
		return norNode(kids), nil
	case "$expr":
		e, err := compileExpr(v, depth+1)
		if err != nil {
			return nil, err
		}
		return exprNode{e}, nil
	case "$comment":
		return nil, nil
	case "$alwaysTrue", "$alwaysFalse":
		return constNode(op == "$alwaysTrue"), nil
	case "$jsonSchema":
		return parseJSONSchemaOp(v, depth+1)
	case "$text":
		// Handlers take a top-level $text out before compiling (text
		// search, handlers/text.go); anywhere else it is refused.
		return nil, mongoerr.New(mongoerr.NotImplemented, "$text is supported only at the top level of a find or count filter or of an aggregation's first $match")
	case "$where", "$sampleRate":
		return nil, mongoerr.New(mongoerr.NotImplemented, "%s is not supported", op)
	}
	return nil, badValue("unknown top level operator: %s", op)
}

func parseField(parts []string, v bson.RawValue, depth int) (node, error) {
	switch {
	case v.Type == bson.TypeRegex:
		p, o, _ := v.RegexOK()
		rp, err := newRegexPred(p, o)
		if err != nil {
			return nil, err
		}
		return &pathNode{parts: parts, mode: leafExpand, pred: rp.match}, nil
	case isOperatorDoc(v):
		return parseOps(parts, v.Value, depth+1)
	}
	return &pathNode{parts: parts, mode: leafExpand, pred: cmpPred(opEQ, v)}, nil
}

// Comparison operators.
type cmpOp int8

const (
	opEQ cmpOp = iota
	opLT
	opLTE
	opGT
	opGTE
)

func cmpPred(op cmpOp, rhs bson.RawValue) func(bson.RawValue) bool {
	return func(e bson.RawValue) bool { return compareMatch(op, e, rhs) }
}

// compareMatch is MongoDB's ComparisonMatchExpression: values only compare
// within the same canonical type ("type bracketing"), null also matches
// missing and undefined, MinKey/MaxKey compare against everything, and NaN
// only equals NaN.
func compareMatch(op cmpOp, e, rhs bson.RawValue) bool {
	re, rr := canonRank(e.Type), canonRank(rhs.Type)
	if re != rr {
		if (re == rankNull || re == rankUndefined) && (rr == rankNull || rr == rankUndefined) {
			return op == opEQ || op == opLTE || op == opGTE
		}
		switch rhs.Type {
		case bson.TypeMaxKey:
			return op == opLT || op == opLTE
		case bson.TypeMinKey:
			return op == opGT || op == opGTE
		}
		return false
	}
	if re == rankNumber {
		ne, nr := toNum(e), toNum(rhs)
		if ne.isNaN() || nr.isNaN() {
			both := ne.isNaN() && nr.isNaN()
			return both && (op == opEQ || op == opLTE || op == opGTE)
		}
		return cmpOK(op, compareNum(ne, nr))
	}
	return cmpOK(op, Compare(e, rhs))
}

func cmpOK(op cmpOp, c int) bool {
	switch op {
	case opEQ:
		return c == 0
	case opLT:
		return c < 0
	case opLTE:
		return c <= 0
	case opGT:
		return c > 0
	}
	return c >= 0
}

func parseOps(parts []string, doc []byte, depth int) (node, error) {
	if depth > maxFilterDepth {
		return nil, badValue("exceeded depth limit of %d when parsing the query", maxFilterDepth)
	}
	var out andNode
	add := func(mode pathMode, pred func(bson.RawValue) bool) {
		out = append(out, &pathNode{parts: parts, mode: mode, pred: pred})
	}
	var regex, options *bson.RawValue
	for _, e := range elems(doc) {
		arg := e.val
		switch e.key {
		case "$eq":
			add(leafExpand, cmpPred(opEQ, arg))
		case "$ne":
			if arg.Type == bson.TypeRegex {
				return nil, badValue("Can't have regex as arg to $ne.")
			}
			out = append(out, notNode{&pathNode{parts: parts, mode: leafExpand, pred: cmpPred(opEQ, arg)}})
		case "$lt":
			add(leafExpand, cmpPred(opLT, arg))
		case "$lte":
			add(leafExpand, cmpPred(opLTE, arg))
		case "$gt":
			add(leafExpand, cmpPred(opGT, arg))
		case "$gte":
			add(leafExpand, cmpPred(opGTE, arg))
		case "$in", "$nin":
			pred, err := inPred(arg, e.key)
			if err != nil {
				return nil, err
			}
			n := &pathNode{parts: parts, mode: leafExpand, pred: pred}
			if e.key == "$nin" {
				out = append(out, notNode{n})
			} else {
				out = append(out, n)
			}
		case "$exists":
			n := &pathNode{parts: parts, mode: leafExpand, pred: func(v bson.RawValue) bool { return !isMissing(v) }}
			if truthy(arg) {
				out = append(out, n)
			} else {
				out = append(out, notNode{n})
			}
		case "$type":
			pred, err := typePred(arg)
			if err != nil {
				return nil, err
			}
			add(leafExpand, pred)
		case "$regex":
			a := arg
			regex = &a
		case "$options":
			a := arg
			options = &a
		case "$size":
			n, err := sizeArg(arg)
			if err != nil {
				return nil, err
			}
			add(leafWhole, func(v bson.RawValue) bool {
				if v.Type != bson.TypeArray {
					return false
				}
				c := 0
				forEachElem(v.Value, func([]byte, bson.RawValue) bool { c++; return false })
				return c == n
			})
		case "$all":
			n, err := parseAll(parts, arg, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		case "$elemMatch":
			pred, err := elemMatchPred(arg, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, &pathNode{parts: parts, mode: leafWhole, keyed: pred})
		case "$not":
			n, err := parseNot(parts, arg, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		case "$mod":
			pred, err := modPred(arg)
			if err != nil {
				return nil, err
			}
			add(leafExpand, pred)
		case "$bitsAllSet", "$bitsAllClear", "$bitsAnySet", "$bitsAnyClear":
			pred, err := bitsPred(e.key, bitsOps[e.key], arg)
			if err != nil {
				return nil, err
			}
			add(leafExpand, pred)
		case "$comment":
		default:
			return nil, badValue("unknown operator: %s", e.key)
		}
	}
	if options != nil && regex == nil {
		return nil, badValue("$options needs a $regex")
	}
	if regex != nil {
		var pattern, opts string
		switch regex.Type {
		case bson.TypeString:
			pattern = stringish(*regex)
		case bson.TypeRegex:
			pattern, opts, _ = regex.RegexOK()
		default:
			return nil, badValue("$regex has to be a string")
		}
		if options != nil {
			if options.Type != bson.TypeString {
				return nil, badValue("$options has to be a string")
			}
			if opts != "" {
				return nil, badValue("options set in both $regex and $options")
			}
			opts = stringish(*options)
		}
		rp, err := newRegexPred(pattern, opts)
		if err != nil {
			return nil, err
		}
		add(leafExpand, rp.match)
	}
	if len(out) == 1 {
		return out[0], nil
	}
	return out, nil
}

// inPred builds the predicate for $in (and, negated by the caller, $nin):
// equality with any element, or a regex match for regex elements.
func inPred(arg bson.RawValue, op string) (func(bson.RawValue) bool, error) {
	if arg.Type != bson.TypeArray {
		return nil, badValue("%s needs an array", op)
	}
	var eqs []bson.RawValue
	var res []*regexPred
	for _, v := range arrayValues(arg.Value) {
		switch {
		case v.Type == bson.TypeRegex:
			p, o, _ := v.RegexOK()
			rp, err := newRegexPred(p, o)
			if err != nil {
				return nil, err
			}
			res = append(res, rp)
		case isOperatorDoc(v):
			return nil, badValue("cannot nest $ under %s", op)
		default:
			eqs = append(eqs, v)
		}
	}
	return func(v bson.RawValue) bool {
		for _, e := range eqs {
			if compareMatch(opEQ, v, e) {
				return true
			}
		}
		for _, r := range res {
			if r.match(v) {
				return true
			}
		}
		return false
	}, nil
}

// typePred implements $type with numeric codes, string aliases, "number",
// or an array of those.
func typePred(arg bson.RawValue) (func(bson.RawValue) bool, error) {
	var specs []bson.RawValue
	if arg.Type == bson.TypeArray {
		specs = arrayValues(arg.Value)
	} else {
		specs = []bson.RawValue{arg}
	}
	want := map[bson.Type]bool{}
	for _, s := range specs {
		switch {
		case s.Type == bson.TypeString:
			name := stringish(s)
			if name == "number" {
				for _, t := range []bson.Type{bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128} {
					want[t] = true
				}
				continue
			}
			t, ok := typeByAlias(name)
			if !ok {
				return nil, badValue("Unknown type name alias: %s", name)
			}
			want[t] = true
		case isNumeric(s.Type):
			n := toNum(s)
			f := n.float()
			if f != math.Trunc(f) {
				return nil, badValue("Invalid numerical type code: %s", debugString(s))
			}
			code := int64(f)
			var t bson.Type
			switch {
			case code == -1:
				t = bson.TypeMinKey
			case code == 127:
				t = bson.TypeMaxKey
			case code >= 1 && code <= 19:
				t = bson.Type(code)
			default:
				return nil, badValue("Invalid numerical type code: %s", debugString(s))
			}
			want[t] = true
		default:
			return nil, badValue("type must be represented as a number or a string")
		}
	}
	if len(want) == 0 {
		return nil, badValue("$type must match at least one type")
	}
	return func(v bson.RawValue) bool { return !isMissing(v) && want[v.Type] }, nil
}

func sizeArg(arg bson.RawValue) (int, error) {
	if !isNumeric(arg.Type) {
		return 0, badValue("$size needs a number")
	}
	f := toNum(arg).float()
	if f < 0 {
		return 0, badValue("$size may not be negative")
	}
	if f != math.Trunc(f) || f > math.MaxInt32 {
		// MongoDB accepts a non-integral size but nothing can match it.
		return -1, nil
	}
	return int(f), nil
}

func parseAll(parts []string, arg bson.RawValue, depth int) (node, error) {
	if arg.Type != bson.TypeArray {
		return nil, badValue("$all needs an array")
	}
	items := arrayValues(arg.Value)
	if len(items) == 0 {
		return constNode(false), nil
	}
	var out andNode
	elemMatchMode := isOperatorDoc(items[0]) && firstKey(items[0].Value) == "$elemMatch"
	for _, it := range items {
		if elemMatchMode {
			if !isOperatorDoc(it) || firstKey(it.Value) != "$elemMatch" {
				return nil, badValue("$all/$elemMatch has to be consistent")
			}
			em, _ := lookup(it.Value, "$elemMatch")
			pred, err := elemMatchPred(em, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, &pathNode{parts: parts, mode: leafWhole, keyed: pred})
			continue
		}
		switch {
		case it.Type == bson.TypeRegex:
			p, o, _ := it.RegexOK()
			rp, err := newRegexPred(p, o)
			if err != nil {
				return nil, err
			}
			out = append(out, &pathNode{parts: parts, mode: leafExpand, pred: rp.match})
		case isOperatorDoc(it):
			return nil, badValue("no $ expressions in $all")
		default:
			out = append(out, &pathNode{parts: parts, mode: leafExpand, pred: cmpPred(opEQ, it)})
		}
	}
	return out, nil
}

// elemMatchPred builds the array predicate for $elemMatch. A document whose
// first key is an operator (other than a logical one) is the "value" form
// applied to each element; otherwise it is a query run against each
// element that is a document.
func elemMatchPred(arg bson.RawValue, depth int) (func(bson.RawValue) (bool, int), error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, badValue("$elemMatch needs an Object")
	}
	fk := firstKey(arg.Value)
	valueForm := strings.HasPrefix(fk, "$") && fk != "$and" && fk != "$or" && fk != "$nor" && fk != "$where" && fk != "$expr"
	var sub node
	var err error
	if valueForm {
		sub, err = parseOps(nil, arg.Value, depth+1)
	} else {
		sub, err = parseFilterDoc(arg.Value, depth+1)
	}
	if err != nil {
		return nil, err
	}
	return func(v bson.RawValue) (bool, int) {
		if v.Type != bson.TypeArray {
			return false, -1
		}
		i, at := 0, -1
		forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			container := e.Type == bson.TypeEmbeddedDocument || e.Type == bson.TypeArray
			if (valueForm || container) && sub.matches(e, nil) {
				at = i
				return true
			}
			i++
			return false
		})
		return at >= 0, at
	}, nil
}

func parseNot(parts []string, arg bson.RawValue, depth int) (node, error) {
	switch arg.Type {
	case bson.TypeRegex:
		p, o, _ := arg.RegexOK()
		rp, err := newRegexPred(p, o)
		if err != nil {
			return nil, err
		}
		return notNode{&pathNode{parts: parts, mode: leafExpand, pred: rp.match}}, nil
	case bson.TypeEmbeddedDocument:
		if len(docBody(arg.Value)) == 0 {
			return nil, badValue("$not cannot be empty")
		}
		if !isOperatorDoc(arg) {
			return nil, badValue("unknown operator: %s", firstKey(arg.Value))
		}
		n, err := parseOps(parts, arg.Value, depth+1)
		if err != nil {
			return nil, err
		}
		return notNode{n}, nil
	}
	return nil, badValue("$not needs a regex or a document")
}

func modPred(arg bson.RawValue) (func(bson.RawValue) bool, error) {
	if arg.Type != bson.TypeArray {
		return nil, badValue("malformed mod, needs to be an array")
	}
	items := arrayValues(arg.Value)
	if len(items) < 2 {
		return nil, badValue("malformed mod, not enough elements")
	}
	if len(items) > 2 {
		return nil, badValue("malformed mod, too many elements")
	}
	if !isNumeric(items[0].Type) {
		return nil, badValue("malformed mod, divisor not a number")
	}
	if !isNumeric(items[1].Type) {
		return nil, badValue("malformed mod, remainder not a number")
	}
	d, okd := truncInt64(toNum(items[0]))
	r, okr := truncInt64(toNum(items[1]))
	if !okd || !okr {
		return nil, badValue("malformed mod, divisor and remainder must be finite numbers")
	}
	if d == 0 {
		return nil, badValue("divisor cannot be 0")
	}
	return func(v bson.RawValue) bool {
		if !isNumeric(v.Type) {
			return false
		}
		x, ok := truncInt64(toNum(v))
		if !ok {
			return false
		}
		if d == -1 {
			return r == 0
		}
		return x%d == r
	}, nil
}

// truncInt64 truncates a number toward zero; NaN/Inf and out-of-range
// values report !ok.
func truncInt64(n num) (int64, bool) {
	if n.isInt() {
		return n.i, true
	}
	f := math.Trunc(n.float())
	if math.IsNaN(f) || f >= 9223372036854775808.0 || f < -9223372036854775808.0 {
		return 0, false
	}
	return int64(f), true
}
