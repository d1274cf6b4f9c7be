package repl_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/cmkdb/cmkdb/internal/repl/repltest"
	"github.com/cmkdb/cmkdb/internal/wire/wiretest"
)

type acct struct {
	ID  string `bson:"_id"`
	Bal int    `bson:"bal"`
}

func hasLabel(err error, label string) bool {
	var le mongo.LabeledError
	return errors.As(err, &le) && le.HasErrorLabel(label)
}

// balances reads every account of app.accounts on a member in one scan
// (one Pebble iterator: a consistent view of that member's database).
func balances(ctx context.Context, t *testing.T, c *mongo.Client) (map[string]int, error) {
	cur, err := c.Database("app", options.Database().SetReadPreference(readpref.SecondaryPreferred())).
		Collection("accounts").Find(ctx, bson.D{})
	if err != nil {
		return nil, err
	}
	var out []acct
	if err := cur.All(ctx, &out); err != nil {
		return nil, err
	}
	m := map[string]int{}
	for _, a := range out {
		m[a.ID] = a.Bal
	}
	return m, nil
}

// TestTransactions runs multi-document transactions through the official
// driver on a three-member set: atomic commit on every member, abort,
// snapshot isolation, write conflicts, and withTransaction's retry.
func TestTransactions(t *testing.T) {
	set := repltest.Start(t, 3)
	p := set.Primary(t, time.Minute)
	client := connect(t, set.URI())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	app := client.Database("app")
	accounts := app.Collection("accounts")
	audit := client.Database("other").Collection("audit")
	if _, err := accounts.InsertMany(ctx, []any{acct{"a", 100}, acct{"b", 0}, acct{"k", 0}, acct{"r", 0}}); err != nil {
		t.Fatal(err)
	}
	if err := client.Database("other").CreateCollection(ctx, "audit"); err != nil {
		t.Fatal(err)
	}
	members := make([]*mongo.Client, len(set.Members))
	for i, m := range set.Members {
		members[i] = direct(t, m.Host)
	}

	// 1. A transfer across two documents and two databases commits as a
	// whole: before the commit nobody outside sees any of it; after it,
	// every member shows all of it, and no member ever shows half.
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	_, err = sess.WithTransaction(ctx, func(sc context.Context) (any, error) {
		if _, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: -30}}}}); err != nil {
			return nil, err
		}
		if _, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 30}}}}); err != nil {
			return nil, err
		}
		if _, err := audit.InsertOne(sc, bson.D{{Key: "_id", Value: "transfer-1"}}); err != nil {
			return nil, err
		}
		// Own writes are visible inside, nothing outside.
		var in acct
		if err := accounts.FindOne(sc, bson.D{{Key: "_id", Value: "b"}}).Decode(&in); err != nil || in.Bal != 30 {
			return nil, fmt.Errorf("inside: b = %+v, %v", in, err)
		}
		var out acct
		if err := accounts.FindOne(ctx, bson.D{{Key: "_id", Value: "b"}}).Decode(&out); err != nil || out.Bal != 0 {
			return nil, fmt.Errorf("outside before commit: b = %+v, %v", out, err)
		}
		if n, err := audit.CountDocuments(ctx, bson.D{}); err != nil || n != 0 {
			return nil, fmt.Errorf("outside before commit: %d audit documents, %v", n, err)
		}
		return nil, nil
	})
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	for i, m := range members {
		waitFor(t, func() bool {
			b, err := balances(ctx, t, m)
			if err != nil || len(b) < 4 {
				return false // a secondary may not have the accounts yet
			}
			if !(b["a"] == 100 && b["b"] == 0) && !(b["a"] == 70 && b["b"] == 30) {
				t.Fatalf("member %d shows half a transaction: %v", i, b)
			}
			n, _ := m.Database("other", options.Database().SetReadPreference(readpref.SecondaryPreferred())).
				Collection("audit").CountDocuments(ctx, bson.D{})
			return b["a"] == 70 && b["b"] == 30 && n == 1
		}, fmt.Sprintf("the transfer on member %d", i))
	}

	// 2. Abort leaves nothing, on any member.
	s2, _ := client.StartSession()
	defer s2.EndSession(ctx)
	if err := s2.StartTransaction(); err != nil {
		t.Fatal(err)
	}
	sc2 := mongo.NewSessionContext(ctx, s2)
	if _, err := accounts.InsertOne(sc2, acct{"aborted", 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.UpdateOne(sc2, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "bal", Value: -1}}}}); err != nil {
		t.Fatal(err)
	}
	if err := s2.AbortTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.InsertOne(ctx, acct{"marker-2", 0}); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		waitFor(t, func() bool { b, _ := balances(ctx, t, m); _, ok := b["marker-2"]; return ok }, "marker")
		b, _ := balances(ctx, t, m)
		if _, ok := b["aborted"]; ok || b["a"] != 70 {
			t.Fatalf("member %d after abort: %v", i, b)
		}
	}

	// 3. Snapshot isolation: a write committed outside after the
	// transaction's first read is not seen inside it.
	s3, _ := client.StartSession()
	defer s3.EndSession(ctx)
	if err := s3.StartTransaction(); err != nil {
		t.Fatal(err)
	}
	sc3 := mongo.NewSessionContext(ctx, s3)
	var before acct
	if err := accounts.FindOne(sc3, bson.D{{Key: "_id", Value: "b"}}).Decode(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.UpdateOne(ctx, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "bal", Value: 999}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.InsertOne(ctx, acct{"late", 5}); err != nil {
		t.Fatal(err)
	}
	var again acct
	if err := accounts.FindOne(sc3, bson.D{{Key: "_id", Value: "b"}}).Decode(&again); err != nil || again.Bal != before.Bal {
		t.Fatalf("inside after an outside write: %+v (was %+v), %v", again, before, err)
	}
	if n, err := accounts.CountDocuments(sc3, bson.D{{Key: "_id", Value: "late"}}); err != nil || n != 0 {
		t.Fatalf("inside: a document inserted after the snapshot is seen (%d, %v)", n, err)
	}
	// Writing the document changed since the snapshot conflicts.
	_, err = accounts.UpdateOne(sc3, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 1}}}})
	if code(err) != 112 || !hasLabel(err, "TransientTransactionError") {
		t.Fatalf("write to a document committed after the snapshot: %v, want WriteConflict + TransientTransactionError", err)
	}
	_ = s3.AbortTransaction(ctx)

	// 4. Two transactions write the same document: the second gets
	// WriteConflict with TransientTransactionError, and nothing it wrote
	// before survives.
	s4a, _ := client.StartSession()
	defer s4a.EndSession(ctx)
	s4b, _ := client.StartSession()
	defer s4b.EndSession(ctx)
	_ = s4a.StartTransaction()
	_ = s4b.StartTransaction()
	sa, sb := mongo.NewSessionContext(ctx, s4a), mongo.NewSessionContext(ctx, s4b)
	if _, err := accounts.UpdateOne(sa, bson.D{{Key: "_id", Value: "k"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "bal", Value: 1}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.InsertOne(sb, acct{"loser", 1}); err != nil {
		t.Fatal(err)
	}
	_, err = accounts.UpdateOne(sb, bson.D{{Key: "_id", Value: "k"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "bal", Value: 2}}}})
	if code(err) != 112 || !hasLabel(err, "TransientTransactionError") {
		t.Fatalf("second writer: %v, want WriteConflict + TransientTransactionError", err)
	}
	if err := s4b.CommitTransaction(ctx); code(err) != 251 {
		t.Fatalf("commit of the losing transaction: %v, want NoSuchTransaction", err)
	}
	if err := s4a.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := accounts.InsertOne(ctx, acct{"marker-4", 0}); err != nil {
		t.Fatal(err)
	}
	for i, m := range members {
		waitFor(t, func() bool { b, _ := balances(ctx, t, m); _, ok := b["marker-4"]; return ok }, "marker")
		b, _ := balances(ctx, t, m)
		if _, ok := b["loser"]; ok || b["k"] != 1 {
			t.Fatalf("member %d after the conflict: %v", i, b)
		}
	}

	// 5. withTransaction reruns a transaction that hit a conflict.
	s5, _ := client.StartSession()
	defer s5.EndSession(ctx)
	s5o, _ := client.StartSession()
	defer s5o.EndSession(ctx)
	_ = s5o.StartTransaction()
	if _, err := accounts.UpdateOne(mongo.NewSessionContext(ctx, s5o), bson.D{{Key: "_id", Value: "r"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 10}}}}); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	_, err = s5.WithTransaction(ctx, func(sc context.Context) (any, error) {
		attempts++
		_, err := accounts.UpdateOne(sc, bson.D{{Key: "_id", Value: "r"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "bal", Value: 1}}}})
		if attempts == 1 {
			if code(err) != 112 {
				return nil, fmt.Errorf("first attempt: %v, want a write conflict", err)
			}
			if cerr := s5o.CommitTransaction(ctx); cerr != nil {
				return nil, cerr
			}
		}
		return nil, err
	})
	if err != nil || attempts != 2 {
		t.Fatalf("withTransaction: %v after %d attempts", err, attempts)
	}
	var r acct
	if err := accounts.FindOne(ctx, bson.D{{Key: "_id", Value: "r"}}).Decode(&r); err != nil || r.Bal != 11 {
		t.Fatalf("r = %+v, %v; want 11", r, err)
	}
	_ = p
}

// TestTransactionProtocol checks the server side of the protocol on the
// wire: the errors drivers act on, and a retried commit.
func TestTransactionProtocol(t *testing.T) {
	set := repltest.Start(t, 3)
	p := set.Primary(t, time.Minute)
	w := wiretest.Dial(t, set.Members[p].Host)
	if raw, err := w.Command("app", bson.D{{Key: "create", Value: "c"}}); err != nil || wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("create: %v %v", raw, err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	lsid := bson.D{{Key: "id", Value: bson.Binary{Subtype: 4, Data: id}}}
	stmt := func(db string, num int64, start bool, cmd bson.D) bson.Raw {
		t.Helper()
		cmd = append(cmd, bson.E{Key: "lsid", Value: lsid}, bson.E{Key: "txnNumber", Value: num}, bson.E{Key: "autocommit", Value: false})
		if start {
			cmd = append(cmd, bson.E{Key: "startTransaction", Value: true})
		}
		raw, err := w.Command(db, cmd)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	labels := func(raw bson.Raw) string {
		v, err := raw.LookupErr("errorLabels")
		if err != nil {
			return ""
		}
		return v.String()
	}
	ins := func(id string) bson.D {
		return bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{bson.D{{Key: "_id", Value: id}}}}}
	}
	commit := bson.D{{Key: "commitTransaction", Value: 1}}

	// Transactions run on the primary only.
	sec := wiretest.Dial(t, set.Members[(p+1)%3].Host)
	raw, err := sec.Command("app", bson.D{{Key: "find", Value: "c"}, {Key: "lsid", Value: lsid}, {Key: "txnNumber", Value: int64(1)},
		{Key: "autocommit", Value: false}, {Key: "startTransaction", Value: true},
		{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: "secondary"}}}})
	if err != nil || wiretest.ErrorCode(raw) != 10107 {
		t.Fatalf("a transaction on a secondary: %v %v, want NotWritablePrimary", raw, err)
	}
	// An unknown transaction.
	if raw := stmt("app", 1, false, ins("x")); wiretest.ErrorCode(raw) != 251 || labels(raw) != `["TransientTransactionError"]` {
		t.Fatalf("statement of no transaction: %v", raw)
	}
	// Commit, then a retried commit answers ok.
	if raw := stmt("app", 2, true, append(ins("t2"), bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: "snapshot"}}})); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("first statement with readConcern snapshot: %v", raw)
	}
	if raw := stmt("app", 2, false, append(ins("t2b"), bson.E{Key: "readConcern", Value: bson.D{{Key: "level", Value: "local"}}})); wiretest.ErrorCode(raw) != 72 {
		t.Fatalf("readConcern on a later statement: %v, want InvalidOptions", raw)
	}
	// Refused before it ran: the transaction is still usable.
	if raw := stmt("admin", 2, false, commit); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("commit after a refused statement: %v", raw)
	}
	// A statement that fails while running aborts the transaction.
	stmt("app", 6, true, ins("t6"))
	if raw := stmt("app", 6, false, ins("t2")); wiretest.ErrorCode(raw) != 0 || len(raw.Lookup("writeErrors").Array()) == 0 {
		t.Fatalf("duplicate insert in a transaction: %v", raw)
	}
	if raw := stmt("admin", 6, false, commit); wiretest.ErrorCode(raw) != 251 {
		t.Fatalf("commit after a failed statement: %v, want NoSuchTransaction", raw)
	}
	if raw := stmt("app", 7, true, ins("t3")); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("start 7: %v", raw)
	}
	for _, bad := range []struct {
		cmd  bson.D
		code int32
	}{
		{bson.D{{Key: "count", Value: "c"}}, 263},
		{bson.D{{Key: "listCollections", Value: 1}}, 263},
		{bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$out", Value: "d"}}}}, {Key: "cursor", Value: bson.D{}}}, 263},
		{append(ins("wc"), bson.E{Key: "writeConcern", Value: bson.D{{Key: "w", Value: 1}}}), 72},
	} {
		// Refused before it runs: the transaction stays usable.
		if raw := stmt("app", 7, false, bad.cmd); int32(wiretest.ErrorCode(raw)) != bad.code {
			t.Fatalf("%v in a transaction: %v, want %d", bad.cmd, raw, bad.code)
		}
	}
	if raw := stmt("admin", 7, false, commit); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("commit: %v", raw)
	}
	if raw := stmt("admin", 7, false, commit); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("retried commit: %v", raw)
	}
	if raw := stmt("admin", 7, false, bson.D{{Key: "abortTransaction", Value: 1}}); wiretest.ErrorCode(raw) != 256 {
		t.Fatalf("abort after commit: %v, want TransactionCommitted", raw)
	}
	if raw := stmt("app", 2, true, ins("old")); wiretest.ErrorCode(raw) != 225 {
		t.Fatalf("an older transaction number: %v, want TransactionTooOld", raw)
	}
	// A higher number aborts the open transaction.
	stmt("app", 8, true, ins("t4"))
	if raw := stmt("app", 9, true, ins("t5")); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("start 9: %v", raw)
	}
	if raw := stmt("app", 8, false, ins("t4b")); wiretest.ErrorCode(raw) != 225 {
		t.Fatalf("statement of the superseded transaction: %v, want TransactionTooOld", raw)
	}
	// A cursor opened in the transaction is its own.
	raw = stmt("app", 9, false, bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 1}})
	cid, err := raw.LookupErr("cursor", "id")
	if err != nil || cid.Int64() == 0 {
		t.Fatalf("find in a transaction: %v", raw)
	}
	gm := bson.D{{Key: "getMore", Value: cid.Int64()}, {Key: "collection", Value: "c"}}
	if raw, _ := w.Command("app", gm); wiretest.ErrorCode(raw) != 50740 {
		t.Fatalf("getMore outside the transaction: %v", raw)
	}
	if raw := stmt("app", 9, false, gm); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("getMore inside: %v", raw)
	}
	if raw := stmt("admin", 9, false, bson.D{{Key: "abortTransaction", Value: 1}}); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("abort: %v", raw)
	}
	if raw := stmt("app", 9, false, gm); wiretest.ErrorCode(raw) != 251 {
		t.Fatalf("getMore after abort: %v, want NoSuchTransaction", raw)
	}
	// endSessions aborts the session's open transaction.
	if raw := stmt("app", 10, true, ins("ended")); wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("start 10: %v", raw)
	}
	if raw, err := w.Command("admin", bson.D{{Key: "endSessions", Value: bson.A{lsid}}}); err != nil || wiretest.ErrorCode(raw) != 0 {
		t.Fatalf("endSessions: %v %v", raw, err)
	}
	if raw := stmt("admin", 10, false, commit); wiretest.ErrorCode(raw) != 251 {
		t.Fatalf("commit after endSessions: %v, want NoSuchTransaction", raw)
	}
	// What committed: t2 and t3 (t6 failed, t4 and t5 were aborted).
	raw, err = w.Command("app", bson.D{{Key: "find", Value: "c"}, {Key: "sort", Value: bson.D{{Key: "_id", Value: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	docs, _ := raw.Lookup("cursor", "firstBatch").Array().Values()
	if len(docs) != 2 || docs[0].Document().Lookup("_id").StringValue() != "t2" || docs[1].Document().Lookup("_id").StringValue() != "t3" {
		t.Fatalf("committed documents: %v", docs)
	}
}

// TestTransactionLifetimeLimit: a transaction older than the limit is
// aborted, its writes discarded, and its next statement gets
// NoSuchTransaction.
func TestTransactionLifetimeLimit(t *testing.T) {
	set := repltest.Start(t, 3)
	p := set.Primary(t, time.Minute)
	set.Members[p].Handler.SetTransactionLifetime(300 * time.Millisecond)
	client := connect(t, set.URI())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	coll := client.Database("app").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "seed"}}); err != nil {
		t.Fatal(err)
	}
	sess, _ := client.StartSession()
	defer sess.EndSession(ctx)
	_ = sess.StartTransaction()
	sc := mongo.NewSessionContext(ctx, sess)
	if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: "stale"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := coll.InsertOne(sc, bson.D{{Key: "_id", Value: "stale-2"}}); code(err) != 251 {
		t.Fatalf("statement after the lifetime limit: %v, want NoSuchTransaction", err)
	}
	if err := sess.CommitTransaction(ctx); code(err) != 251 {
		t.Fatalf("commit after the lifetime limit: %v, want NoSuchTransaction", err)
	}
	if n, err := coll.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("%d documents (%v), want only the seed", n, err)
	}
	// Its keys are free: another transaction writes the same document.
	s2, _ := client.StartSession()
	defer s2.EndSession(ctx)
	if _, err := s2.WithTransaction(ctx, func(sc context.Context) (any, error) {
		return coll.InsertOne(sc, bson.D{{Key: "_id", Value: "stale"}})
	}); err != nil {
		t.Fatal(err)
	}
}
