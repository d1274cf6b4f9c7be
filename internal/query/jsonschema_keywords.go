package query

import (
	"math"
	"regexp"
	"sort"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// The $jsonSchema keywords, each compiled to one check.

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
		allowed, extra, err := schemaOrBool("additionalProperties", v, depth)
		if err != nil {
			return nil, err
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
	allowed, extra, err := schemaOrBool("additionalItems", v, depth)
	if err != nil {
		return nil, err
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

// schemaOrBool reads a keyword that takes either a boolean (are further
// properties or items allowed at all) or a schema they must satisfy.
func schemaOrBool(kw string, v bson.RawValue, depth int) (allowed bool, extra *jsonSchema, err error) {
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean(), nil, nil
	case bson.TypeEmbeddedDocument:
		extra, err = compileJSONSchema(v.Value, depth+1)
		return true, extra, err
	default:
		return false, nil, schemaErr(mongoerr.TypeMismatch, "$jsonSchema keyword '%s' must be either an object or a boolean, but got a %s", kw, TypeName(v.Type))
	}
}
