package query

import (
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// $jsonSchema is MongoDB's subset of JSON Schema draft 4 (plus bsonType).
// A schema compiles to a list of keyword checks; a value satisfies the
// schema when every check passes. As in JSON Schema, a keyword about one
// kind of value (minimum, minLength, properties, items...) passes values
// of other kinds.

// jsonSchemaMaxDepth bounds nested schemas (mongod bounds the same
// recursion through its BSON depth limit).
const jsonSchemaMaxDepth = 100

// schemaCheck is one compiled keyword.
type schemaCheck struct {
	keyword string
	spec    bson.RawValue
	ok      func(v bson.RawValue) bool
	// sub, for properties, returns the failing properties' details.
	sub func(v bson.RawValue) bson.A
}

type jsonSchema struct{ checks []schemaCheck }

func (s *jsonSchema) valid(v bson.RawValue) bool {
	for i := range s.checks {
		if !s.checks[i].ok(v) {
			return false
		}
	}
	return true
}

// failures lists the keywords v does not satisfy, in mongod's errInfo
// shape ({operatorName, specifiedAs, ...}).
func (s *jsonSchema) failures(v bson.RawValue) bson.A {
	out := bson.A{}
	for i := range s.checks {
		c := &s.checks[i]
		if c.ok(v) {
			continue
		}
		d := bson.D{{Key: "operatorName", Value: c.keyword}, {Key: "specifiedAs", Value: bson.D{{Key: c.keyword, Value: c.spec}}}}
		if c.sub != nil {
			d = bson.D{{Key: "operatorName", Value: c.keyword}, {Key: "propertiesNotSatisfied", Value: c.sub(v)}}
		}
		if c.keyword == "required" && v.Type == bson.TypeEmbeddedDocument {
			var missingProps bson.A
			for _, r := range arrayValues(c.spec.Value) {
				if _, ok := lookup(v.Value, stringish(r)); !ok {
					missingProps = append(missingProps, stringish(r))
				}
			}
			d = append(d, bson.E{Key: "missingProperties", Value: missingProps})
		}
		out = append(out, d)
	}
	return out
}

// JSONSchemaFailures describes which rules of schema doc violates, for a
// validator's errInfo. An invalid schema yields an empty list.
func JSONSchemaFailures(schema, doc bson.Raw) bson.A {
	s, err := compileJSONSchema(schema, 0)
	if err != nil {
		return bson.A{}
	}
	return s.failures(rvDoc(doc))
}

// jsonSchemaNode is $jsonSchema in a filter: it applies to the document.
type jsonSchemaNode struct{ s *jsonSchema }

func (n jsonSchemaNode) matches(v bson.RawValue, _ *matchDetails) bool { return n.s.valid(v) }

func schemaErr(code mongoerr.Code, format string, args ...any) error {
	return mongoerr.New(code, format, args...)
}

// unsupportedSchemaKeywords are JSON Schema keywords MongoDB refuses.
var unsupportedSchemaKeywords = map[string]bool{
	"$ref": true, "$schema": true, "default": true, "definitions": true, "format": true, "id": true,
}

var jsonTypes = map[string][]bson.Type{
	"object":  {bson.TypeEmbeddedDocument},
	"array":   {bson.TypeArray},
	"number":  {bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128},
	"boolean": {bson.TypeBoolean},
	"string":  {bson.TypeString},
	"null":    {bson.TypeNull},
}

func compileJSONSchema(doc bson.Raw, depth int) (*jsonSchema, error) {
	if depth > jsonSchemaMaxDepth {
		return nil, schemaErr(mongoerr.BadValue, "$jsonSchema exceeds the maximum nesting depth of %d", jsonSchemaMaxDepth)
	}
	s := &jsonSchema{}
	es := elems(doc)
	var exclMin, exclMax bool
	has := map[string]bson.RawValue{}
	for _, e := range es {
		if unsupportedSchemaKeywords[e.key] {
			return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword '%s' is not currently supported", e.key)
		}
		has[e.key] = e.val
	}
	if _, t := has["type"]; t {
		if _, bt := has["bsonType"]; bt {
			return nil, schemaErr(mongoerr.FailedToParse, "Cannot specify both $jsonSchema keywords 'type' and 'bsonType'")
		}
	}
	if v, ok := has["exclusiveMinimum"]; ok {
		if v.Type != bson.TypeBoolean {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'exclusiveMinimum' must be a boolean")
		}
		if exclMin = v.Boolean(); exclMin {
			if _, ok := has["minimum"]; !ok {
				return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'minimum' must be a present if exclusiveMinimum is present")
			}
		}
	}
	if v, ok := has["exclusiveMaximum"]; ok {
		if v.Type != bson.TypeBoolean {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'exclusiveMaximum' must be a boolean")
		}
		if exclMax = v.Boolean(); exclMax {
			if _, ok := has["maximum"]; !ok {
				return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'maximum' must be a present if exclusiveMaximum is present")
			}
		}
	}
	for _, e := range es {
		c, err := compileSchemaKeyword(e.key, e.val, has, exclMin, exclMax, depth)
		if err != nil {
			return nil, err
		}
		if c != nil {
			s.checks = append(s.checks, *c)
		}
	}
	return s, nil
}

func subSchema(kw string, v bson.RawValue, depth int) (*jsonSchema, error) {
	if v.Type != bson.TypeEmbeddedDocument {
		return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be an object", kw)
	}
	return compileJSONSchema(v.Value, depth+1)
}

func schemaArray(kw string, v bson.RawValue, depth int) ([]*jsonSchema, error) {
	if v.Type != bson.TypeArray {
		return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be an array", kw)
	}
	items := arrayValues(v.Value)
	if len(items) == 0 {
		return nil, schemaErr(mongoerr.BadValue, "$jsonSchema keyword '%s' must be a non-empty array", kw)
	}
	out := make([]*jsonSchema, len(items))
	for i, it := range items {
		if it.Type != bson.TypeEmbeddedDocument {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be an array of objects, but found an element of type %s", kw, TypeName(it.Type))
		}
		s, err := compileJSONSchema(it.Value, depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// nonNegInt reads a keyword that must be a non-negative integral number.
func schemaNonNegInt(kw string, v bson.RawValue) (int64, error) {
	if !isNumeric(v.Type) {
		return 0, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be a number", kw)
	}
	f := toNum(v).float()
	if f < 0 || f != math.Trunc(f) || math.IsNaN(f) {
		return 0, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword '%s' must be a representable as a non-negative integer", kw)
	}
	if f > math.MaxInt64/2 {
		f = math.MaxInt64 / 2
	}
	return int64(f), nil
}

func typesOf(kw string, v bson.RawValue) (map[bson.Type]bool, error) {
	var names []bson.RawValue
	switch v.Type {
	case bson.TypeString:
		names = []bson.RawValue{v}
	case bson.TypeArray:
		names = arrayValues(v.Value)
		if len(names) == 0 {
			return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword '%s' must name at least one type", kw)
		}
	default:
		return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be either a string or an array of strings", kw)
	}
	want := map[bson.Type]bool{}
	for _, n := range names {
		if n.Type != bson.TypeString {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' array elements must be strings", kw)
		}
		name := stringish(n)
		if kw == "type" {
			if name == "integer" {
				return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema type 'integer' is not currently supported.")
			}
			ts, ok := jsonTypes[name]
			if !ok {
				return nil, schemaErr(mongoerr.BadValue, "Unknown type name alias: %s", name)
			}
			for _, t := range ts {
				want[t] = true
			}
			continue
		}
		if name == "number" {
			for _, t := range jsonTypes["number"] {
				want[t] = true
			}
			continue
		}
		t, ok := typeByAlias(name)
		if !ok {
			return nil, schemaErr(mongoerr.BadValue, "Unknown type name alias: %s", name)
		}
		want[t] = true
	}
	return want, nil
}

// parseJSONSchemaOp compiles a filter's $jsonSchema.
func parseJSONSchemaOp(v bson.RawValue, depth int) (node, error) {
	if v.Type != bson.TypeEmbeddedDocument {
		return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema must be an object")
	}
	s, err := compileJSONSchema(v.Value, depth)
	if err != nil {
		return nil, err
	}
	return jsonSchemaNode{s}, nil
}
