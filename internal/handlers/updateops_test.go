package handlers_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// $bit keeps an int an int and makes it a long with a long operand; the
// data-driven cases (internal/query/testdata/semantics/update.txt) cannot
// see the BSON type. $setOnInsert applies only when an upsert inserts.
func TestUpdateOperatorTypes(t *testing.T) {
	e := newDataEnv(t)
	c := e.fresh(t, bson.D{{Key: "_id", Value: 1}, {Key: "i", Value: int32(13)}, {Key: "l", Value: int32(13)}})
	if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$bit", Value: bson.D{
		{Key: "i", Value: bson.D{{Key: "xor", Value: int32(1)}}},
		{Key: "l", Value: bson.D{{Key: "or", Value: int64(1) << 40}}},
	}}}); err != nil {
		t.Fatal(err)
	}
	var got bson.Raw
	if err := c.FindOne(e.ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if i := got.Lookup("i"); i.Type != bson.TypeInt32 || i.Int32() != 12 {
		t.Errorf("i = %v (%s), want int 12", i, i.Type)
	}
	if l := got.Lookup("l"); l.Type != bson.TypeInt64 || l.Int64() != 13|1<<40 {
		t.Errorf("l = %v (%s), want long %d", l, l.Type, int64(13|1<<40))
	}

	upd := bson.D{{Key: "$setOnInsert", Value: bson.D{{Key: "created", Value: true}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 1}}}}
	for range 2 {
		if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 2}}, upd, options.UpdateOne().SetUpsert(true)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.UpdateOne(e.ctx, bson.D{{Key: "_id", Value: 1}}, upd); err != nil {
		t.Fatal(err)
	}
	if got := all(t, e.ctx, c); got != `[{"_id":1,"i":12,"l":1099511627789,"n":1},{"_id":2,"created":true,"n":2}]` {
		t.Errorf("got %s", got)
	}
}
