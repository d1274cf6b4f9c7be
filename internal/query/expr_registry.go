package query

import (
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Expression operators beyond the core arithmetic and comparison ones in
// expr.go live in a registry, one file per family (expr_date.go,
// expr_string.go, ...), each registering its operators in init.

// opCompiler compiles one operator's argument (the raw value after the
// operator name).
type opCompiler func(op string, arg bson.RawValue, depth int) (expr, error)

var exprOps = map[string]opCompiler{}

func registerOp(c opCompiler, names ...string) {
	for _, n := range names {
		if _, dup := exprOps[n]; dup {
			panic("query: expression operator registered twice: " + n)
		}
		exprOps[n] = c
	}
}

// compileArgs compiles an operator's argument list: an array is the list,
// anything else a single argument.
func compileArgs(arg bson.RawValue, depth int) ([]expr, error) {
	if arg.Type != bson.TypeArray {
		e, err := compileExpr(arg, depth+1)
		if err != nil {
			return nil, err
		}
		return []expr{e}, nil
	}
	var args []expr
	for _, it := range arrayValues(arg.Value) {
		e, err := compileExpr(it, depth+1)
		if err != nil {
			return nil, err
		}
		args = append(args, e)
	}
	return args, nil
}

// fnOp registers an operator taking between min and max evaluated
// arguments (max < 0: no upper bound).
func fnOp(min, max int, fn func(op string, a []bson.RawValue) (bson.RawValue, error)) opCompiler {
	return func(op string, arg bson.RawValue, depth int) (expr, error) {
		args, err := compileArgs(arg, depth)
		if err != nil {
			return nil, err
		}
		if err := checkArity(op, len(args), min, max); err != nil {
			return nil, err
		}
		return opExpr{args, func(a []bson.RawValue) (bson.RawValue, error) { return fn(op, a) }}, nil
	}
}

func checkArity(op string, n, min, max int) error {
	switch {
	case min == max && n != min:
		return arityErr(op, "exactly "+strconv.Itoa(min), n)
	case n < min && max < 0:
		return arityErr(op, "at least "+strconv.Itoa(min), n)
	case n < min || (max >= 0 && n > max):
		return mongoerr.New(codeExprArity, "Expression %s takes at least %d arguments, and at most %d. %d were passed in.", op, min, max, n)
	}
	return nil
}

// namedArgs compiles an operator whose argument is a document of named
// parameters; unknown names fail with unknownCode, and required ones
// missing with missingCode.
func namedArgs(op string, arg bson.RawValue, depth int, required, optional []string, notObjCode, unknownCode, missingCode mongoerr.Code) (map[string]expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(notObjCode, "%s expects an object of named arguments but found: %s", op, TypeName(arg.Type))
	}
	out := map[string]expr{}
	for _, e := range elems(arg.Value) {
		if !contains(required, e.key) && !contains(optional, e.key) {
			return nil, mongoerr.New(unknownCode, "%s found an unknown argument: %s", op, e.key)
		}
		x, err := compileExpr(e.val, depth+1)
		if err != nil {
			return nil, err
		}
		out[e.key] = x
	}
	for _, r := range required {
		if _, ok := out[r]; !ok {
			return nil, mongoerr.New(missingCode, "Missing '%s' parameter to %s", r, op)
		}
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// evalOpt evaluates an optional named argument (missing if absent).
func evalOpt(ec *evalCtx, m map[string]expr, name string) (bson.RawValue, error) {
	x, ok := m[name]
	if !ok {
		return missing, nil
	}
	return x.eval(ec)
}

// exprFunc adapts a closure to expr.
type exprFunc func(ec *evalCtx) (bson.RawValue, error)

func (f exprFunc) eval(ec *evalCtx) (bson.RawValue, error) { return f(ec) }

// with returns a context with extra variables bound.
func (ec *evalCtx) with(names []string, vals []bson.RawValue) *evalCtx {
	vars := make(map[string]bson.RawValue, len(ec.vars)+len(names))
	for k, v := range ec.vars {
		vars[k] = v
	}
	for i, n := range names {
		vars[n] = vals[i]
	}
	return &evalCtx{root: ec.root, current: ec.current, vars: vars}
}
