package handlers

import (
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/wire"
)

// opCounters are serverStatus's opcounters: the operations received since
// the node started, as mongod counts them — every document of an insert,
// every statement of an update or a delete, a find as one query, a
// getMore, and every other command as one command — whether they succeed
// or not.
type opCounters struct {
	insert, query, update, delete, getmore, command atomic.Int64
}

func (o *opCounters) count(req *wire.Request) {
	switch req.Name {
	case "insert":
		o.insert.Add(arrayLen(req.Command, "documents"))
	case "update":
		o.update.Add(arrayLen(req.Command, "updates"))
	case "delete":
		o.delete.Add(arrayLen(req.Command, "deletes"))
	case "find":
		o.query.Add(1)
	case "getMore":
		o.getmore.Add(1)
	default:
		o.command.Add(1)
	}
}

func arrayLen(cmd bson.Raw, key string) int64 {
	arr, ok := cmd.Lookup(key).ArrayOK()
	if !ok {
		return 0
	}
	vals, err := arr.Values()
	if err != nil {
		return 0
	}
	return int64(len(vals))
}

func (o *opCounters) doc() bson.D {
	return bson.D{
		{Key: "insert", Value: o.insert.Load()}, {Key: "query", Value: o.query.Load()}, {Key: "update", Value: o.update.Load()},
		{Key: "delete", Value: o.delete.Load()}, {Key: "getmore", Value: o.getmore.Load()}, {Key: "command", Value: o.command.Load()},
	}
}
