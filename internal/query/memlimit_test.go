package query

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// repeatIter yields the same document n times (no memory per document).
type repeatIter struct {
	doc bson.Raw
	n   int
}

func (r *repeatIter) Next(context.Context) (bson.Raw, error) {
	if r.n == 0 {
		return nil, io.EOF
	}
	r.n--
	return r.doc, nil
}

func (r *repeatIter) Close() error { return nil }

// bigDoc is a document of about 1 MB.
func bigDoc() bson.Raw {
	return bson.Raw(bsoncore.NewDocumentBuilder().AppendString("pad", strings.Repeat("x", 1<<20)).Build())
}

// The blocking stages fail with 292 once they hold more than 100 MB.
func TestBlockingStageMemoryLimit(t *testing.T) {
	for _, stage := range []string{
		`{"$setWindowFields": {"output": {"n": {"$count": {}}}}}`,
	} {
		p, err := CompilePipeline([]bson.Raw{D(t, stage)}, mapSource{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Run(context.Background(), &repeatIter{doc: bigDoc(), n: 101})
		if mongoerr.CodeOf(err) != codeMemoryLimit {
			t.Errorf("%s over 100 MB: got %v, want code 292", stage, err)
		}
		// Under the limit it runs.
		it, err := p.Run(context.Background(), &repeatIter{doc: bigDoc(), n: 3})
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		out, err := drain(context.Background(), it)
		if err != nil || len(out) != 3 {
			t.Errorf("%s under the limit: %d docs, %v", stage, len(out), err)
		}
	}
}

// $graphLookup bounds what one search holds (visited documents and the
// frontier) with mongod's 40099.
func TestGraphLookupMemoryLimit(t *testing.T) {
	pad := strings.Repeat("x", 1<<20)
	var coll []bson.Raw
	for i := 0; i < 60; i++ {
		coll = append(coll, bson.Raw(bsoncore.NewDocumentBuilder().AppendInt32("_id", int32(i)).AppendInt32("k", 1).
			AppendString("next", strconv.Itoa(i)+pad).Build()))
	}
	stage := D(t, `{"$graphLookup": {"from": "c", "startWith": 1, "connectFromField": "next", "connectToField": "k", "as": "r"}}`)
	p, err := CompilePipeline([]bson.Raw{stage}, mapSource{"c": coll})
	if err != nil {
		t.Fatal(err)
	}
	it, err := p.Run(context.Background(), NewSliceIterator([]bson.Raw{D(t, `{"_id": 0}`)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = drain(context.Background(), it); mongoerr.CodeOf(err) != codeGraphLookupMemory {
		t.Fatalf("got %v, want 40099", err)
	}
	// A smaller collection fits.
	p, _ = CompilePipeline([]bson.Raw{stage}, mapSource{"c": coll[:10]})
	it, _ = p.Run(context.Background(), NewSliceIterator([]bson.Raw{D(t, `{"_id": 0}`)}))
	out, err := drain(context.Background(), it)
	if err != nil || len(out) != 1 {
		t.Fatalf("10 MB: %v", err)
	}
}

// Window results are bounded too: a running $push over kilobyte values
// grows quadratically and fails with 292 instead of exhausting memory.
func TestWindowResultsMemoryLimit(t *testing.T) {
	doc := bson.Raw(bsoncore.NewDocumentBuilder().AppendString("s", strings.Repeat("y", 1024)).Build())
	stage := D(t, `{"$setWindowFields": {"sortBy": {"_id": 1}, "output": {"all": {"$push": "$s", "window": {"documents": ["unbounded", "current"]}}}}}`)
	p, err := CompilePipeline([]bson.Raw{stage}, mapSource{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = p.Run(context.Background(), &repeatIter{doc: doc, n: 2000}); mongoerr.CodeOf(err) != codeMemoryLimit {
		t.Fatalf("got %v, want 292", err)
	}
	// Windows that end at the partition's end are accumulated from the end:
	// linear, so a large partition is quick.
	stage = D(t, `{"$setWindowFields": {"sortBy": {"_id": 1}, "output": {"rest": {"$sum": 1, "window": {"documents": ["current", "unbounded"]}}, "n": {"$count": {}, "window": {"documents": [-5, 5]}}}}}`)
	if p, err = CompilePipeline([]bson.Raw{stage}, mapSource{}); err != nil {
		t.Fatal(err)
	}
	it, err := p.Run(context.Background(), &repeatIter{doc: D(t, `{"_id": 1}`), n: 200000})
	if err != nil {
		t.Fatal(err)
	}
	first, err := it.Next(context.Background())
	if err != nil || first.Lookup("rest").Int32() != 200000 || first.Lookup("n").Int32() != 6 {
		t.Fatalf("first document %s, %v", first, err)
	}
}
