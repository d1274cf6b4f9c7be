package query

import (
	"math"
	"regexp"
	"sort"
	"unicode/utf8"

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

func compileSchemaKeyword(kw string, v bson.RawValue, has map[string]bson.RawValue, exclMin, exclMax bool, depth int) (*schemaCheck, error) {
	c := &schemaCheck{keyword: kw, spec: v}
	isDoc := func(x bson.RawValue) bool { return x.Type == bson.TypeEmbeddedDocument }
	isArr := func(x bson.RawValue) bool { return x.Type == bson.TypeArray }
	isStr := func(x bson.RawValue) bool { return x.Type == bson.TypeString }
	switch kw {
	case "description", "title":
		if v.Type != bson.TypeString {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be of type string", kw)
		}
		return nil, nil
	case "exclusiveMinimum", "exclusiveMaximum":
		return nil, nil // folded into minimum/maximum
	case "type", "bsonType":
		want, err := typesOf(kw, v)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool { return want[x.Type] }
	case "minimum", "maximum":
		if !isNumeric(v.Type) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be a number", kw)
		}
		excl := exclMin
		if kw == "maximum" {
			excl = exclMax
		}
		c.ok = func(x bson.RawValue) bool {
			if !isNumeric(x.Type) {
				return true
			}
			r := Compare(x, v)
			if kw == "minimum" {
				return r > 0 || (r == 0 && !excl)
			}
			return r < 0 || (r == 0 && !excl)
		}
	case "multipleOf":
		if !isNumeric(v.Type) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'multipleOf' must be a number")
		}
		m := toNum(v).float()
		if !(m > 0) {
			return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'multipleOf' must have a positive value")
		}
		c.ok = func(x bson.RawValue) bool {
			if !isNumeric(x.Type) {
				return true
			}
			return math.Mod(toNum(x).float(), m) == 0
		}
	case "minLength", "maxLength":
		n, err := schemaNonNegInt(kw, v)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool {
			if !isStr(x) {
				return true
			}
			l := int64(utf8.RuneCountInString(stringish(x)))
			if kw == "minLength" {
				return l >= n
			}
			return l <= n
		}
	case "pattern":
		if v.Type != bson.TypeString {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'pattern' must be a string")
		}
		re, err := compileRegex(stringish(v), "")
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool { return !isStr(x) || re.MatchString(stringish(x)) }
	case "enum":
		if !isArr(v) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'enum' must be an array")
		}
		vals := arrayValues(v.Value)
		if len(vals) == 0 {
			return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'enum' cannot be an empty array")
		}
		c.ok = func(x bson.RawValue) bool {
			for _, e := range vals {
				if Compare(x, e) == 0 {
					return true
				}
			}
			return false
		}
	case "required":
		if !isArr(v) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'required' must be an array")
		}
		names := arrayValues(v.Value)
		if len(names) == 0 {
			return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'required' cannot be an empty array")
		}
		seen := map[string]bool{}
		for _, n := range names {
			if n.Type != bson.TypeString {
				return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'required' must contain only strings")
			}
			if seen[stringish(n)] {
				return nil, schemaErr(mongoerr.FailedToParse, "$jsonSchema keyword 'required' array cannot contain duplicate values")
			}
			seen[stringish(n)] = true
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			for n := range seen {
				if _, ok := lookup(x.Value, n); !ok {
					return false
				}
			}
			return true
		}
	case "minProperties", "maxProperties":
		n, err := schemaNonNegInt(kw, v)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			cnt := int64(0)
			forEachElem(x.Value, func([]byte, bson.RawValue) bool { cnt++; return false })
			if kw == "minProperties" {
				return cnt >= n
			}
			return cnt <= n
		}
	case "properties":
		if !isDoc(v) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'properties' must be an object")
		}
		props := map[string]*jsonSchema{}
		var order []string
		for _, p := range elems(v.Value) {
			s, err := subSchema("properties", p.val, depth)
			if err != nil {
				return nil, err
			}
			props[p.key] = s
			order = append(order, p.key)
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			for _, k := range order {
				if pv, ok := lookup(x.Value, k); ok && !props[k].valid(pv) {
					return false
				}
			}
			return true
		}
		c.sub = func(x bson.RawValue) bson.A {
			out := bson.A{}
			for _, k := range order {
				if pv, ok := lookup(x.Value, k); ok && !props[k].valid(pv) {
					out = append(out, bson.D{{Key: "propertyName", Value: k}, {Key: "details", Value: props[k].failures(pv)}})
				}
			}
			return out
		}
	case "patternProperties":
		if !isDoc(v) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'patternProperties' must be an object")
		}
		type pp struct {
			re *regexp.Regexp
			s  *jsonSchema
		}
		var pps []pp
		for _, p := range elems(v.Value) {
			re, err := compileRegex(p.key, "")
			if err != nil {
				return nil, err
			}
			s, err := subSchema("patternProperties", p.val, depth)
			if err != nil {
				return nil, err
			}
			pps = append(pps, pp{re, s})
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			ok := true
			forEachElem(x.Value, func(k []byte, fv bson.RawValue) bool {
				for _, p := range pps {
					if p.re.Match(k) && !p.s.valid(fv) {
						ok = false
						return true
					}
				}
				return false
			})
			return ok
		}
	case "additionalProperties":
		var extra *jsonSchema
		allowed := true
		switch v.Type {
		case bson.TypeBoolean:
			allowed = v.Boolean()
		case bson.TypeEmbeddedDocument:
			s, err := compileJSONSchema(v.Value, depth+1)
			if err != nil {
				return nil, err
			}
			extra = s
		default:
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'additionalProperties' must be either an object or a boolean")
		}
		declared := map[string]bool{}
		if p, ok := has["properties"]; ok && isDoc(p) {
			for _, e := range elems(p.Value) {
				declared[e.key] = true
			}
		}
		var patterns []*regexp.Regexp
		if p, ok := has["patternProperties"]; ok && isDoc(p) {
			for _, e := range elems(p.Value) {
				re, err := compileRegex(e.key, "")
				if err != nil {
					return nil, err
				}
				patterns = append(patterns, re)
			}
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			ok := true
			forEachElem(x.Value, func(k []byte, fv bson.RawValue) bool {
				if declared[string(k)] {
					return false
				}
				for _, re := range patterns {
					if re.Match(k) {
						return false
					}
				}
				if !allowed || (extra != nil && !extra.valid(fv)) {
					ok = false
					return true
				}
				return false
			})
			return ok
		}
	case "dependencies":
		if !isDoc(v) {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'dependencies' must be an object")
		}
		type dep struct {
			name  string
			props []string
			s     *jsonSchema
		}
		var deps []dep
		for _, d := range elems(v.Value) {
			switch d.val.Type {
			case bson.TypeEmbeddedDocument:
				s, err := compileJSONSchema(d.val.Value, depth+1)
				if err != nil {
					return nil, err
				}
				deps = append(deps, dep{name: d.key, s: s})
			case bson.TypeArray:
				var names []string
				for _, n := range arrayValues(d.val.Value) {
					if n.Type != bson.TypeString {
						return nil, schemaErr(mongoerr.TypeMismatch, "property '%s' in $jsonSchema keyword 'dependencies' must be an array of strings", d.key)
					}
					names = append(names, stringish(n))
				}
				if len(names) == 0 {
					return nil, schemaErr(mongoerr.FailedToParse, "property '%s' in $jsonSchema keyword 'dependencies' cannot be an empty array", d.key)
				}
				deps = append(deps, dep{name: d.key, props: names})
			default:
				return nil, schemaErr(mongoerr.TypeMismatch, "property '%s' in $jsonSchema keyword 'dependencies' must be either an object or an array", d.key)
			}
		}
		c.ok = func(x bson.RawValue) bool {
			if !isDoc(x) {
				return true
			}
			for _, d := range deps {
				if _, ok := lookup(x.Value, d.name); !ok {
					continue
				}
				if d.s != nil && !d.s.valid(x) {
					return false
				}
				for _, p := range d.props {
					if _, ok := lookup(x.Value, p); !ok {
						return false
					}
				}
			}
			return true
		}
	case "items", "additionalItems":
		if kw == "additionalItems" {
			return compileAdditionalItems(c, v, has, depth)
		}
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			s, err := compileJSONSchema(v.Value, depth+1)
			if err != nil {
				return nil, err
			}
			c.ok = func(x bson.RawValue) bool {
				if !isArr(x) {
					return true
				}
				for _, it := range arrayValues(x.Value) {
					if !s.valid(it) {
						return false
					}
				}
				return true
			}
		case bson.TypeArray:
			list, err := schemaArrayAllowEmpty("items", v, depth)
			if err != nil {
				return nil, err
			}
			c.ok = func(x bson.RawValue) bool {
				if !isArr(x) {
					return true
				}
				for i, it := range arrayValues(x.Value) {
					if i < len(list) && !list[i].valid(it) {
						return false
					}
				}
				return true
			}
		default:
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'items' must be an array or an object, not %s", TypeName(v.Type))
		}
	case "minItems", "maxItems":
		n, err := schemaNonNegInt(kw, v)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool {
			if !isArr(x) {
				return true
			}
			l := int64(len(arrayValues(x.Value)))
			if kw == "minItems" {
				return l >= n
			}
			return l <= n
		}
	case "uniqueItems":
		if v.Type != bson.TypeBoolean {
			return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'uniqueItems' must be a boolean")
		}
		if !v.Boolean() {
			return nil, nil
		}
		c.ok = func(x bson.RawValue) bool {
			if !isArr(x) {
				return true
			}
			// Sorted, equal items are neighbours: O(n log n) even for the
			// largest array a document can hold.
			items := arrayValues(x.Value)
			sort.Slice(items, func(i, j int) bool { return Compare(items[i], items[j]) < 0 })
			for i := 1; i < len(items); i++ {
				if Compare(items[i-1], items[i]) == 0 {
					return false
				}
			}
			return true
		}
	case "allOf", "anyOf", "oneOf":
		list, err := schemaArray(kw, v, depth)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool {
			n := 0
			for _, s := range list {
				if s.valid(x) {
					n++
				}
			}
			switch kw {
			case "allOf":
				return n == len(list)
			case "anyOf":
				return n > 0
			}
			return n == 1
		}
	case "not":
		s, err := subSchema("not", v, depth)
		if err != nil {
			return nil, err
		}
		c.ok = func(x bson.RawValue) bool { return !s.valid(x) }
	case "encrypt", "encryptMetadata":
		return nil, schemaErr(mongoerr.NotImplemented, "$jsonSchema keyword '%s' needs client-side field level encryption, which cmkdb does not support", kw)
	default:
		return nil, schemaErr(mongoerr.FailedToParse, "Unknown $jsonSchema keyword: %s", kw)
	}
	return c, nil
}

func schemaArrayAllowEmpty(kw string, v bson.RawValue, depth int) ([]*jsonSchema, error) {
	if len(arrayValues(v.Value)) == 0 {
		return nil, nil
	}
	return schemaArray(kw, v, depth)
}

// compileAdditionalItems applies only when items is an array of schemas:
// elements past that list must satisfy it (or not exist, for false).
func compileAdditionalItems(c *schemaCheck, v bson.RawValue, has map[string]bson.RawValue, depth int) (*schemaCheck, error) {
	var extra *jsonSchema
	allowed := true
	switch v.Type {
	case bson.TypeBoolean:
		allowed = v.Boolean()
	case bson.TypeEmbeddedDocument:
		s, err := compileJSONSchema(v.Value, depth+1)
		if err != nil {
			return nil, err
		}
		extra = s
	default:
		return nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword 'additionalItems' must be either an object or a boolean, but got a %s", TypeName(v.Type))
	}
	items, ok := has["items"]
	if !ok || items.Type != bson.TypeArray {
		return nil, nil
	}
	n := len(arrayValues(items.Value))
	c.ok = func(x bson.RawValue) bool {
		if x.Type != bson.TypeArray {
			return true
		}
		for i, it := range arrayValues(x.Value) {
			if i < n {
				continue
			}
			if !allowed || (extra != nil && !extra.valid(it)) {
				return false
			}
		}
		return true
	}
	return c, nil
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
