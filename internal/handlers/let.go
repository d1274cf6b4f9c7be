package handlers

import (
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
	return query.RewriteLetFilter(filter, vars)
}

// letPipeline rewrites the $$ references of an aggregation pipeline.
func letPipeline(stages []bson.Raw, vars map[string]bson.RawValue) ([]bson.Raw, error) {
	return query.RewriteLetPipeline(stages, vars)
}
