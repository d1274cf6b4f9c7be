package handlers

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
)

// What a change stream makes of an oplog entry: the events it holds for
// the stream's scope, in MongoDB 7.0's change event format. An entry
// yields zero or more events: an applyOps entry (a transaction) one per
// change inside it; the drop of a collection a "drop", then, on a stream
// over that collection, an "invalidate" that ends the stream.

// streamScope is what a change stream watches: one collection, one
// database (coll empty), or the whole deployment (db empty).
type streamScope struct{ db, coll string }

// covers reports whether a change to db.coll belongs to the stream. The
// internal databases are never watched by a database or deployment
// stream, nor system collections by a database stream, as in MongoDB.
func (s streamScope) covers(db, coll string) bool {
	switch {
	case s.db == "":
		return db != "admin" && db != "config" && db != "local" && !strings.HasPrefix(coll, "system.")
	case s.coll == "":
		return db == s.db && !strings.HasPrefix(coll, "system.")
	default:
		return db == s.db && coll == s.coll
	}
}

// changeEvent is one event before the stream renders it: its place in
// the entry, its fields after _id, and what updateLookup or a pre-image
// request needs.
type changeEvent struct {
	index  uint32
	kind   tokenKind
	fields bson.D
	// db, coll and id locate the document of a CRUD event (id is its
	// documentKey's _id); opType is the event's operationType.
	db, coll string
	id       bson.RawValue
	opType   string
}

// eventsOf reads the events of one stored oplog entry.
func eventsOf(e oplog.Stored, scope streamScope, expanded bool) ([]changeEvent, error) {
	head := func(opType string) bson.D {
		return bson.D{
			{Key: "operationType", Value: opType},
			{Key: "clusterTime", Value: bson.Timestamp{T: e.TS.T, I: e.TS.I}},
			{Key: "wallTime", Value: bson.NewDateTimeFromTime(e.Wall)},
		}
	}
	if e.Kind == oplog.Command && e.NS == "admin.$cmd" {
		if ops, err := e.O.LookupErr("applyOps"); err == nil {
			evs, err := applyOpsEvents(ops, scope, expanded, head)
			if err != nil || e.LSID == nil {
				return evs, err
			}
			// A transaction's events name its session.
			for i := range evs {
				evs[i].fields = append(evs[i].fields, bson.E{Key: "lsid", Value: e.LSID}, bson.E{Key: "txnNumber", Value: e.TxnNumber})
			}
			return evs, nil
		}
	}
	return opEvents(e.Op, 0, scope, expanded, head)
}

func applyOpsEvents(ops bson.RawValue, scope streamScope, expanded bool, head func(string) bson.D) ([]changeEvent, error) {
	arr, ok := ops.ArrayOK()
	if !ok {
		return nil, badOplogEntry("applyOps is not an array")
	}
	vals, err := arr.Values()
	if err != nil {
		return nil, badOplogEntry(err.Error())
	}
	var out []changeEvent
	for i, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, badOplogEntry("an applyOps change is not a document")
		}
		var op oplog.Op
		op.Kind, _ = d.Lookup("op").StringValueOK()
		op.NS, _ = d.Lookup("ns").StringValueOK()
		op.O, _ = d.Lookup("o").DocumentOK()
		op.O2, _ = d.Lookup("o2").DocumentOK()
		if st, data, ok := d.Lookup("ui").BinaryOK(); ok {
			op.UI = &bson.Binary{Subtype: st, Data: data}
		}
		evs, err := opEvents(op, uint32(i), scope, expanded, head)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	return out, nil
}

func badOplogEntry(why string) error {
	return mongoerr.New(mongoerr.InternalError, "change stream: malformed oplog entry: %s", why)
}

func nsDoc(db, coll string) bson.D {
	if coll == "" {
		return bson.D{{Key: "db", Value: db}}
	}
	return bson.D{{Key: "db", Value: db}, {Key: "coll", Value: coll}}
}

func splitNS(ns string) (db, coll string) {
	db, coll, _ = strings.Cut(ns, ".")
	return db, coll
}

// opEvents reads the events of one change (a plain entry, or one change
// of an applyOps entry at index).
func opEvents(op oplog.Op, index uint32, scope streamScope, expanded bool, head func(string) bson.D) ([]changeEvent, error) {
	db, coll := splitNS(op.NS)
	ev := changeEvent{index: index, db: db, coll: coll}
	withUUID := func(d bson.D) bson.D {
		if expanded && op.UI != nil {
			d = append(d, bson.E{Key: "collectionUUID", Value: *op.UI})
		}
		return d
	}
	switch op.Kind {
	case oplog.Insert, oplog.Update, oplog.Delete:
		if !scope.covers(db, coll) {
			return nil, nil
		}
		key := op.O2
		if op.Kind == oplog.Delete {
			key = op.O
		}
		if key == nil {
			key = op.O
		}
		id, err := key.LookupErr("_id")
		if err != nil {
			return nil, badOplogEntry("a change without a document _id")
		}
		ev.id = id
		docKey := bson.D{{Key: "_id", Value: id}}
		switch {
		case op.Kind == oplog.Insert:
			ev.opType = "insert"
			ev.fields = append(withUUID(head("insert")), bson.E{Key: "fullDocument", Value: op.O},
				bson.E{Key: "ns", Value: nsDoc(db, coll)}, bson.E{Key: "documentKey", Value: docKey})
		case op.Kind == oplog.Delete:
			ev.opType = "delete"
			ev.fields = append(withUUID(head("delete")), bson.E{Key: "ns", Value: nsDoc(db, coll)}, bson.E{Key: "documentKey", Value: docKey})
		case oplog.IsDiff(op.O):
			updated, removed, err := oplog.Describe(op.O)
			if err != nil {
				return nil, badOplogEntry(err.Error())
			}
			desc := bson.D{{Key: "updatedFields", Value: updated}, {Key: "removedFields", Value: removed}, {Key: "truncatedArrays", Value: bson.A{}}}
			if expanded {
				desc = append(desc, bson.E{Key: "disambiguatedPaths", Value: bson.D{}})
			}
			ev.opType = "update"
			ev.fields = append(withUUID(head("update")), bson.E{Key: "ns", Value: nsDoc(db, coll)},
				bson.E{Key: "documentKey", Value: docKey}, bson.E{Key: "updateDescription", Value: desc})
		default:
			ev.opType = "replace"
			ev.fields = append(withUUID(head("replace")), bson.E{Key: "fullDocument", Value: op.O},
				bson.E{Key: "ns", Value: nsDoc(db, coll)}, bson.E{Key: "documentKey", Value: docKey})
		}
		return []changeEvent{ev}, nil
	case oplog.Command:
		return commandEvents(op, ev, scope, expanded, head, withUUID)
	}
	return nil, nil
}

func commandEvents(op oplog.Op, ev changeEvent, scope streamScope, expanded bool, head func(string) bson.D, withUUID func(bson.D) bson.D) ([]changeEvent, error) {
	db := ev.db
	first, err := op.O.IndexErr(0)
	if err != nil {
		return nil, badOplogEntry("an empty command")
	}
	invalidate := func(evs []changeEvent) []changeEvent {
		return append(evs, changeEvent{index: ev.index, kind: tokenInvalidate, fields: head("invalidate"), opType: "invalidate"})
	}
	switch first.Key() {
	case "drop":
		coll, _ := first.Value().StringValueOK()
		if !scope.covers(db, coll) {
			return nil, nil
		}
		ev.coll, ev.opType = coll, "drop"
		ev.fields = append(withUUID(head("drop")), bson.E{Key: "ns", Value: nsDoc(db, coll)})
		evs := []changeEvent{ev}
		if scope.coll != "" {
			evs = invalidate(evs)
		}
		return evs, nil
	case "renameCollection":
		from, _ := first.Value().StringValueOK()
		to, _ := op.O.Lookup("to").StringValueOK()
		fdb, fcoll := splitNS(from)
		tdb, tcoll := splitNS(to)
		if !scope.covers(fdb, fcoll) && !(scope.coll == "" && scope.covers(tdb, tcoll)) {
			return nil, nil
		}
		ev.db, ev.coll, ev.opType = fdb, fcoll, "rename"
		ev.fields = append(withUUID(head("rename")), bson.E{Key: "ns", Value: nsDoc(fdb, fcoll)}, bson.E{Key: "to", Value: nsDoc(tdb, tcoll)})
		evs := []changeEvent{ev}
		if scope.coll != "" {
			evs = invalidate(evs)
		}
		return evs, nil
	case "dropDatabase":
		if scope.db != "" && scope.db != db || scope.coll != "" {
			// A collection stream learns of it from its collection's drop,
			// which comes first.
			return nil, nil
		}
		if scope.db == "" && (db == "admin" || db == "config" || db == "local") {
			return nil, nil
		}
		ev.opType = "dropDatabase"
		ev.fields = append(head("dropDatabase"), bson.E{Key: "ns", Value: nsDoc(db, "")})
		evs := []changeEvent{ev}
		if scope.db != "" {
			evs = invalidate(evs)
		}
		return evs, nil
	}
	if !expanded {
		return nil, nil
	}
	// showExpandedEvents: the DDL events of MongoDB 6.0+.
	coll, _ := first.Value().StringValueOK()
	if !scope.covers(db, coll) {
		return nil, nil
	}
	var opType string
	var desc bson.D
	switch first.Key() {
	case "create":
		opType = "create"
		for _, el := range commandArgs(op.O) {
			desc = append(desc, bson.E{Key: el.Key(), Value: el.Value()})
		}
	case "createIndexes", "dropIndexes":
		opType = first.Key()
		spec := bson.D{}
		for _, el := range commandArgs(op.O) {
			if el.Key() == "index" {
				spec = append(spec, bson.E{Key: "name", Value: el.Value()})
				continue
			}
			spec = append(spec, bson.E{Key: el.Key(), Value: el.Value()})
		}
		desc = bson.D{{Key: "indexes", Value: bson.A{spec}}}
	case "collMod":
		opType = "modify"
		desc = bson.D{}
	default:
		return nil, nil
	}
	ev.coll, ev.opType = coll, opType
	ev.fields = append(withUUID(head(opType)), bson.E{Key: "ns", Value: nsDoc(db, coll)}, bson.E{Key: "operationDescription", Value: desc})
	return []changeEvent{ev}, nil
}

// commandArgs are a command's fields after its first (which names it).
func commandArgs(o bson.Raw) []bson.RawElement {
	els, _ := o.Elements()
	if len(els) < 2 {
		return nil
	}
	return els[1:]
}
