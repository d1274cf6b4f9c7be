package handlers_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	cmkquery "github.com/cmkdb/cmkdb/internal/query"
)

// dataEnv is one node with a "test" database, shared by a test's cases.
type dataEnv struct {
	ctx    context.Context
	client *mongo.Client
	db     *mongo.Database
}

func newDataEnv(t *testing.T) *dataEnv {
	t.Helper()
	client, _ := handlerstest.Start(t)
	return &dataEnv{ctx: handlerstest.Context(t), client: client, db: client.Database("test")}
}

// fresh returns an empty collection seeded with docs (a new name per call,
// so table cases do not see each other).
func (e *dataEnv) fresh(t *testing.T, docs ...any) *mongo.Collection {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_", "#", "_", "$", "_").Replace(t.Name())
	coll := e.db.Collection(name)
	if err := coll.Drop(e.ctx); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if len(docs) > 0 {
		if _, err := coll.InsertMany(e.ctx, docs); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	return coll
}

// js renders v as relaxed extended JSON (int32 and int64 print alike).
func js(t testing.TB, v any) string {
	t.Helper()
	if v == nil {
		return "null"
	}
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		// Arrays and scalars: wrap them.
		b, err = bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
		if err != nil {
			t.Fatalf("MarshalExtJSON(%v): %v", v, err)
		}
		s := string(b)
		return strings.TrimSuffix(strings.TrimPrefix(s, `{"v":`), "}")
	}
	return string(b)
}

// jsDocs renders documents, one per element, as a JSON array.
func jsDocs(t testing.TB, docs []bson.Raw) string {
	t.Helper()
	parts := make([]string, len(docs))
	for i, d := range docs {
		parts[i] = js(t, d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// all returns the collection's documents sorted by _id, as JSON.
func all(t testing.TB, ctx context.Context, coll *mongo.Collection) string {
	t.Helper()
	return query(t, ctx, coll, bson.D{}, true)
}

// query runs a find and renders the results; with sorted they are
// ordered by _id (in Go, so the server's sort is not what is tested).
func query(t testing.TB, ctx context.Context, coll *mongo.Collection, filter any, sorted bool) string {
	t.Helper()
	cur, err := coll.Find(ctx, filter)
	if err != nil {
		t.Fatalf("find %s: %v", js(t, filter), err)
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		t.Fatalf("find %s: %v", js(t, filter), err)
	}
	if sorted {
		sort.SliceStable(docs, func(i, j int) bool {
			return cmkquery.Compare(docs[i].Lookup("_id"), docs[j].Lookup("_id")) < 0
		})
	}
	return jsDocs(t, docs)
}

// codeOf returns the server error code carried by err (write exceptions
// included), or 0.
func codeOf(err error) int {
	var we mongo.WriteException
	if errors.As(err, &we) {
		if len(we.WriteErrors) > 0 {
			return we.WriteErrors[0].Code
		}
		if we.WriteConcernError != nil {
			return we.WriteConcernError.Code
		}
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		return bwe.WriteErrors[0].Code
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	return 0
}

func wantCode(t testing.TB, err error, code int) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %d", code)
	}
	if got := codeOf(err); got != code {
		t.Fatalf("got error %v (code %d), want code %d", err, got, code)
	}
}

func collNames(t testing.TB, ctx context.Context, db *mongo.Database) []string {
	t.Helper()
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}

func uniqueOpt() *options.IndexOptionsBuilder { return options.Index().SetUnique(true) }
