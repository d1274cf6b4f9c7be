package handlers_test

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/cmkdb/cmkdb/internal/handlers"
	"github.com/cmkdb/cmkdb/internal/handlers/handlerstest"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// configureFailPoint exists only with test commands on; failCommand
// fails the named commands the given number of times with the given
// code and labels, then lets them run.
func TestFailCommand(t *testing.T) {
	ctx := handlerstest.Context(t)
	off := handlerstest.StartEnv(t, handlers.Options{})
	err := off.Client.Database("admin").RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: "alwaysOn"}}).Err()
	wantAuthCode(t, err, mongoerr.CommandNotFound)

	e := handlerstest.StartEnv(t, handlers.Options{TestCommands: true})
	admin := e.Client.Database("admin")
	if err := admin.RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "times", Value: 2}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"find"}}, {Key: "errorCode", Value: 91}, {Key: "errorLabels", Value: bson.A{"Custom"}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	c := e.Client.Database("fp").Collection("c")
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("insert is not failed: %v", err)
	}
	raw, err := e.Client.Database("fp").RunCommand(ctx, bson.D{{Key: "find", Value: "c"}}).Raw()
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 91 || !ce.HasErrorLabel("Custom") {
		t.Fatalf("first find: %v %v", raw, err)
	}
	if err := e.Client.Database("fp").RunCommand(ctx, bson.D{{Key: "find", Value: "c"}}).Err(); err == nil {
		t.Fatal("second find was not failed")
	}
	if err := e.Client.Database("fp").RunCommand(ctx, bson.D{{Key: "find", Value: "c"}}).Err(); err != nil {
		t.Fatalf("third find (the fail point is spent): %v", err)
	}
	// writeConcernError: the command runs, the reply carries it.
	if err := admin.RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: bson.D{{Key: "times", Value: 1}}},
		{Key: "data", Value: bson.D{{Key: "failCommands", Value: bson.A{"insert"}}, {Key: "writeConcernError", Value: bson.D{{Key: "code", Value: 100}, {Key: "errmsg", Value: "wc"}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	var we mongo.WriteException
	if !errors.As(err, &we) || we.WriteConcernError == nil || we.WriteConcernError.Code != 100 {
		t.Fatalf("insert with a writeConcernError: %v", err)
	}
	if n, _ := c.CountDocuments(ctx, bson.D{{Key: "_id", Value: 2}}); n != 1 {
		t.Fatal("the insert did not run")
	}
	err = admin.RunCommand(ctx, bson.D{{Key: "configureFailPoint", Value: "nope"}, {Key: "mode", Value: "off"}}).Err()
	wantAuthCode(t, err, mongoerr.BadValue)
}
