package query

import (
	"fmt"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func TestJSONSchemaMatch(t *testing.T) {
	tests := []struct {
		schema, doc string
		want        bool
	}{
		{`{}`, `{"a": 1}`, true},
		// bsonType and type, single and lists, "number"
		{`{"bsonType": "object"}`, `{"a": 1}`, true},
		{`{"bsonType": "array"}`, `{"a": 1}`, false},
		{`{"properties": {"a": {"bsonType": "int"}}}`, `{"a": 1}`, true},
		{`{"properties": {"a": {"bsonType": "int"}}}`, `{"a": 1.5}`, false},
		{`{"properties": {"a": {"bsonType": ["int", "string"]}}}`, `{"a": "x"}`, true},
		{`{"properties": {"a": {"bsonType": "number"}}}`, `{"a": {"$numberLong": "5"}}`, true},
		{`{"properties": {"a": {"type": "number"}}}`, `{"a": "5"}`, false},
		{`{"properties": {"a": {"type": "string"}}}`, `{"a": "5"}`, true},
		{`{"properties": {"a": {"type": ["null", "boolean"]}}}`, `{"a": true}`, true},
		// properties only constrain present fields; required makes them present
		{`{"properties": {"a": {"bsonType": "int"}}}`, `{"b": 1}`, true},
		{`{"required": ["a", "b"]}`, `{"a": 1, "b": 2}`, true},
		{`{"required": ["a", "b"]}`, `{"a": 1}`, false},
		// numbers: minimum/maximum, exclusive, only for numbers
		{`{"properties": {"a": {"minimum": 5}}}`, `{"a": 5}`, true},
		{`{"properties": {"a": {"minimum": 5, "exclusiveMinimum": true}}}`, `{"a": 5}`, false},
		{`{"properties": {"a": {"maximum": 5}}}`, `{"a": 5.5}`, false},
		{`{"properties": {"a": {"maximum": 5, "exclusiveMaximum": true}}}`, `{"a": 4}`, true},
		{`{"properties": {"a": {"minimum": 5}}}`, `{"a": "x"}`, true},
		{`{"properties": {"a": {"multipleOf": 3}}}`, `{"a": 9}`, true},
		{`{"properties": {"a": {"multipleOf": 3}}}`, `{"a": 10}`, false},
		// strings: length in code points, pattern
		{`{"properties": {"a": {"minLength": 2}}}`, `{"a": "é"}`, false},
		{`{"properties": {"a": {"maxLength": 2}}}`, `{"a": "éé"}`, true},
		{`{"properties": {"a": {"pattern": "^x+$"}}}`, `{"a": "xxx"}`, true},
		{`{"properties": {"a": {"pattern": "^x+$"}}}`, `{"a": "xy"}`, false},
		// enum
		{`{"properties": {"a": {"enum": [1, "b", null]}}}`, `{"a": "b"}`, true},
		{`{"properties": {"a": {"enum": [1, "b", null]}}}`, `{"a": 2}`, false},
		// arrays
		{`{"properties": {"a": {"items": {"bsonType": "int"}}}}`, `{"a": [1, 2]}`, true},
		{`{"properties": {"a": {"items": {"bsonType": "int"}}}}`, `{"a": [1, "x"]}`, false},
		{`{"properties": {"a": {"items": [{"bsonType": "int"}, {"bsonType": "string"}]}}}`, `{"a": [1, "x", true]}`, true},
		{`{"properties": {"a": {"items": [{"bsonType": "int"}], "additionalItems": false}}}`, `{"a": [1, 2]}`, false},
		{`{"properties": {"a": {"items": [{"bsonType": "int"}], "additionalItems": {"bsonType": "string"}}}}`, `{"a": [1, "s"]}`, true},
		{`{"properties": {"a": {"minItems": 2, "maxItems": 3}}}`, `{"a": [1]}`, false},
		{`{"properties": {"a": {"minItems": 2, "maxItems": 3}}}`, `{"a": [1, 2, 3]}`, true},
		{`{"properties": {"a": {"uniqueItems": true}}}`, `{"a": [1, 2, 1.0]}`, false},
		{`{"properties": {"a": {"uniqueItems": true}}}`, `{"a": [1, 2, 3]}`, true},
		// objects: additional and pattern properties, counts, dependencies
		{`{"properties": {"_id": {}, "a": {}}, "additionalProperties": false}`, `{"_id": 1, "a": 1}`, true},
		{`{"properties": {"_id": {}, "a": {}}, "additionalProperties": false}`, `{"_id": 1, "b": 1}`, false},
		{`{"properties": {"_id": {}}, "additionalProperties": {"bsonType": "int"}}`, `{"_id": 1, "b": 1}`, true},
		{`{"properties": {"_id": {}}, "additionalProperties": {"bsonType": "int"}}`, `{"_id": 1, "b": "x"}`, false},
		{`{"patternProperties": {"^s_": {"bsonType": "string"}}}`, `{"s_a": "x", "n": 1}`, true},
		{`{"patternProperties": {"^s_": {"bsonType": "string"}}}`, `{"s_a": 1}`, false},
		{`{"properties": {"_id": {}}, "patternProperties": {"^s_": {}}, "additionalProperties": false}`, `{"_id": 1, "s_x": 1}`, true},
		{`{"minProperties": 2}`, `{"a": 1}`, false},
		{`{"maxProperties": 2}`, `{"a": 1, "b": 2}`, true},
		{`{"dependencies": {"a": ["b"]}}`, `{"a": 1}`, false},
		{`{"dependencies": {"a": ["b"]}}`, `{"c": 1}`, true},
		{`{"dependencies": {"a": {"required": ["c"]}}}`, `{"a": 1, "c": 2}`, true},
		// combinators
		{`{"properties": {"a": {"allOf": [{"minimum": 1}, {"maximum": 3}]}}}`, `{"a": 4}`, false},
		{`{"properties": {"a": {"anyOf": [{"bsonType": "int"}, {"bsonType": "string"}]}}}`, `{"a": "x"}`, true},
		{`{"properties": {"a": {"oneOf": [{"minimum": 1}, {"minimum": 2}]}}}`, `{"a": 5}`, false},
		{`{"properties": {"a": {"oneOf": [{"minimum": 1}, {"minimum": 2}]}}}`, `{"a": 1}`, true},
		{`{"properties": {"a": {"not": {"bsonType": "string"}}}}`, `{"a": "x"}`, false},
		// annotations change nothing
		{`{"title": "t", "description": "d", "required": ["a"]}`, `{"a": 1}`, true},
		// nested objects
		{`{"properties": {"a": {"bsonType": "object", "required": ["b"], "properties": {"b": {"bsonType": "int"}}}}}`, `{"a": {"b": 1}}`, true},
		{`{"properties": {"a": {"bsonType": "object", "required": ["b"]}}}`, `{"a": {"c": 1}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.schema+"|"+tt.doc, func(t *testing.T) {
			m, err := Compile(D(t, `{"$jsonSchema": `+tt.schema+`}`))
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if got := m.Match(D(t, tt.doc)); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
			// The same schema combined with other filter clauses.
			m2, err := Compile(D(t, `{"$and": [{"$jsonSchema": `+tt.schema+`}, {}]}`))
			if err != nil {
				t.Fatalf("Compile in $and: %v", err)
			}
			if got := m2.Match(D(t, tt.doc)); got != tt.want {
				t.Errorf("Match in $and = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJSONSchemaRefused(t *testing.T) {
	tests := []struct {
		schema string
		code   mongoerr.Code
	}{
		{`{"$ref": "#/definitions/x"}`, mongoerr.FailedToParse},
		{`{"$schema": "http://json-schema.org/draft-04/schema#"}`, mongoerr.FailedToParse},
		{`{"default": 1}`, mongoerr.FailedToParse},
		{`{"definitions": {}}`, mongoerr.FailedToParse},
		{`{"properties": {"a": {"format": "email"}}}`, mongoerr.FailedToParse},
		{`{"id": "x"}`, mongoerr.FailedToParse},
		{`{"frobnicate": 1}`, mongoerr.FailedToParse},
		{`{"type": "integer"}`, mongoerr.FailedToParse},
		{`{"type": "object", "bsonType": "object"}`, mongoerr.FailedToParse},
		{`{"bsonType": "nosuchtype"}`, mongoerr.BadValue},
		{`{"minimum": "x"}`, mongoerr.TypeMismatch},
		{`{"required": "a"}`, mongoerr.TypeMismatch},
		{`{"required": []}`, mongoerr.FailedToParse},
		{`{"properties": {"a": 1}}`, mongoerr.TypeMismatch},
		{`{"exclusiveMinimum": true}`, mongoerr.FailedToParse},
		{`{"enum": []}`, mongoerr.FailedToParse},
		{`{"minLength": -1}`, mongoerr.FailedToParse},
		{`{"allOf": []}`, mongoerr.BadValue},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			_, err := Compile(D(t, `{"$jsonSchema": `+tt.schema+`}`))
			assertCode(t, err, tt.code)
		})
	}
}

func TestJSONSchemaFailures(t *testing.T) {
	schema := D(t, `{"required": ["a", "b"], "properties": {"c": {"bsonType": "int"}, "a": {"minimum": 0}}}`)
	got := JSONSchemaFailures(schema, D(t, `{"a": 1, "c": "x"}`))
	var names []string
	for _, f := range got {
		d := f.(bson.D)
		names = append(names, d[0].Value.(string))
		switch d[0].Value {
		case "required":
			if js := fmt.Sprint(d); !strings.Contains(js, `"missingProperties":["b"]`) {
				t.Errorf("required failure = %v, want missingProperties [b]", js)
			}
		case "properties":
			if js := fmt.Sprint(d); !strings.Contains(js, `"propertyName":"c"`) || strings.Contains(js, `"propertyName":"a"`) {
				t.Errorf("properties failure = %v, want only property c", js)
			}
		}
	}
	if strings.Join(names, ",") != "required,properties" {
		t.Errorf("failing rules = %v, want required,properties", names)
	}
}

// FuzzJSONSchema: an arbitrary schema either fails to compile or matches
// and explains any document without panicking.
func FuzzJSONSchema(f *testing.F) {
	docs := fuzzSeedDocs(f)
	for _, js := range []string{
		`{"required": ["a"], "properties": {"a": {"bsonType": "int", "minimum": 1}}}`,
		`{"properties": {"b": {"items": [{"type": "number"}], "additionalItems": false, "uniqueItems": true}}}`,
		`{"patternProperties": {"^d": {"minProperties": 1}}, "additionalProperties": {"not": {"type": "null"}}}`,
		`{"anyOf": [{"required": ["a"]}, {"dependencies": {"b": ["c"]}}], "oneOf": [{}, {"maxProperties": 0}]}`,
		`{"properties": {"d": {"properties": {"e": {"pattern": "^x", "minLength": 1, "enum": ["x", 1]}}}}}`,
	} {
		f.Add([]byte(D(f, js)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if validateDoc(data) != nil {
			return
		}
		s, err := compileJSONSchema(data, 0)
		if err != nil {
			return
		}
		for _, d := range docs {
			s.valid(rvDoc(d))
			s.failures(rvDoc(d))
		}
		s.valid(rvDoc(data))
		JSONSchemaFailures(data, data)
	})
}
