package handlers

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/oplog"
)

// oplogOps renders the changes a replicated batch made to database db as
// MongoDB's oplog entries (before their timestamps, which the log gives).
func oplogOps(db string, changes []docstore.Change) ([]oplog.Op, error) {
	ops := make([]oplog.Op, 0, len(changes))
	cmdNS := db + ".$cmd"
	for _, c := range changes {
		if c.Kind == docstore.ChangeSession {
			continue // below
		}
		ui := c.Coll.UUID
		ns := db + "." + c.Coll.Name
		var op oplog.Op
		var err error
		switch c.Kind {
		case docstore.ChangeInsert:
			op = oplog.Op{Kind: oplog.Insert, NS: ns, UI: &ui, O: c.After}
			op.O2, err = idDoc(c.After)
		case docstore.ChangeUpdate:
			op = oplog.Op{Kind: oplog.Update, NS: ns, UI: &ui}
			if op.O, err = oplog.UpdateO(c.Before, c.After); err == nil {
				op.O2, err = idDoc(c.After)
			}
		case docstore.ChangeReplace:
			op = oplog.Op{Kind: oplog.Update, NS: ns, UI: &ui, O: c.After}
			op.O2, err = idDoc(c.After)
		case docstore.ChangeDelete:
			op = oplog.Op{Kind: oplog.Delete, NS: ns, UI: &ui}
			op.O, err = idDoc(c.Before)
		case docstore.ChangeCreate:
			o := bson.D{{Key: "create", Value: c.Coll.Name}}
			if c.Coll.Capped() {
				o = append(o, bson.E{Key: "capped", Value: true}, bson.E{Key: "size", Value: c.Coll.Options.Size})
				if c.Coll.Options.Max > 0 {
					o = append(o, bson.E{Key: "max", Value: c.Coll.Options.Max})
				}
			}
			o = append(o, bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
			op = oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui}
			op.O, err = bson.Marshal(o)
		case docstore.ChangeDrop:
			op = oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui}
			op.O, err = bson.Marshal(bson.D{{Key: "drop", Value: c.Coll.Name}})
		case docstore.ChangeRename:
			op = oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui}
			op.O, err = bson.Marshal(bson.D{{Key: "renameCollection", Value: ns}, {Key: "to", Value: db + "." + c.To.Name}, {Key: "stayTemp", Value: false}})
		case docstore.ChangeCreateIndexes:
			for _, ix := range c.Indexes {
				o := bson.D{{Key: "createIndexes", Value: c.Coll.Name}, {Key: "v", Value: int32(2)}, {Key: "key", Value: ix.Key}, {Key: "name", Value: ix.Name}}
				o = appendTextOptions(append(o, ix.Options()...), &ix)
				raw, err := bson.Marshal(o)
				if err != nil {
					return nil, err
				}
				ops = append(ops, oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui, O: raw})
			}
			continue
		case docstore.ChangeDropIndexes:
			for _, ix := range c.Indexes {
				raw, err := bson.Marshal(bson.D{{Key: "dropIndexes", Value: c.Coll.Name}, {Key: "index", Value: ix.Name}})
				if err != nil {
					return nil, err
				}
				ops = append(ops, oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui, O: raw})
			}
			continue
		case docstore.ChangeModify:
			op = oplog.Op{Kind: oplog.Command, NS: cmdNS, UI: &ui}
			op.O, err = bson.Marshal(bson.D{{Key: "collMod", Value: c.Coll.Name}})
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		ops = append(ops, op)
	}
	// A session's write: every entry names the session, as MongoDB's do.
	for _, c := range changes {
		if c.Kind == docstore.ChangeSession {
			lsid := sessionDoc(c.Session.LSID)
			for i := range ops {
				ops[i].LSID, ops[i].TxnNumber = lsid, c.Session.TxnNumber
			}
			if len(ops) == 0 {
				ops = append(ops, oplog.SessionMarker(lsid, c.Session.TxnNumber))
			}
		}
	}
	return ops, nil
}

// sessionDoc renders a session id as MongoDB's lsid: {id: UUID, uid:
// digest of the user} (docstore.Session.LSID holds both, concatenated).
func sessionDoc(lsid []byte) bson.Raw {
	d := bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: lsid[:min(16, len(lsid))]}}}
	if len(lsid) > 16 {
		d = append(d, bson.E{Key: "uid", Value: bson.Binary{Subtype: bson.TypeBinaryGeneric, Data: lsid[16:]}})
	}
	raw, _ := bson.Marshal(d)
	return raw
}

// idDoc is {_id: <the document's _id>}.
func idDoc(doc bson.Raw) (bson.Raw, error) {
	id, err := docstore.IDOf(doc)
	if err != nil {
		return nil, err
	}
	return bson.Marshal(bson.D{{Key: "_id", Value: id}})
}

// dropDatabaseOps is the oplog's record of dropping database db whose
// collections are colls: each collection's drop, then the database's.
func dropDatabaseOps(db string, colls []*docstore.Collection) ([]oplog.Op, error) {
	var ops []oplog.Op
	for _, c := range colls {
		ui := c.UUID
		o, err := bson.Marshal(bson.D{{Key: "drop", Value: c.Name}})
		if err != nil {
			return nil, err
		}
		ops = append(ops, oplog.Op{Kind: oplog.Command, NS: db + ".$cmd", UI: &ui, O: o})
	}
	o, err := bson.Marshal(bson.D{{Key: "dropDatabase", Value: int32(1)}})
	if err != nil {
		return nil, err
	}
	return append(ops, oplog.Op{Kind: oplog.Command, NS: db + ".$cmd", O: o}), nil
}
