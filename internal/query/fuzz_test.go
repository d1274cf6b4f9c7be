package query

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func fuzzSeedDocs(f *testing.F) []bson.Raw {
	var out []bson.Raw
	for _, js := range []string{
		`{"_id": 1, "a": 1, "b": [1, {"c": 2}], "d": {"e": "x"}}`,
		`{"a": [[1, 2], {"b": null}], "n": {"$numberDecimal": "1.5"}}`,
		`{}`,
	} {
		out = append(out, D(f, js))
	}
	return out
}

// FuzzCompileFilter: arbitrary bytes as a filter must either fail to
// compile with an error or match without panicking.
func FuzzCompileFilter(f *testing.F) {
	docs := fuzzSeedDocs(f)
	for _, js := range []string{
		`{"a": 1}`, `{"a": {"$gt": 1, "$lt": 5}}`, `{"$or": [{"a": 1}, {"b.c": {"$exists": true}}]}`,
		`{"b": {"$elemMatch": {"c": {"$gte": 2}}}}`, `{"a": {"$in": [1, "x", null]}}`, `{"d.e": {"$regex": "^x", "$options": "i"}}`,
		`{"a": {"$not": {"$type": "number"}}}`, `{"b": {"$all": [1]}, "b.1": {"$size": 2}}`, `{"$expr": {"$eq": ["$a", 1]}}`,
	} {
		f.Add([]byte(D(f, js)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Compile(data)
		if err != nil {
			return
		}
		for _, d := range docs {
			m.Match(d)
		}
		m.Match(data)
		// The planner and sort/projection parsers share the input shape.
		PlanIndex(data, bson.Raw(D(t, `{"a": 1, "b": -1}`)), false)
		if p, err := CompileProjection(data); err == nil {
			for _, d := range docs {
				p.Apply(d)
			}
		}
		if s, err := CompileSort(data); err == nil {
			for _, d := range docs {
				s.Key(d)
			}
		}
		EncodeValue(nil, rvDoc(data))
	})
}

// FuzzApplyUpdate: arbitrary update and target documents must never
// panic.
func FuzzApplyUpdate(f *testing.F) {
	docs := fuzzSeedDocs(f)
	for _, js := range []string{
		`{"$set": {"a.b.c": 1}}`, `{"$inc": {"a": 1}, "$unset": {"d": 1}}`, `{"$push": {"b": {"$each": [1, 2], "$sort": 1, "$slice": -2, "$position": 0}}}`,
		`{"$pull": {"b": {"c": 2}}}`, `{"$addToSet": {"b": {"$each": [1, 3]}}}`, `{"$rename": {"d.e": "z"}}`, `{"x": 1}`,
		`{"$set": {"b.$[].c": 1}}`, `{"$min": {"a": 0}, "$max": {"n": 3}, "$mul": {"q": 2}}`, `{"$pop": {"b": -1}, "$bit": {"a": {"xor": 3}}}`,
	} {
		for _, d := range docs {
			f.Add([]byte(D(f, js)), []byte(d))
		}
	}
	f.Fuzz(func(t *testing.T, update, doc []byte) {
		u, err := CompileUpdate(update)
		if err != nil {
			return
		}
		out, _, err := u.Apply(doc, ApplyOptions{})
		if err == nil {
			if _, err := decodeDoc(out); err != nil {
				t.Fatalf("Apply produced invalid BSON: %v", err)
			}
		}
		UpsertDocument(doc, u, ApplyOptions{})
	})
}

// FuzzArrayUpdate: positional and array-filter updates with an arbitrary
// update, array filter, query and document must never panic, and a
// successful update must produce valid BSON.
func FuzzArrayUpdate(f *testing.F) {
	docs := fuzzSeedDocs(f)
	for _, c := range []struct{ update, filter, query string }{
		{`{"$set": {"b.$[i].c": 1}}`, `{"i.c": 2}`, `{"b.c": 2}`},
		{`{"$inc": {"b.$": 1}}`, `{"i": 1}`, `{"b": 1}`},
		{`{"$set": {"a.$[].b.$[i]": 0, "b.$": 2}}`, `{"i": {"$gt": 0}}`, `{"b": {"$elemMatch": {"c": 2}}}`},
		{`{"$pull": {"b.$[i]": 1}, "$unset": {"a.$": 1}}`, `{"$or": [{"i": 1}, {"i.c": 2}]}`, `{"a": [1, 2]}`},
	} {
		for _, d := range docs {
			f.Add([]byte(D(f, c.update)), []byte(D(f, c.filter)), []byte(D(f, c.query)), []byte(d))
		}
	}
	f.Fuzz(func(t *testing.T, update, filter, query, doc []byte) {
		u, err := CompileUpdateWithFilters(update, []bson.Raw{filter})
		if err != nil {
			return
		}
		m, err := Compile(query)
		if err != nil {
			return
		}
		out, _, err := u.Apply(doc, ApplyOptions{Query: m})
		if err == nil {
			if _, err := decodeDoc(out); err != nil {
				t.Fatalf("Apply produced invalid BSON: %v", err)
			}
		}
		UpsertDocument(query, u, ApplyOptions{})
	})
}
