package repl_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
)

type changeEvent struct {
	ID            bson.Raw       `bson:"_id"`
	OperationType string         `bson:"operationType"`
	ClusterTime   bson.Timestamp `bson:"clusterTime"`
	NS            struct {
		DB   string `bson:"db"`
		Coll string `bson:"coll"`
	} `bson:"ns"`
	To struct {
		DB   string `bson:"db"`
		Coll string `bson:"coll"`
	} `bson:"to"`
	DocumentKey       bson.Raw `bson:"documentKey"`
	FullDocument      bson.Raw `bson:"fullDocument"`
	UpdateDescription struct {
		UpdatedFields bson.Raw `bson:"updatedFields"`
		RemovedFields []string `bson:"removedFields"`
	} `bson:"updateDescription"`
	LSID      bson.Raw `bson:"lsid"`
	TxnNumber *int64   `bson:"txnNumber"`
}

// nextEvents reads n events from cs, failing the test if they do not come.
func nextEvents(t *testing.T, ctx context.Context, cs *mongo.ChangeStream, n int) []changeEvent {
	t.Helper()
	var out []changeEvent
	for len(out) < n {
		if !cs.Next(ctx) {
			t.Fatalf("change stream ended after %d of %d events: %v", len(out), n, cs.Err())
		}
		var ev changeEvent
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func opTypes(evs []changeEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.OperationType)
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestChangeStreamsThroughDriver opens change streams with the official
// driver on a collection, a database and the deployment; checks every
// event kind and its fields; resumes from a token on another member;
// starts at an operation time; filters with a pipeline; sees a
// transaction's changes; and ends with drop and invalidate.
func TestChangeStreamsThroughDriver(t *testing.T) {
	set := repltest.Start(t, 3)
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(set.URI()).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database("app")
	coll := db.Collection("c")

	collStream, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	if err != nil {
		t.Fatal(err)
	}
	defer collStream.Close(context.Background())
	dbStream, err := db.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		t.Fatal(err)
	}
	defer dbStream.Close(context.Background())
	inserts, err := client.Watch(ctx, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "insert"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer inserts.Close(context.Background())

	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: 1}}))
	must(coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 2}}}, {Key: "$unset", Value: bson.D{{Key: "b", Value: ""}}}}))
	must(coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "r", Value: true}}))
	must(coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}))
	must(db.Collection("other").InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}}))

	evs := nextEvents(t, ctx, collStream, 4)
	if got := opTypes(evs); !sameStrings(got, []string{"insert", "update", "replace", "delete"}) {
		t.Fatalf("collection stream events %v", got)
	}
	if evs[0].NS.DB != "app" || evs[0].NS.Coll != "c" || evs[0].FullDocument.Lookup("a").Int32() != 1 || evs[0].DocumentKey.Lookup("_id").Int32() != 1 {
		t.Fatalf("insert event %+v", evs[0])
	}
	ud := evs[1].UpdateDescription
	if ud.UpdatedFields.Lookup("a").Int32() != 2 || !sameStrings(ud.RemovedFields, []string{"b"}) {
		t.Fatalf("update description %+v", ud)
	}
	// updateLookup reads the document as it is when the event is read: by
	// then it was replaced and deleted.
	if evs[1].FullDocument != nil {
		if _, err := evs[1].FullDocument.LookupErr("_id"); err == nil && evs[1].FullDocument.Lookup("r").Boolean() != true {
			t.Fatalf("update's looked-up fullDocument %v", evs[1].FullDocument)
		}
	}
	if evs[2].FullDocument.Lookup("r").Boolean() != true {
		t.Fatalf("replace event fullDocument %v", evs[2].FullDocument)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ClusterTime.Compare(evs[i-1].ClusterTime) <= 0 {
			t.Fatalf("clusterTime not increasing: %v", evs)
		}
	}
	dbEvs := nextEvents(t, ctx, dbStream, 5)
	if dbEvs[4].OperationType != "insert" || dbEvs[4].NS.Coll != "other" {
		t.Fatalf("database stream's fifth event %+v", dbEvs[4])
	}
	insEvs := nextEvents(t, ctx, inserts, 2)
	if insEvs[0].NS.Coll != "c" || insEvs[1].NS.Coll != "other" {
		t.Fatalf("deployment stream filtered to inserts: %+v", insEvs)
	}

	// updateLookup on a live document.
	must(coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: 0}}))
	must(coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 5}}}}))
	live := nextEvents(t, ctx, collStream, 2)
	if live[1].OperationType != "update" || live[1].FullDocument.Lookup("n").Int32() != 5 {
		t.Fatalf("updateLookup: %+v", live[1])
	}

	// Resume after the second event, on a secondary: the same events follow.
	sec := -1
	p := set.Primary(t, time.Minute)
	for i := range set.Members {
		if i != p {
			sec = i
			break
		}
	}
	direct, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + set.Members[sec].Host + "/?directConnection=true").SetReadPreference(readpref.SecondaryPreferred()))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Disconnect(context.Background())
	resumed, err := direct.Database("app").Collection("c").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(evs[1].ID))
	if err != nil {
		t.Fatalf("resume on a secondary: %v", err)
	}
	again := nextEvents(t, ctx, resumed, 4)
	resumed.Close(ctx)
	if got := opTypes(again); !sameStrings(got, []string{"replace", "delete", "insert", "update"}) || string(again[0].ID) != string(evs[2].ID) {
		t.Fatalf("resumed after the update: %v", got)
	}
	// startAtOperationTime includes the event at that time.
	at, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&evs[3].ClusterTime))
	if err != nil {
		t.Fatal(err)
	}
	if first := nextEvents(t, ctx, at, 1)[0]; first.OperationType != "delete" {
		t.Fatalf("startAtOperationTime: first event %+v", first)
	}
	at.Close(ctx)

	// A transaction's changes, each an event at the transaction's time.
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: 10}}); err != nil {
			return nil, err
		}
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: 11}})
	})
	sess.EndSession(ctx)
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	txn := nextEvents(t, ctx, collStream, 2)
	if txn[0].DocumentKey.Lookup("_id").Int32() != 10 || txn[1].DocumentKey.Lookup("_id").Int32() != 11 || txn[0].ClusterTime != txn[1].ClusterTime {
		t.Fatalf("transaction events %+v", txn)
	}
	// They name the transaction's session, as MongoDB's do.
	if _, id, ok := txn[0].LSID.Lookup("id").BinaryOK(); !ok || len(id) != 16 || txn[0].TxnNumber == nil || *txn[0].TxnNumber < 1 || string(txn[1].LSID) != string(txn[0].LSID) {
		t.Fatalf("transaction events' session: lsid %v txnNumber %v", txn[0].LSID, txn[0].TxnNumber)
	}
	if evs[0].LSID != nil {
		t.Fatalf("an event outside a transaction names a session: %v", evs[0].LSID)
	}

	// Rename and drop end a collection stream with invalidate.
	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	end := nextEvents(t, ctx, collStream, 2)
	if got := opTypes(end); !sameStrings(got, []string{"drop", "invalidate"}) {
		t.Fatalf("after drop: %v", got)
	}
	if collStream.Next(ctx) {
		t.Fatal("the stream went on after invalidate")
	}
	// startAfter the invalidate opens a new stream on the collection.
	after, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAfter(end[1].ID))
	if err != nil {
		t.Fatalf("startAfter invalidate: %v", err)
	}
	must(coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "new"}}))
	if ev := nextEvents(t, ctx, after, 1)[0]; ev.OperationType != "insert" || ev.DocumentKey.Lookup("_id").StringValue() != "new" {
		t.Fatalf("after startAfter: %+v", ev)
	}
	after.Close(ctx)
	if _, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(end[1].ID)); !isCode(err, 260) {
		t.Fatalf("resumeAfter an invalidate: %v, want InvalidResumeToken", err)
	}
	// A pipeline stage that cannot follow $changeStream is refused.
	if _, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}}}}}); !isCode(err, 20) {
		t.Fatalf("$group in a change stream: %v, want IllegalOperation", err)
	}
}

func isCode(err error, code int) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(code)
}

// TestChangeStreamResumesAcrossFailover keeps one change stream open
// through the driver while the primary dies: the driver resumes it
// on the new primary with the last token, and no event is lost or
// repeated.
func TestChangeStreamResumesAcrossFailover(t *testing.T) {
	set := repltest.Start(t, 3)
	p := set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(set.URI()).SetWriteConcern(writeconcern.Majority()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	coll := client.Database("app").Collection("failover")
	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(context.Background())
	for i := 0; i < 3; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	got := nextEvents(t, ctx, cs, 3)

	// The primary's process dies: its connections close, the driver's
	// next getMore fails, and the driver resumes the stream elsewhere.
	set.Stop(p)
	// Writes continue through the driver (retryable writes find the new
	// primary).
	for i := 3; i < 6; i++ {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	// The driver resumes once by itself; an application whose stream still
	// failed (its primary gone mid-election) reopens it from the last
	// resume token, which any member understands.
	for len(got) < 6 {
		if cs.Next(ctx) {
			var ev changeEvent
			if err := cs.Decode(&ev); err != nil {
				t.Fatal(err)
			}
			got = append(got, ev)
			continue
		}
		if cs.Err() == nil {
			continue
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream did not resume: %v", cs.Err())
		}
		token := cs.ResumeToken()
		cs.Close(ctx)
		for {
			if cs, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token).SetMaxAwaitTime(200*time.Millisecond)); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("reopening the stream: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for i, ev := range got {
		if ev.DocumentKey.Lookup("_id").Int32() != int32(i) {
			t.Fatalf("event %d has _id %v: the stream lost or repeated an event across the failover", i, ev.DocumentKey)
		}
	}
}

// TestChangeStreamOptionErrors: every $changeStream option is either
// honoured or refused with MongoDB's error.
func TestChangeStreamOptionErrors(t *testing.T) {
	set := repltest.Start(t, 3)
	set.Primary(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(set.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	cs := func(db string, target any, spec bson.D, more ...bson.D) error {
		pipeline := bson.A{bson.D{{Key: "$changeStream", Value: spec}}}
		for _, m := range more {
			pipeline = append(pipeline, m)
		}
		return client.Database(db).RunCommand(ctx, bson.D{{Key: "aggregate", Value: target}, {Key: "pipeline", Value: pipeline}, {Key: "cursor", Value: bson.D{}}}).Err()
	}
	oldToken := bson.D{{Key: "_data", Value: "01000000010000000000000000" + "00"}}
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"unknown option", cs("app", "c", bson.D{{Key: "frob", Value: 1}}), 40415},
		{"fullDocument value", cs("app", "c", bson.D{{Key: "fullDocument", Value: "sometimes"}}), 2},
		{"fullDocument type", cs("app", "c", bson.D{{Key: "fullDocument", Value: 1}}), 14},
		{"two resume options", cs("app", "c", bson.D{{Key: "startAtOperationTime", Value: bson.Timestamp{T: 1}}, {Key: "resumeAfter", Value: oldToken}}), 40674},
		{"foreign token", cs("app", "c", bson.D{{Key: "resumeAfter", Value: bson.D{{Key: "_data", Value: "826A0B"}}}}), 260},
		{"admin database", cs("admin", 1, bson.D{}), 73},
		{"allChangesForCluster off admin", cs("app", 1, bson.D{{Key: "allChangesForCluster", Value: true}}), 72},
		{"system collection", cs("app", "system.views", bson.D{}), 73},
		{"$lookup after", cs("app", "c", bson.D{}, bson.D{{Key: "$lookup", Value: bson.D{}}}), 20},
		{"_id modified", nil, 0},
	} {
		if tc.code == 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			if !isCode(tc.err, tc.code) {
				t.Fatalf("err = %v, want code %d", tc.err, tc.code)
			}
		})
	}

	// A pipeline that rewrites _id breaks resumability: the event fails
	// the stream rather than hand out a token that cannot resume.
	coll := client.Database("app").Collection("idmod")
	stream, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close(context.Background())
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if stream.Next(ctx) || !isCode(stream.Err(), 280) {
		t.Fatalf("event with its _id removed: err %v, want ChangeStreamFatalError", stream.Err())
	}
}
