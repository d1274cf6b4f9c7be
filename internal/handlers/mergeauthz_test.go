package handlers_test

import (
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// What mongodump and mongorestore need to carry users from one server to
// another: admin.system.users readable, the auth schema version (in
// getParameter and admin.system.version), and _mergeAuthzCollections
// creating users from their stored SCRAM keys, so that the same password
// authenticates on the target.
func TestDumpAndRestoreUsers(t *testing.T) {
	ctx := handlerstest.Context(t)
	src := handlerstest.StartEnv(t, handlers.Options{})
	for _, u := range []struct{ db, user, pwd, role string }{{"shop", "alice", "alice-pw", "readWrite"}, {"admin", "ops", "ops-pw", "root"}} {
		if err := mkUser(ctx, src.Client, u.db, u.user, u.pwd, bson.A{bson.D{{Key: "role", Value: u.role}, {Key: "db", Value: u.db}}}); err != nil {
			t.Fatal(err)
		}
	}
	var ver struct {
		V int `bson:"authSchemaVersion"`
	}
	if err := src.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "getParameter", Value: 1}, {Key: "authSchemaVersion", Value: 1}}).Decode(&ver); err != nil || ver.V != 5 {
		t.Fatalf("authSchemaVersion: %d %v", ver.V, err)
	}
	var schema struct {
		V int `bson:"currentVersion"`
	}
	if err := src.Client.Database("admin").Collection("system.version").FindOne(ctx, bson.D{{Key: "_id", Value: "authSchema"}}).Decode(&schema); err != nil || schema.V != 5 {
		t.Fatalf("admin.system.version authSchema: %d %v", schema.V, err)
	}
	dump := func(c *mongo.Client) []bson.Raw {
		cur, err := c.Database("admin").Collection("system.users").Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.Raw
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		return docs
	}
	users := dump(src.Client)
	if len(users) != 2 {
		t.Fatalf("%d user documents", len(users))
	}

	dst := handlerstest.StartEnv(t, handlers.Options{})
	if err := mkUser(ctx, dst.Client, "shop", "stale", "stale-pw", bson.A{"read"}); err != nil {
		t.Fatal(err)
	}
	if err := mkUser(ctx, dst.Client, "shop", "alice", "other-pw", bson.A{"read"}); err != nil {
		t.Fatal(err)
	}
	restore := func(drop bool) error {
		tmp := dst.Client.Database("admin").Collection("tempusers")
		if err := tmp.Drop(ctx); err != nil {
			return err
		}
		for _, u := range users {
			if _, err := tmp.InsertOne(ctx, u); err != nil {
				return err
			}
		}
		return dst.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "_mergeAuthzCollections", Value: 1},
			{Key: "tempUsersCollection", Value: "admin.tempusers"}, {Key: "drop", Value: drop}, {Key: "db", Value: ""},
			{Key: "writeConcern", Value: bson.D{{Key: "w", Value: "majority"}}}}).Err()
	}
	login := func(db, user, pwd string) error {
		c := dst.Connect(t, func(o *options.ClientOptions) {
			o.SetAuth(options.Credential{AuthMechanism: "SCRAM-SHA-256", AuthSource: db, Username: user, Password: pwd})
		})
		return c.Ping(ctx, nil)
	}
	names := func() []string {
		var out []string
		for _, d := range dump(dst.Client) {
			out = append(out, d.Lookup("_id").StringValue())
		}
		return out
	}
	// Without drop: new users are created with their keys; an existing
	// one stays as it was, and users the dump lacks stay.
	if err := restore(false); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"admin.ops", "shop.alice", "shop.stale"}) {
		t.Fatalf("users after a merge without drop: %v", got)
	}
	if err := login("admin", "ops", "ops-pw"); err != nil {
		t.Fatalf("a restored user's password: %v", err)
	}
	if err := login("shop", "alice", "other-pw"); err != nil {
		t.Fatalf("an existing user was changed without drop: %v", err)
	}
	// With drop: the dump's users exactly, with their own keys.
	if err := restore(true); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"admin.ops", "shop.alice"}) {
		t.Fatalf("users after a merge with drop: %v", got)
	}
	if err := login("shop", "alice", "alice-pw"); err != nil {
		t.Fatalf("the dump's password after drop: %v", err)
	}
	wantAuthFailed(t, login("shop", "alice", "other-pw"))

	// Refusals: no temporary collection named; user-defined roles; a
	// document that is not a user.
	err := dst.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "_mergeAuthzCollections", Value: 1}, {Key: "db", Value: ""}}).Err()
	wantAuthCode(t, err, mongoerr.BadValue)
	if _, err := dst.Client.Database("admin").Collection("temproles").InsertOne(ctx, bson.D{{Key: "_id", Value: "shop.r"}, {Key: "role", Value: "r"}, {Key: "db", Value: "shop"}}); err != nil {
		t.Fatal(err)
	}
	err = dst.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "_mergeAuthzCollections", Value: 1},
		{Key: "tempRolesCollection", Value: "admin.temproles"}, {Key: "db", Value: ""}}).Err()
	wantAuthCode(t, err, mongoerr.NotImplemented)
	if _, err := dst.Client.Database("admin").Collection("badusers").InsertOne(ctx, bson.D{{Key: "_id", Value: "shop.x"}, {Key: "user", Value: "x"}, {Key: "db", Value: "shop"}}); err != nil {
		t.Fatal(err)
	}
	err = dst.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "_mergeAuthzCollections", Value: 1},
		{Key: "tempUsersCollection", Value: "admin.badusers"}, {Key: "db", Value: ""}}).Err()
	wantAuthCode(t, err, mongoerr.BadValue) // a user without credentials
}
