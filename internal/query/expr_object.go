package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Object operators: $getField, $setField, $unsetField. As in MongoDB 7.0
// the field name must be a constant string (a name that starts with '$'
// is written with $literal).

func init() {
	registerOp(compileGetField, "$getField")
	registerOp(compileSetField, "$setField", "$unsetField")
}

// constFieldName checks a $getField/$setField 'field' argument.
func constFieldName(op string, v bson.RawValue, pathCode, constCode, typeCode mongoerr.Code) (string, error) {
	if v.Type == bson.TypeString && strings.HasPrefix(stringish(v), "$") {
		return "", mongoerr.New(pathCode, "%s: field path references are not allowed as 'field': %s; use {$literal: %q} for a field name starting with '$'", op, stringish(v), stringish(v))
	}
	if v.Type == bson.TypeEmbeddedDocument && firstKey(v.Value) == "$literal" {
		lit, _ := lookup(v.Value, "$literal")
		v = lit
	} else if !isConstantSpec(v) {
		return "", mongoerr.New(constCode, "%s requires 'field' to evaluate to a constant, but got a non-constant argument", op)
	}
	if v.Type != bson.TypeString {
		return "", mongoerr.New(typeCode, "%s requires 'field' to evaluate to type String, but got %s", op, TypeName(v.Type))
	}
	return stringish(v), nil
}

func compileGetField(op string, arg bson.RawValue, depth int) (expr, error) {
	var field bson.RawValue
	var input expr = varExpr{name: "CURRENT"}
	if arg.Type == bson.TypeEmbeddedDocument && !strings.HasPrefix(firstKey(arg.Value), "$") {
		for _, e := range elems(arg.Value) {
			switch e.key {
			case "field":
				field = e.val
			case "input":
				x, err := compileExpr(e.val, depth+1)
				if err != nil {
					return nil, err
				}
				input = x
			default:
				return nil, mongoerr.New(3041701, "$getField found an unknown argument: %s", e.key)
			}
		}
		if isMissing(field) {
			return nil, mongoerr.New(3041702, "$getField requires 'field' to be specified")
		}
	} else {
		field = arg
	}
	name, err := constFieldName(op, field, 5654600, 5654601, 3041704)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		in, err := input.eval(ec)
		if err != nil {
			return missing, err
		}
		if isNullish(in) && !isMissing(in) {
			return rvNull, nil
		}
		if in.Type != bson.TypeEmbeddedDocument {
			return missing, nil
		}
		v, _ := lookup(in.Value, name)
		return v, nil
	}), nil
}

func compileSetField(op string, arg bson.RawValue, depth int) (expr, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(4161100, "%s only supports an object as its argument", op)
	}
	var field bson.RawValue
	var input, value expr
	hasValue := false
	for _, e := range elems(arg.Value) {
		switch {
		case e.key == "field":
			field = e.val
		case e.key == "input" || (e.key == "value" && op == "$setField"):
			x, err := compileExpr(e.val, depth+1)
			if err != nil {
				return nil, err
			}
			if e.key == "input" {
				input = x
			} else {
				value, hasValue = x, true
			}
		default:
			return nil, mongoerr.New(4161101, "%s found an unknown argument: %s", op, e.key)
		}
	}
	switch {
	case isMissing(field):
		return nil, mongoerr.New(4161102, "%s requires 'field' to be specified", op)
	case op == "$setField" && !hasValue:
		return nil, mongoerr.New(4161103, "%s requires 'value' to be specified", op)
	case input == nil:
		return nil, mongoerr.New(4161109, "%s requires 'input' to be specified", op)
	}
	name, err := constFieldName(op, field, 4161108, 4161106, 4161107)
	if err != nil {
		return nil, err
	}
	return exprFunc(func(ec *evalCtx) (bson.RawValue, error) {
		in, err := input.eval(ec)
		if err != nil {
			return missing, err
		}
		if isNullish(in) {
			return rvNull, nil
		}
		if in.Type != bson.TypeEmbeddedDocument {
			return missing, mongoerr.New(4161105, "%s requires 'input' to evaluate to type Object", op)
		}
		d, err := decodeDoc(in.Value)
		if err != nil {
			return missing, err
		}
		v := missing
		if value != nil {
			if v, err = value.eval(ec); err != nil {
				return missing, err
			}
		}
		if isMissing(v) {
			d.remove(name)
		} else {
			d.set(name, mustDecode(v))
		}
		return rvDoc(d.encode()), nil
	}), nil
}
