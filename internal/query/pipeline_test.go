package query

import (
	"context"
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

type mapSource map[string][]bson.Raw

func (m mapSource) Scan(_ context.Context, coll string) (Iterator, error) {
	return NewSliceIterator(m[coll]), nil
}

func runPipeline(t *testing.T, stages []string, docs []string, src CollectionSource) ([]bson.Raw, error) {
	t.Helper()
	var raws []bson.Raw
	for _, s := range stages {
		raws = append(raws, D(t, s))
	}
	p, err := CompilePipeline(raws, src)
	if err != nil {
		return nil, err
	}
	var in []bson.Raw
	for _, d := range docs {
		in = append(in, D(t, d))
	}
	it, err := p.Run(context.Background(), NewSliceIterator(in))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	return drain(context.Background(), it)
}

func TestPipeline(t *testing.T) {
	docs := []string{
		`{"_id": 1, "item": "a", "qty": 2, "price": 10, "tags": ["x", "y"]}`,
		`{"_id": 2, "item": "b", "qty": 1, "price": 20, "tags": []}`,
		`{"_id": 3, "item": "a", "qty": 5, "price": 10.5}`,
		`{"_id": 4, "item": "c", "qty": 3, "price": 1, "tags": "z"}`,
	}
	src := mapSource{"inv": {
		D(t, `{"_id": 10, "sku": "a", "n": 100}`),
		D(t, `{"_id": 11, "sku": ["b", "c"], "n": 5}`),
		D(t, `{"_id": 12, "n": 0}`),
	}}
	tests := []struct {
		name   string
		stages []string
		want   []string
	}{
		{"match+project", []string{`{"$match": {"item": "a"}}`, `{"$project": {"_id": 0, "item": 1, "total": {"$multiply": ["$qty", "$price"]}}}`},
			[]string{`{"item": "a", "total": 20}`, `{"item": "a", "total": 52.5}`}},
		{"sort skip limit", []string{`{"$sort": {"qty": -1}}`, `{"$skip": 1}`, `{"$limit": 2}`, `{"$project": {"qty": 1}}`},
			[]string{`{"_id": 4, "qty": 3}`, `{"_id": 1, "qty": 2}`}},
		{"group", []string{`{"$group": {"_id": "$item", "n": {"$sum": 1}, "q": {"$sum": "$qty"}, "avg": {"$avg": "$price"}, "mx": {"$max": "$qty"}, "mn": {"$min": "$qty"}, "f": {"$first": "$_id"}, "l": {"$last": "$_id"}, "ids": {"$push": "$_id"}, "set": {"$addToSet": "$price"}}}`, `{"$sort": {"_id": 1}}`},
			[]string{
				`{"_id": "a", "n": 2, "q": 7, "avg": 10.25, "mx": 5, "mn": 2, "f": 1, "l": 3, "ids": [1, 3], "set": [10, 10.5]}`,
				`{"_id": "b", "n": 1, "q": 1, "avg": 20.0, "mx": 1, "mn": 1, "f": 2, "l": 2, "ids": [2], "set": [20]}`,
				`{"_id": "c", "n": 1, "q": 3, "avg": 1.0, "mx": 3, "mn": 3, "f": 4, "l": 4, "ids": [4], "set": [1]}`,
			}},
		{"group null id", []string{`{"$group": {"_id": null, "total": {"$sum": "$qty"}}}`}, []string{`{"_id": null, "total": 11}`}},
		{"group compound id", []string{`{"$match": {"_id": {"$lte": 2}}}`, `{"$group": {"_id": {"i": "$item", "p": "$price"}, "c": {"$count": {}}}}`},
			[]string{`{"_id": {"i": "a", "p": 10}, "c": 1}`, `{"_id": {"i": "b", "p": 20}, "c": 1}`}},
		{"count", []string{`{"$match": {"qty": {"$gt": 1}}}`, `{"$count": "n"}`}, []string{`{"n": 3}`}},
		{"count empty", []string{`{"$match": {"qty": 99}}`, `{"$count": "n"}`}, nil},
		{"unwind string", []string{`{"$unwind": "$tags"}`, `{"$project": {"tags": 1}}`},
			[]string{`{"_id": 1, "tags": "x"}`, `{"_id": 1, "tags": "y"}`, `{"_id": 4, "tags": "z"}`}},
		{"unwind preserve index", []string{`{"$unwind": {"path": "$tags", "includeArrayIndex": "i", "preserveNullAndEmptyArrays": true}}`, `{"$project": {"tags": 1, "i": 1}}`},
			[]string{`{"_id": 1, "tags": "x", "i": {"$numberLong": "0"}}`, `{"_id": 1, "tags": "y", "i": {"$numberLong": "1"}}`, `{"_id": 2, "i": null}`, `{"_id": 3, "i": null}`, `{"_id": 4, "tags": "z", "i": null}`}},
		{"addFields set unset", []string{`{"$addFields": {"t": {"$add": ["$qty", 1]}, "m.n": "$item"}}`, `{"$set": {"u": {"$concat": ["$item", "-", {"$toUpper": "$item"}]}}}`, `{"$unset": ["tags", "price", "qty"]}`, `{"$limit": 1}`},
			[]string{`{"_id": 1, "item": "a", "t": 3, "m": {"n": "a"}, "u": "a-A"}`}},
		{"lookup", []string{`{"$lookup": {"from": "inv", "localField": "item", "foreignField": "sku", "as": "inv"}}`, `{"$project": {"n": "$inv.n"}}`},
			[]string{`{"_id": 1, "n": [100]}`, `{"_id": 2, "n": [5]}`, `{"_id": 3, "n": [100]}`, `{"_id": 4, "n": [5]}`}},
		{"lookup missing local matches missing foreign", []string{`{"$limit": 1}`, `{"$project": {"z": 1}}`, `{"$lookup": {"from": "inv", "localField": "nope", "foreignField": "sku", "as": "r"}}`, `{"$project": {"r._id": 1}}`},
			[]string{`{"_id": 1, "r": [{"_id": 12}]}`}},
		{"expressions", []string{`{"$limit": 1}`, `{"$project": {"_id": 0,
			"sub": {"$subtract": ["$price", "$qty"]}, "div": {"$divide": ["$price", 4]}, "mod": {"$mod": ["$price", 3]},
			"cmp": {"$cmp": ["$qty", 3]}, "gte": {"$gte": ["$qty", 2]}, "and": {"$and": [true, "$qty"]}, "or": {"$or": [false, 0]}, "not": {"$not": ["$nope"]},
			"cond": {"$cond": {"if": {"$gt": ["$qty", 1]}, "then": "big", "else": "small"}}, "cond2": {"$cond": [false, 1, 2]},
			"ifn": {"$ifNull": ["$nope", "dflt"]}, "size": {"$size": "$tags"}, "at": {"$arrayElemAt": ["$tags", -1]}, "lower": {"$toLower": "AbC"},
			"lit": {"$literal": "$qty"}, "arr": ["$qty", "$nope"], "obj": {"q": "$qty"}, "root": "$$ROOT.item"}}`},
			[]string{`{"sub": 8, "div": 2.5, "mod": 1, "cmp": -1, "gte": true, "and": true, "or": false, "not": true, "cond": "big", "cond2": 2, "ifn": "dflt", "size": 2, "at": "y", "lower": "abc", "lit": "$qty", "arr": [2, null], "obj": {"q": 2}, "root": "a"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := runPipeline(t, tt.stages, docs, src)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d docs %v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				assertDocEqual(t, got[i], D(t, tt.want[i]))
			}
		})
	}
}

func TestPipelineErrors(t *testing.T) {
	tests := []struct {
		stage string
		code  mongoerr.Code
	}{
		{`{"$foo": {}}`, 40324},
		{`{"$project": {"a": {"$foo": 1}}}`, mongoerr.InvalidPipelineOperator},
		{`{"$addFields": {"a": {"$bogus": []}}}`, mongoerr.InvalidPipelineOperator},
		{`{"$group": {"n": {"$sum": 1}}}`, mongoerr.Location15955},
		{`{"$group": {"_id": null, "n": {"$median": 1}}}`, 15952},
		{`{"$limit": 0}`, 15958},
		{`{"$skip": -1}`, 15956},
		{`{"$unwind": "tags"}`, 28818},
		{`{"$project": {}}`, 51272},
		{`{"$project": {"a": {"$add": [1, 2], "$sub": 1}}}`, 15983},
		{`{"$project": {"a": {"$subtract": [1]}}}`, 16020},
	}
	for _, tt := range tests {
		_, err := runPipeline(t, []string{tt.stage}, nil, nil)
		if err == nil {
			t.Errorf("%s: expected error", tt.stage)
			continue
		}
		if c := mongoerr.CodeOf(err); c != tt.code {
			t.Errorf("%s: code %d want %d (%v)", tt.stage, c, tt.code, err)
		}
	}
	// Runtime expression errors.
	for _, tc := range []struct {
		expr string
		code mongoerr.Code
	}{
		{`{"$divide": [1, 0]}`, mongoerr.BadValue},
		{`{"$mod": [1, 0]}`, 16610},
		{`{"$add": ["x", 1]}`, 16554},
		{`{"$concat": ["x", 1]}`, 16702},
		{`{"$size": "$nope"}`, 17124},
		{`{"$arrayElemAt": [1, 0]}`, 28689},
		{`"$$nope"`, 17276},
	} {
		_, err := runPipeline(t, []string{`{"$project": {"x": ` + tc.expr + `}}`}, []string{`{"_id": 1}`}, nil)
		if c := mongoerr.CodeOf(err); err == nil || c != tc.code {
			t.Errorf("%s: got %v want code %d", tc.expr, err, tc.code)
		}
	}
}

// TestSample checks $sample returns size distinct input documents (all of
// them when there are fewer) and that its choice is random.
func TestSample(t *testing.T) {
	var docs []string
	for i := 0; i < 100; i++ {
		docs = append(docs, `{"_id": `+strconv.Itoa(i)+`}`)
	}
	seen := map[string]bool{}
	for run := 0; run < 20; run++ {
		out, err := runPipeline(t, []string{`{"$sample": {"size": 10}}`}, docs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 10 {
			t.Fatalf("got %d documents, want 10", len(out))
		}
		ids := map[string]bool{}
		key := ""
		for _, d := range out {
			id := d.Lookup("_id").String()
			if ids[id] {
				t.Fatalf("document %s sampled twice", id)
			}
			ids[id] = true
			key += id + ","
		}
		seen[key] = true
	}
	if len(seen) < 2 {
		t.Error("20 samples of 10 out of 100 were all the same")
	}
	out, err := runPipeline(t, []string{`{"$sample": {"size": 1000}}`}, docs[:5], nil)
	if err != nil || len(out) != 5 {
		t.Errorf("size above the input: %d documents, %v", len(out), err)
	}
}
