package handlers

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// A command's `let` defines constants ($$name) for its expressions. mongod
// evaluates each once, before the command runs, so a reference is the same
// as the value itself: cmkdb evaluates them and rewrites every reference in
// an expression context into {$literal: value}. Outside expressions (a
// plain field condition like {a: "$$x"}) the string is data, as in mongod,
// and stays. A name that an inner $let, $map, $filter, $reduce or $lookup
// binds again would shadow the constant: such commands are refused rather
// than rewritten wrongly.

// codeBadVarName is mongod's error for an invalid user variable name.
const codeBadVarName mongoerr.Code = 16870

// parseLet evaluates a command's let document; nil if absent or empty.
func parseLet(a args, command string) (map[string]bson.RawValue, error) {
	return parseVars(a, "let", command)
}

// parseVars evaluates the variables document in field key (let, or an
// update statement's c); nil if absent or empty.
func parseVars(a args, key, command string) (map[string]bson.RawValue, error) {
	v, ok := a.value(key)
	if !ok || v.Type == bson.TypeNull {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", command, key, typeName(v.Type))
	}
	elems, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid let: %v", err)
	}
	if len(elems) == 0 {
		return nil, nil
	}
	vars := map[string]bson.RawValue{}
	for _, e := range elems {
		name := e.Key()
		r, _ := utf8.DecodeRuneInString(name)
		if name == "" || !(unicode.IsLower(r) || r >= utf8.RuneSelf) {
			return nil, mongoerr.New(codeBadVarName, "'%s' starts with an invalid character for a user variable name", name)
		}
		for _, c := range name {
			if !(c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c) || c >= utf8.RuneSelf) {
				return nil, mongoerr.New(codeBadVarName, "'%s' contains an invalid character for a variable name: '%c'", name, c)
			}
		}
		x, err := query.CompileExpression(e.Value())
		if err != nil {
			return nil, err
		}
		val, err := x.Evaluate(bson.Raw{5, 0, 0, 0, 0})
		if err != nil {
			return nil, err
		}
		if val.Type == 0 {
			val = bson.RawValue{Type: bson.TypeUndefined}
		}
		vars[name] = val
	}
	return vars, nil
}

// letFilter rewrites the $$ references inside a filter's $expr clauses.
func letFilter(filter bson.Raw, vars map[string]bson.RawValue) (bson.Raw, error) {
	if len(vars) == 0 || len(filter) <= 5 {
		return filter, nil
	}
	d, err := rewriteFilter(filter, vars)
	if err != nil {
		return nil, err
	}
	return bson.Marshal(d)
}

func rewriteFilter(filter bson.Raw, vars map[string]bson.RawValue) (bson.D, error) {
	elems, err := filter.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid filter: %v", err)
	}
	out := make(bson.D, 0, len(elems))
	for _, e := range elems {
		v := e.Value()
		switch e.Key() {
		case "$expr":
			x, err := rewriteExpr(v, vars, 0)
			if err != nil {
				return nil, err
			}
			out = append(out, bson.E{Key: e.Key(), Value: x})
		case "$and", "$or", "$nor":
			arr, ok := v.ArrayOK()
			if !ok {
				out = append(out, bson.E{Key: e.Key(), Value: v})
				continue
			}
			vals, _ := arr.Values()
			items := bson.A{}
			for _, it := range vals {
				sub, ok := it.DocumentOK()
				if !ok {
					items = append(items, it)
					continue
				}
				r, err := rewriteFilter(sub, vars)
				if err != nil {
					return nil, err
				}
				items = append(items, r)
			}
			out = append(out, bson.E{Key: e.Key(), Value: items})
		default:
			out = append(out, bson.E{Key: e.Key(), Value: v})
		}
	}
	return out, nil
}

// binders are the expression operators that define variables of their own.
var binders = map[string]bool{"$let": true, "$map": true, "$filter": true, "$reduce": true}

// rewriteExpr replaces $$name references in an aggregation expression.
func rewriteExpr(v bson.RawValue, vars map[string]bson.RawValue, depth int) (any, error) {
	if depth > 200 {
		return nil, mongoerr.New(mongoerr.BadValue, "expression nested too deeply")
	}
	switch v.Type {
	case bson.TypeString:
		s := v.StringValue()
		if !strings.HasPrefix(s, "$$") {
			return v, nil
		}
		name, path, _ := strings.Cut(s[2:], ".")
		val, ok := vars[name]
		if !ok {
			return v, nil
		}
		if path != "" {
			var err error
			if val, err = letPath(val, path); err != nil {
				return nil, err
			}
		}
		return bson.D{{Key: "$literal", Value: val}}, nil
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "invalid expression: %v", err)
		}
		out := make(bson.D, 0, len(elems))
		for _, e := range elems {
			if e.Key() == "$literal" {
				out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
				continue
			}
			if binders[e.Key()] && rebinds(e.Value(), vars) {
				return nil, notSupported("a 'let' variable redefined inside %s is not supported", e.Key())
			}
			x, err := rewriteExpr(e.Value(), vars, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, bson.E{Key: e.Key(), Value: x})
		}
		return out, nil
	case bson.TypeArray:
		vals, _ := v.Array().Values()
		out := make(bson.A, 0, len(vals))
		for _, it := range vals {
			x, err := rewriteExpr(it, vars, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	return v, nil
}

// rebinds reports whether a $let/$map/$filter/$reduce spec binds one of
// the let names again ($let's vars, the others' "as").
func rebinds(spec bson.RawValue, vars map[string]bson.RawValue) bool {
	d, ok := spec.DocumentOK()
	if !ok {
		return false
	}
	if as, ok := d.Lookup("as").StringValueOK(); ok {
		if _, clash := vars[as]; clash {
			return true
		}
	}
	if vd, ok := d.Lookup("vars").DocumentOK(); ok {
		elems, _ := vd.Elements()
		for _, e := range elems {
			if _, clash := vars[e.Key()]; clash {
				return true
			}
		}
	}
	// $reduce binds $$this and $$value, which are not user names.
	return false
}

// letPath resolves $$name.a.b through embedded documents.
func letPath(v bson.RawValue, path string) (bson.RawValue, error) {
	for _, p := range strings.Split(path, ".") {
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			next, err := v.Document().LookupErr(p)
			if err != nil {
				return bson.RawValue{Type: bson.TypeUndefined}, nil
			}
			v = next
		case bson.TypeArray:
			return bson.RawValue{}, notSupported("a path through an array in a 'let' variable is not supported")
		default:
			return bson.RawValue{Type: bson.TypeUndefined}, nil
		}
	}
	return v, nil
}

// letPipeline rewrites the $$ references of an aggregation pipeline: in
// $match only inside $expr, in $lookup's sub-pipeline recursively (unless
// its own let rebinds a name), elsewhere in every expression.
func letPipeline(stages []bson.Raw, vars map[string]bson.RawValue) ([]bson.Raw, error) {
	if len(vars) == 0 {
		return stages, nil
	}
	out := make([]bson.Raw, len(stages))
	for i, st := range stages {
		elems, err := st.Elements()
		if err != nil || len(elems) != 1 {
			out[i] = st // the pipeline compiler reports the shape error
			continue
		}
		name, v := elems[0].Key(), elems[0].Value()
		var nv any
		switch name {
		case "$match":
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			if nv, err = rewriteFilter(d, vars); err != nil {
				return nil, err
			}
		case "$lookup":
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			if ld, ok := d.Lookup("let").DocumentOK(); ok {
				for _, e := range mustElements(ld) {
					if _, clash := vars[e.Key()]; clash {
						return nil, notSupported("a 'let' variable redefined by $lookup's let is not supported")
					}
				}
			}
			nd := bson.D{}
			for _, e := range mustElements(d) {
				if e.Key() != "pipeline" {
					nd = append(nd, bson.E{Key: e.Key(), Value: e.Value()})
					continue
				}
				arr, ok := e.Value().ArrayOK()
				if !ok {
					nd = append(nd, bson.E{Key: e.Key(), Value: e.Value()})
					continue
				}
				vals, _ := arr.Values()
				sub := make([]bson.Raw, 0, len(vals))
				for _, x := range vals {
					if sd, ok := x.DocumentOK(); ok {
						sub = append(sub, sd)
					}
				}
				rs, err := letPipeline(sub, vars)
				if err != nil {
					return nil, err
				}
				ra := bson.A{}
				for _, r := range rs {
					ra = append(ra, r)
				}
				nd = append(nd, bson.E{Key: "pipeline", Value: ra})
			}
			nv = nd
		default:
			if nv, err = rewriteExpr(v, vars, 0); err != nil {
				return nil, err
			}
		}
		raw, err := bson.Marshal(bson.D{{Key: name, Value: nv}})
		if err != nil {
			return nil, err
		}
		out[i] = raw
	}
	return out, nil
}
