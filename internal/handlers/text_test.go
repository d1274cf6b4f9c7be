package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// articles is the MongoDB manual's $text example collection.
func articles() []any {
	return []any{
		bson.D{{Key: "_id", Value: 1}, {Key: "subject", Value: "coffee"}, {Key: "author", Value: "xyz"}, {Key: "views", Value: 50}},
		bson.D{{Key: "_id", Value: 2}, {Key: "subject", Value: "Coffee Shopping"}, {Key: "author", Value: "efg"}, {Key: "views", Value: 5}},
		bson.D{{Key: "_id", Value: 3}, {Key: "subject", Value: "Baking a cake"}, {Key: "author", Value: "abc"}, {Key: "views", Value: 90}},
		bson.D{{Key: "_id", Value: 4}, {Key: "subject", Value: "baking"}, {Key: "author", Value: "xyz"}, {Key: "views", Value: 100}},
		bson.D{{Key: "_id", Value: 5}, {Key: "subject", Value: "Café Con Leche"}, {Key: "author", Value: "abc"}, {Key: "views", Value: 200}},
		bson.D{{Key: "_id", Value: 6}, {Key: "subject", Value: "Сырники"}, {Key: "author", Value: "jkl"}, {Key: "views", Value: 80}},
		bson.D{{Key: "_id", Value: 7}, {Key: "subject", Value: "coffee and cream"}, {Key: "author", Value: "efg"}, {Key: "views", Value: 10}},
		bson.D{{Key: "_id", Value: 8}, {Key: "subject", Value: "Cafe con Leche"}, {Key: "author", Value: "xyz"}, {Key: "views", Value: 10}},
	}
}

func textIDs(t *testing.T, e *dataEnv, c *mongo.Collection, filter any, opts ...options.Lister[options.FindOptions]) string {
	t.Helper()
	cur, err := c.Find(e.ctx, filter, opts...)
	if err != nil {
		t.Fatalf("find %s: %v", js(t, filter), err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	ids := bson.A{}
	for _, d := range docs {
		ids = append(ids, d.Lookup("_id"))
	}
	return js(t, ids)
}

func text(search string, extra ...bson.E) bson.D {
	return bson.D{{Key: "$text", Value: append(bson.D{{Key: "$search", Value: search}}, extra...)}}
}

func TestTextSearchMatching(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, articles()...)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "subject", Value: "text"}}}); err != nil {
		t.Fatal(err)
	}
	byID := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	for _, tc := range []struct {
		name   string
		filter bson.D
		want   string
	}{
		{"one term", text("coffee"), "[1,2,7]"},
		{"terms are OR'd, stemmed", text("bake coffee cake"), "[1,2,3,4,7]"},
		{"stemming: shopping", text("shop"), "[2]"},
		{"phrase", text(`"coffee shop"`), "[2]"},
		{"phrase and term", text(`"coffee shop" cake`), "[2]"},
		{"negation", text("coffee -shop"), "[1,7]"},
		{"negated phrase", text(`coffee -"coffee shop"`), "[1,7]"},
		{"only negation", text("-coffee"), "[]"},
		{"stop word only", text("and a the"), "[]"},
		{"case insensitive", text("COFFEE"), "[1,2,7]"},
		{"case sensitive", text("Coffee", bson.E{Key: "$caseSensitive", Value: true}), "[2]"},
		{"diacritic insensitive", text("CAFÉ"), "[5,8]"},
		{"diacritic sensitive", text("CAFÉ", bson.E{Key: "$diacriticSensitive", Value: true}), "[5]"},
		{"cyrillic", text("сырники"), "[6]"},
		{"with other conditions", append(text("coffee"), bson.E{Key: "views", Value: bson.D{{Key: "$gt", Value: 9}}}), "[1,7]"},
		{"english stems the query", text("shopping"), "[2]"},
		{"language none: query not stemmed", text("shopping", bson.E{Key: "$language", Value: "none"}), "[]"},
		{"language none: a term the index holds", text("shop", bson.E{Key: "$language", Value: "none"}), "[2]"},
		{"language none: stop words kept", text("and", bson.E{Key: "$language", Value: "none"}), "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := textIDs(t, e, c, tc.filter, byID); got != tc.want {
				t.Errorf("%s: got %s, want %s", js(t, tc.filter), got, tc.want)
			}
		})
	}
}

func TestTextScore(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, articles()...)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "subject", Value: "text"}}}); err != nil {
		t.Fatal(err)
	}
	// The manual's example: "cake" scores 0.75 in "Baking a cake".
	proj := bson.D{{Key: "subject", Value: 1}, {Key: "score", Value: bson.D{{Key: "$meta", Value: "textScore"}}}}
	got := query2(t, e, c, text("cake"), options.Find().SetProjection(proj))
	if want := `[{"_id":3,"subject":"Baking a cake","score":0.75}]`; got != want {
		t.Errorf("score: got %s, want %s", got, want)
	}
	// Sorted by score: the single-word subject first; ties keep _id order.
	sortScore := bson.D{{Key: "score", Value: bson.D{{Key: "$meta", Value: "textScore"}}}}
	got = textIDs(t, e, c, text("coffee"), options.Find().SetSort(append(sortScore, bson.E{Key: "_id", Value: -1})))
	if want := "[1,7,2]"; got != want {
		t.Errorf("sort by score: got %s, want %s", got, want)
	}
	got = query2(t, e, c, text("coffee"), options.Find().SetSort(sortScore).SetProjection(bson.D{{Key: "s", Value: bson.D{{Key: "$meta", Value: "textScore"}}}, {Key: "_id", Value: 0}, {Key: "author", Value: 0}, {Key: "views", Value: 0}}).SetLimit(1))
	if want := `[{"subject":"coffee","s":1.0}]`; got != want {
		t.Errorf("projection: got %s, want %s", got, want)
	}
	// Weights: a title match outweighs a body match tenfold.
	w := e.db.Collection(c.Name() + "_w")
	if _, err := w.InsertMany(e.ctx, []any{
		bson.D{{Key: "_id", Value: "body"}, {Key: "title", Value: "banana"}, {Key: "body", Value: "apple"}},
		bson.D{{Key: "_id", Value: "title"}, {Key: "title", Value: "apple"}, {Key: "body", Value: "banana"}},
		bson.D{{Key: "_id", Value: "both"}, {Key: "title", Value: "apple pie"}, {Key: "body", Value: "apple apple tree"}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "title", Value: "text"}, {Key: "body", Value: "text"}},
		Options: options.Index().SetWeights(bson.D{{Key: "title", Value: 10}})}); err != nil {
		t.Fatal(err)
	}
	// both: title 10×1×0.75, body 1×1.5×(0.5×2/3+0.5).
	got = query2(t, e, w, text("apple"), options.Find().SetSort(sortScore).SetProjection(bson.D{{Key: "_id", Value: 1}, {Key: "score", Value: bson.D{{Key: "$meta", Value: "textScore"}}}}))
	if want := `[{"_id":"title","score":10.0},{"_id":"both","score":8.75},{"_id":"body","score":1.0}]`; got != want {
		t.Errorf("weights: got %s, want %s", got, want)
	}
}

func query2(t *testing.T, e *dataEnv, c *mongo.Collection, filter any, opts ...options.Lister[options.FindOptions]) string {
	t.Helper()
	cur, err := c.Find(e.ctx, filter, opts...)
	if err != nil {
		t.Fatalf("find %s: %v", js(t, filter), err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil {
		t.Fatal(err)
	}
	return jsDocs(t, docs)
}

func TestTextIndexes(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, articles()...)
	ci := func(key bson.D, opts ...bson.E) bson.D {
		spec := append(bson.D{{Key: "key", Value: key}}, opts...)
		return bson.D{{Key: "createIndexes", Value: c.Name()}, {Key: "indexes", Value: bson.A{spec}}}
	}
	textKey := bson.D{{Key: "subject", Value: "text"}}
	// No text index yet.
	wantCode(t, c.FindOne(e.ctx, text("coffee")).Err(), 27)
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code int
	}{
		{"unknown default_language", ci(textKey, bson.E{Key: "default_language", Value: "klingon"}), 67},
		{"default_language not a string", ci(textKey, bson.E{Key: "default_language", Value: 1}), 67},
		{"language mongod has, cmkdb lacks", ci(textKey, bson.E{Key: "default_language", Value: "french"}), 238},
		{"weights not an object", ci(textKey, bson.E{Key: "weights", Value: "abc"}), 67},
		{"weight not a number", ci(textKey, bson.E{Key: "weights", Value: bson.D{{Key: "a", Value: "x"}}}), 67},
		{"weight too high", ci(textKey, bson.E{Key: "weights", Value: bson.D{{Key: "a", Value: 100000}}}), 67},
		{"bad language_override", ci(textKey, bson.E{Key: "language_override", Value: "$x"}), 67},
		{"textIndexVersion", ci(textKey, bson.E{Key: "textIndexVersion", Value: 4}), 67},
		{"language_override not a string", ci(textKey, bson.E{Key: "language_override", Value: 1}), 67},
		{"reserved field", ci(bson.D{{Key: "_fts", Value: 1}, {Key: "subject", Value: "text"}}), 67},
		{"non-text key not 1 or -1", ci(bson.D{{Key: "subject", Value: "text"}, {Key: "b", Value: 2}}), 67},
		{"fixed key without weights", ci(bson.D{{Key: "_fts", Value: "text"}, {Key: "_ftsx", Value: 1}}), 67},
		{"compound text", ci(bson.D{{Key: "a", Value: 1}, {Key: "subject", Value: "text"}}), 238},
		{"text fields not adjacent", ci(bson.D{{Key: "a", Value: "text"}, {Key: "b", Value: 1}, {Key: "c", Value: "text"}}), 67},
		{"weights without text", ci(bson.D{{Key: "a", Value: 1}}, bson.E{Key: "weights", Value: bson.D{{Key: "a", Value: 2}}}), 238},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, e.db.RunCommand(e.ctx, tc.cmd).Err(), tc.code)
		})
	}
	if err := e.db.RunCommand(e.ctx, ci(textKey, bson.E{Key: "name", Value: "subject_text"}, bson.E{Key: "weights", Value: bson.D{{Key: "subject", Value: 5}}}, bson.E{Key: "textIndexVersion", Value: 3})).Err(); err != nil {
		t.Fatal(err)
	}
	got := listIndexes(t, e, c)
	want := `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"_fts":"text","_ftsx":1},"name":"subject_text","weights":{"subject":5},"default_language":"english","language_override":"language","textIndexVersion":3}]`
	if got != want {
		t.Errorf("listIndexes:\n got %s\nwant %s", got, want)
	}
	// Again, the same: nothing to do. Another text index: refused.
	if err := e.db.RunCommand(e.ctx, ci(textKey, bson.E{Key: "name", Value: "subject_text"}, bson.E{Key: "weights", Value: bson.D{{Key: "subject", Value: 5}}})).Err(); err != nil {
		t.Errorf("same text index again: %v", err)
	}
	wantCode(t, e.db.RunCommand(e.ctx, ci(bson.D{{Key: "author", Value: "text"}})).Err(), 85)
	wantCode(t, e.db.RunCommand(e.ctx, ci(textKey, bson.E{Key: "name", Value: "subject_text"})).Err(), 85)
	// textScore without $text.
	meta := bson.D{{Key: "score", Value: bson.D{{Key: "$meta", Value: "textScore"}}}}
	wantCode(t, c.FindOne(e.ctx, bson.D{}, options.FindOne().SetProjection(meta)).Err(), 40218)
	wantCode(t, c.FindOne(e.ctx, bson.D{}, options.FindOne().SetSort(meta)).Err(), 40218)
	// $text argument errors.
	wantCode(t, c.FindOne(e.ctx, bson.D{{Key: "$text", Value: bson.D{}}}).Err(), 4)
	wantCode(t, c.FindOne(e.ctx, bson.D{{Key: "$text", Value: "x"}}).Err(), 2)
	wantCode(t, c.FindOne(e.ctx, bson.D{{Key: "$text", Value: bson.D{{Key: "$search", Value: 1}}}}).Err(), 14)
	wantCode(t, c.FindOne(e.ctx, text("x", bson.E{Key: "$caseSensitive", Value: 1})).Err(), 14)
	wantCode(t, c.FindOne(e.ctx, text("x", bson.E{Key: "$other", Value: 1})).Err(), 2)
	wantCode(t, c.FindOne(e.ctx, text("x", bson.E{Key: "$language", Value: "klingon"})).Err(), 2)
	wantCode(t, c.FindOne(e.ctx, text("x", bson.E{Key: "$language", Value: "french"})).Err(), 238)

	// Writes keep the index current; language_override picks a document's language.
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 9}, {Key: "subject", Value: "running shoes"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InsertOne(e.ctx, bson.D{{Key: "_id", Value: 10}, {Key: "subject", Value: "running late"}, {Key: "language", Value: "none"}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, insertErr(e, c, bson.D{{Key: "_id", Value: 11}, {Key: "subject", Value: "x"}, {Key: "language", Value: "klingon"}}), 17262)
	wantCode(t, insertErr(e, c, bson.D{{Key: "_id", Value: 11}, {Key: "subject", Value: "x"}, {Key: "language", Value: 3}}), 17261)
	byID := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if got := textIDs(t, e, c, text("run"), byID); got != "[9]" {
		t.Errorf("run: got %s, want [9]", got)
	}
	if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 9}}, bson.D{{Key: "$set", Value: bson.D{{Key: "subject", Value: "walking"}}}}); err != nil {
		t.Fatal(err)
	}
	if got := textIDs(t, e, c, text("run"), byID); got != "[]" {
		t.Errorf("run after update: got %s, want []", got)
	}
	if _, err := c.DeleteOne(e.ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if got := textIDs(t, e, c, text("coffee"), byID); got != "[2,7]" {
		t.Errorf("coffee after delete: got %s, want [2,7]", got)
	}
	// Dropped: $text needs the index again; recreated from listIndexes'
	// form (as mongorestore does) it works.
	if err := c.Indexes().DropOne(e.ctx, "subject_text"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.FindOne(e.ctx, text("coffee")).Err(), 27)
	fixed := ci(bson.D{{Key: "_fts", Value: "text"}, {Key: "_ftsx", Value: 1}}, bson.E{Key: "name", Value: "t"},
		bson.E{Key: "weights", Value: bson.D{{Key: "subject", Value: 1}}}, bson.E{Key: "default_language", Value: "none"})
	if err := e.db.RunCommand(e.ctx, fixed).Err(); err != nil {
		t.Fatal(err)
	}
	if got := textIDs(t, e, c, text("shopping"), byID); got != "[2]" {
		t.Errorf("language none index: got %s, want [2]", got)
	}
	if got := textIDs(t, e, c, text("shop"), byID); got != "[]" {
		t.Errorf("language none index, stem: got %s, want []", got)
	}
}

func insertErr(e *dataEnv, c *mongo.Collection, doc bson.D) error {
	_, err := c.InsertOne(e.ctx, doc)
	return err
}

func TestTextWildcard(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t,
		bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: "red apples"}, {Key: "n", Value: bson.D{{Key: "b", Value: bson.A{"green pears", 3}}}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "c", Value: "pear tree"}},
		bson.D{{Key: "_id", Value: 3}, {Key: "d", Value: 5}},
	)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "$**", Value: "text"}}}); err != nil {
		t.Fatal(err)
	}
	byID := options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})
	if got := textIDs(t, e, c, text("pear"), byID); got != "[1,2]" {
		t.Errorf("wildcard: got %s, want [1,2]", got)
	}
	if got := listIndexes(t, e, c); got != `[{"v":2,"key":{"_id":1},"name":"_id_"},{"v":2,"key":{"_fts":"text","_ftsx":1},"name":"$**_text","weights":{"$**":1},"default_language":"english","language_override":"language","textIndexVersion":3}]` {
		t.Errorf("listIndexes: %s", got)
	}
	res, err := e.db.RunCommand(e.ctx, bson.D{{Key: "validate", Value: c.Name()}, {Key: "full", Value: true}}).Raw()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := res.Lookup("valid").BooleanOK(); !ok || !v {
		t.Errorf("validate: %s", res)
	}
}

func TestTextAggregate(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, articles()...)
	if _, err := c.Indexes().CreateOne(e.ctx, mongo.IndexModel{Keys: bson.D{{Key: "subject", Value: "text"}}}); err != nil {
		t.Fatal(err)
	}
	meta := bson.D{{Key: "$meta", Value: "textScore"}}
	agg := func(pipeline bson.A) (string, error) {
		cur, err := c.Aggregate(e.ctx, pipeline)
		if err != nil {
			return "", err
		}
		var docs []bson.Raw
		if err := cur.All(e.ctx, &docs); err != nil {
			return "", err
		}
		return jsDocs(t, docs), nil
	}
	for _, tc := range []struct {
		name     string
		pipeline bson.A
		want     string
	}{
		{"project score, sort by it", bson.A{
			bson.D{{Key: "$match", Value: text("coffee cake")}},
			bson.D{{Key: "$sort", Value: bson.D{{Key: "score", Value: meta}, {Key: "_id", Value: 1}}}},
			bson.D{{Key: "$project", Value: bson.D{{Key: "_id", Value: 1}, {Key: "score", Value: meta}}}},
		}, `[{"_id":1,"score":1.0},{"_id":2,"score":0.75},{"_id":3,"score":0.75},{"_id":7,"score":0.75}]`},
		{"addFields after a projection, filter on score", bson.A{
			bson.D{{Key: "$match", Value: append(text("coffee"), bson.E{Key: "views", Value: bson.D{{Key: "$lt", Value: 60}}})}},
			bson.D{{Key: "$project", Value: bson.D{{Key: "subject", Value: 1}}}},
			bson.D{{Key: "$addFields", Value: bson.D{{Key: "s", Value: meta}}}},
			bson.D{{Key: "$match", Value: bson.D{{Key: "s", Value: bson.D{{Key: "$gte", Value: 0.8}}}}}},
		}, `[{"_id":1,"subject":"coffee","s":1.0}]`},
		{"group by score", bson.A{
			bson.D{{Key: "$match", Value: text("coffee")}},
			bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "total", Value: bson.D{{Key: "$sum", Value: meta}}}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		}, `[{"_id":null,"total":2.5,"n":3}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := agg(tc.pipeline)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
		})
	}
	_, err := agg(bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$match", Value: text("coffee")}}})
	wantCode(t, err, 17313)
	_, err = agg(bson.A{bson.D{{Key: "$addFields", Value: bson.D{{Key: "s", Value: meta}}}}})
	wantCode(t, err, 40218)
	n, err := c.CountDocuments(e.ctx, text("coffee -shop"))
	if err != nil || n != 2 {
		t.Errorf("countDocuments: %d, %v", n, err)
	}
	var res bson.Raw
	if res, err = e.db.RunCommand(e.ctx, bson.D{{Key: "count", Value: c.Name()}, {Key: "query", Value: text("coffee")}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if got := res.Lookup("n").AsInt64(); got != 3 {
		t.Errorf("count: %d, want 3", got)
	}
	// Where cmkdb does not search text: refused, never ignored.
	wantCode(t, c.FindOne(e.ctx, bson.D{{Key: "$or", Value: bson.A{text("coffee"), bson.D{{Key: "views", Value: 1}}}}}).Err(), 238)
	_, err = c.UpdateMany(e.ctx, text("coffee"), bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	wantCode(t, err, 238)
	// delete: the text search picks the documents.
	dr, err := c.DeleteMany(e.ctx, text("coffee -shop"))
	if err != nil || dr.DeletedCount != 2 {
		t.Errorf("deleteMany: %+v %v", dr, err)
	}
	if got := textIDs(t, e, c, text("coffee"), options.Find().SetSort(bson.D{{Key: "_id", Value: 1}})); got != "[2]" {
		t.Errorf("after deleteMany: %s", got)
	}
	_, err = e.db.Collection("nothere").DeleteOne(e.ctx, text("coffee"))
	wantCode(t, err, 27)
	// Batches: a text search result is paged like any cursor.
	cur, err := c.Find(e.ctx, text("coffee cake bake"), options.Find().SetBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.Raw
	if err := cur.All(e.ctx, &docs); err != nil || len(docs) != 3 { // 2, 3, 4 are left
		t.Errorf("batched: %d docs, %v", len(docs), err)
	}
}
