package query

import (
	"unicode"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Operators that bind variables ($let, $map, $filter, $reduce) and the
// $switch conditional.

func init() {
	registerOp(compileLet, "$let")
	registerOp(compileMap, "$map")
	registerOp(compileFilter, "$filter")
	registerOp(compileReduce, "$reduce")
	registerOp(compileSwitch, "$switch")
}

// checkVarName applies MongoDB's rule for user variable names.
func checkVarName(name string) error {
	r, _ := utf8.DecodeRuneInString(name)
	if name == "" || !(unicode.IsLower(r) || r >= utf8.RuneSelf) {
		return mongoerr.New(16870, "'%s' starts with an invalid character for a user variable name", name)
	}
	for _, c := range name {
		if !(c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c) || c >= utf8.RuneSelf) {
			return mongoerr.New(16871, "'%s' contains an invalid character for a variable name: '%c'", name, c)
		}
	}
	return nil
}

// rawArgs splits an object argument into its raw fields, refusing unknown
// ones.
func rawArgs(op string, arg bson.RawValue, notObj, unknown mongoerr.Code, allowed ...string) (map[string]bson.RawValue, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(notObj, "%s only supports an object as its argument", op)
	}
	out := map[string]bson.RawValue{}
	for _, e := range elems(arg.Value) {
		if !contains(allowed, e.key) {
			return nil, mongoerr.New(unknown, "Unrecognized parameter to %s: %s", op, e.key)
		}
		out[e.key] = e.val
	}
	return out, nil
}

func compileLet(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := rawArgs(op, arg, 16874, 16875, "vars", "in")
	if err != nil {
		return nil, err
	}
	vars, ok := a["vars"]
	if !ok {
		return nil, mongoerr.New(16876, "Missing 'vars' parameter to $let")
	}
	in, ok := a["in"]
	if !ok {
		return nil, mongoerr.New(16877, "Missing 'in' parameter to $let")
	}
	if vars.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(10065, "invalid parameter: expected an object (vars)")
	}
	var names []string
	var vals []expr
	for _, e := range elems(vars.Value) {
		if err := checkVarName(e.key); err != nil {
			return nil, err
		}
		x, err := compileExpr(e.val, depth+1)
		if err != nil {
			return nil, err
		}
		names, vals = append(names, e.key), append(vals, x)
	}
	body, err := compileExpr(in, depth+1)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		vs := make([]bson.RawValue, len(vals))
		for i, x := range vals {
			v, err := x.eval(ec) // the vars see the outer scope only
			if err != nil {
				return missing, err
			}
			vs[i] = v
		}
		return body.eval(ec.with(names, vs))
	}), nil
}

// asName reads the optional "as" of $map/$filter.
func asName(a map[string]bson.RawValue) (string, error) {
	v, ok := a["as"]
	if !ok {
		return "this", nil
	}
	if v.Type != bson.TypeString {
		return "", mongoerr.New(mongoerr.TypeMismatch, "'as' must be a string")
	}
	name := stringish(v)
	return name, checkVarName(name)
}

func compileMap(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := rawArgs(op, arg, 16878, 16879, "input", "as", "in")
	if err != nil {
		return nil, err
	}
	if _, ok := a["input"]; !ok {
		return nil, mongoerr.New(16880, "Missing 'input' parameter to $map")
	}
	if _, ok := a["in"]; !ok {
		return nil, mongoerr.New(16882, "Missing 'in' parameter to $map")
	}
	as, err := asName(a)
	if err != nil {
		return nil, err
	}
	input, err := compileExpr(a["input"], depth+1)
	if err != nil {
		return nil, err
	}
	in, err := compileExpr(a["in"], depth+1)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		arr, err := input.eval(ec)
		if err != nil || isNullish(arr) {
			return rvNull, err
		}
		if arr.Type != bson.TypeArray {
			return missing, mongoerr.New(16883, "input to $map must be an array not %s", TypeName(arr.Type))
		}
		vals := arrayValues(arr.Value)
		out := make([]bson.RawValue, len(vals))
		for i, v := range vals {
			r, err := in.eval(ec.with([]string{as}, []bson.RawValue{v}))
			if err != nil {
				return missing, err
			}
			if isMissing(r) {
				r = rvNull
			}
			out[i] = r
		}
		return rvArray(buildArray(out)), nil
	}), nil
}

func compileFilter(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := rawArgs(op, arg, 28646, 28647, "input", "as", "cond", "limit")
	if err != nil {
		return nil, err
	}
	if _, ok := a["input"]; !ok {
		return nil, mongoerr.New(28648, "Missing 'input' parameter to $filter")
	}
	if _, ok := a["cond"]; !ok {
		return nil, mongoerr.New(28650, "Missing 'cond' parameter to $filter")
	}
	as, err := asName(a)
	if err != nil {
		return nil, err
	}
	input, err := compileExpr(a["input"], depth+1)
	if err != nil {
		return nil, err
	}
	cond, err := compileExpr(a["cond"], depth+1)
	if err != nil {
		return nil, err
	}
	var limit expr
	if lv, ok := a["limit"]; ok {
		if limit, err = compileExpr(lv, depth+1); err != nil {
			return nil, err
		}
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		arr, err := input.eval(ec)
		if err != nil || isNullish(arr) {
			return rvNull, err
		}
		if arr.Type != bson.TypeArray {
			return missing, mongoerr.New(28651, "input to $filter must be an array not %s", TypeName(arr.Type))
		}
		max := int64(-1)
		if limit != nil {
			lv, err := limit.eval(ec)
			if err != nil {
				return missing, err
			}
			if !isNullish(lv) {
				n, ok := exactInt(lv)
				if !ok {
					return missing, mongoerr.New(327391, "$filter: limit must be represented as a 32-bit integral value: %s", debugString(lv))
				}
				if n < 1 {
					return missing, mongoerr.New(327392, "$filter: limit must be greater than 0: %d", n)
				}
				max = n
			}
		}
		var out []bson.RawValue
		for _, v := range arrayValues(arr.Value) {
			if max >= 0 && int64(len(out)) >= max {
				break
			}
			r, err := cond.eval(ec.with([]string{as}, []bson.RawValue{v}))
			if err != nil {
				return missing, err
			}
			if truthy(r) {
				out = append(out, v)
			}
		}
		return rvArray(buildArray(out)), nil
	}), nil
}

func compileReduce(op string, arg bson.RawValue, depth int) (expr, error) {
	a, err := rawArgs(op, arg, 40075, 40076, "input", "initialValue", "in")
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		code mongoerr.Code
	}{{"input", 40077}, {"initialValue", 40078}, {"in", 40079}} {
		if _, ok := a[f.name]; !ok {
			return nil, mongoerr.New(f.code, "$reduce requires '%s' to be specified", f.name)
		}
	}
	input, err := compileExpr(a["input"], depth+1)
	if err != nil {
		return nil, err
	}
	init, err := compileExpr(a["initialValue"], depth+1)
	if err != nil {
		return nil, err
	}
	in, err := compileExpr(a["in"], depth+1)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		arr, err := input.eval(ec)
		if err != nil || isNullish(arr) {
			return rvNull, err
		}
		if arr.Type != bson.TypeArray {
			return missing, mongoerr.New(40080, "$reduce requires that 'input' be an array, found: %s", debugString(arr))
		}
		acc, err := init.eval(ec)
		if err != nil {
			return missing, err
		}
		for _, v := range arrayValues(arr.Value) {
			if acc, err = in.eval(ec.with([]string{"value", "this"}, []bson.RawValue{acc, v})); err != nil {
				return missing, err
			}
		}
		return acc, nil
	}), nil
}

func compileSwitch(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40060, "$switch requires an object as an argument, found: %s", TypeName(arg.Type))
	}
	type branch struct{ cond, then expr }
	var branches []branch
	var def expr
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "branches":
			if e.val.Type != bson.TypeArray {
				return nil, mongoerr.New(40061, "$switch expected an array for 'branches', found: %s", TypeName(e.val.Type))
			}
			for _, b := range arrayValues(e.val.Value) {
				if b.Type != bson.TypeEmbeddedDocument {
					return nil, mongoerr.New(40062, "$switch expected each branch to be an object, found: %s", TypeName(b.Type))
				}
				var br branch
				for _, be := range elems(b.Value) {
					x, err := compileExpr(be.val, depth+1)
					if err != nil {
						return nil, err
					}
					switch be.key {
					case "case":
						br.cond = x
					case "then":
						br.then = x
					default:
						return nil, mongoerr.New(40063, "$switch found an unknown argument to a branch: %s", be.key)
					}
				}
				if br.cond == nil {
					return nil, mongoerr.New(40064, "$switch requires each branch have a 'case' expression")
				}
				if br.then == nil {
					return nil, mongoerr.New(40065, "$switch requires each branch have a 'then' expression.")
				}
				branches = append(branches, br)
			}
		case "default":
			x, err := compileExpr(e.val, depth+1)
			if err != nil {
				return nil, err
			}
			def = x
		default:
			return nil, mongoerr.New(40067, "$switch found an unknown argument: %s", e.key)
		}
	}
	if len(branches) == 0 {
		return nil, mongoerr.New(40068, "$switch requires at least one branch.")
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		for _, b := range branches {
			c, err := b.cond.eval(ec)
			if err != nil {
				return missing, err
			}
			if truthy(c) {
				return b.then.eval(ec)
			}
		}
		if def == nil {
			return missing, mongoerr.New(40066, "$switch could not find a matching branch for an input, and no default was specified.")
		}
		return def.eval(ec)
	}), nil
}

// exactInt returns v as an integer if it is a number with an integral
// value representable in 64 bits.
func exactInt(v bson.RawValue) (int64, bool) {
	if !isNumeric(v.Type) {
		return 0, false
	}
	n := toNum(v)
	if n.isInt() {
		return n.i, true
	}
	f := n.float()
	if f != float64(int64(f)) || f > 9.2e18 || f < -9.2e18 {
		return 0, false
	}
	return int64(f), true
}
