package handlers

import (
	"context"
	"errors"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/storage"
	"github.com/cmkdb/cmkdb/internal/wire"
)

func (h *Handler) listDatabases(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	nameOnly, err := a.bool("nameOnly", false)
	if err != nil {
		return nil, err
	}
	filter, err := a.doc("filter")
	if err != nil {
		return nil, err
	}
	m, err := query.Compile(filter)
	if err != nil {
		return nil, err
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	// A restore's staging databases are the replica set's, not a user's.
	names := slices.DeleteFunc(eng.Databases(), repl.IsStaging)
	dbs := bson.A{}
	var total int64
	for _, name := range names {
		d := bson.D{{Key: "name", Value: name}}
		if !nameOnly {
			// What the database's files take on disk (sstables,
			// write-ahead log, manifest), as mongod reports its files'.
			db, err := eng.Database(name)
			if err != nil {
				return nil, err
			}
			size := db.DiskUsage()
			d = append(d, bson.E{Key: "sizeOnDisk", Value: size}, bson.E{Key: "empty", Value: size == 0})
		}
		raw, _ := bson.Marshal(d)
		if m.Match(raw) {
			dbs = append(dbs, d)
			if !nameOnly {
				total += d[1].Value.(int64)
			}
		}
	}
	reply := bson.D{{Key: "databases", Value: dbs}}
	if !nameOnly {
		reply = append(reply, bson.E{Key: "totalSize", Value: total})
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}

func (h *Handler) listCollections(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	filter, err := a.doc("filter")
	if err != nil {
		return nil, err
	}
	m, err := query.Compile(filter)
	if err != nil {
		return nil, err
	}
	nameOnly, _ := a.bool("nameOnly", false)
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	var docs []bson.Raw
	if st != nil {
		for _, coll := range st.Collections() {
			d := bson.D{{Key: "name", Value: coll.Name}, {Key: "type", Value: "collection"}}
			if !nameOnly {
				d = append(d,
					bson.E{Key: "options", Value: coll.Options.Document()},
					bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: false}, {Key: "uuid", Value: coll.UUID}}},
					bson.E{Key: "idIndex", Value: bson.D{{Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "_id", Value: int32(1)}}}, {Key: "name", Value: "_id_"}}})
			}
			raw, err := bson.Marshal(d)
			if err != nil {
				release()
				return nil, err
			}
			if m.Match(raw) {
				docs = append(docs, raw)
			}
		}
	}
	release()
	if rs := h.opts.Repl; rs != nil && req.DB == "local" {
		// A member's oplog is a collection of local (oplogfind.go): tools
		// look for it by name (mongosh's db.getReplicationInfo()).
		d := bson.D{{Key: "name", Value: oplogColl}, {Key: "type", Value: "collection"}}
		if !nameOnly {
			var maxBytes int64
			if l := rs.Oplog(); l != nil {
				maxBytes = l.Limits().MaxBytes
			}
			d = append(d,
				bson.E{Key: "options", Value: bson.D{{Key: "capped", Value: true}, {Key: "size", Value: maxBytes}}},
				bson.E{Key: "info", Value: bson.D{{Key: "readOnly", Value: true}}})
		}
		raw, err := bson.Marshal(d)
		if err != nil {
			return nil, err
		}
		if m.Match(raw) {
			docs = append(docs, raw)
		}
	}
	cur, err := a.doc("cursor")
	if err != nil {
		return nil, err
	}
	batchSize, err := cursorOptionBatchSize(cur, "listCollections")
	if err != nil {
		return nil, err
	}
	return h.firstBatch(ctx, req.DB+".$cmd.listCollections", c, &sliceSource{docs: docs}, batchSize)
}

func (h *Handler) drop(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	coll, err := newArgs(req.Command).collection()
	if err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	// Dropping a collection that does not exist succeeds, as in MongoDB
	// 7.0 (earlier servers answered 26 NamespaceNotFound).
	var before *docstore.Collection
	if st != nil {
		before = st.Collection(coll)
	}
	if before == nil {
		return marshal(bson.D{{Key: "ok", Value: 1.0}})
	}
	if err := st.DropCollection(coll); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "nIndexesWas", Value: int32(len(before.Indexes))}, {Key: "ns", Value: req.DB + "." + coll}, {Key: "ok", Value: 1.0}})
}

// dropDatabase crypto-shreds the database: its key is destroyed first, so
// its files are unreadable even if their deletion is interrupted.
func (h *Handler) dropDatabase(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if err := validateDBName(req.DB); err != nil {
		return nil, err
	}
	if h.opts.Repl != nil && req.DB == "local" {
		// It holds this member's raft log.
		return nil, mongoerr.New(mongoerr.IllegalOperation, "Cannot drop 'local' database while replication is active")
	}
	if h.opts.Repl != nil {
		// Every member drops it, each destroying its own key (DropReplicated).
		if err := h.opts.Repl.DropDatabase(ctx, req.DB); err != nil {
			return nil, err
		}
		return marshal(bson.D{{Key: "dropped", Value: req.DB}, {Key: "ok", Value: 1.0}})
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, acquireError(err)
	}
	defer release()
	h.dropStore(req.DB)
	if err := eng.DropDatabase(req.DB); errors.Is(err, storage.ErrDatabaseBusy) {
		// An in-place re-encryption is copying it (node/reencrypt.go).
		return nil, mongoerr.New(mongoerr.BackgroundOperationInProgressForDatabase,
			"Cannot drop database %s: the node is re-encrypting it into a new key hierarchy; retry when the re-encryption ends", req.DB)
	} else if err != nil && !strings.Contains(err.Error(), "no such database") {
		return nil, err
	}
	h.dropStore(req.DB)
	return marshal(bson.D{{Key: "dropped", Value: req.DB}, {Key: "ok", Value: 1.0}})
}

func (h *Handler) renameCollection(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if req.DB != "admin" {
		return nil, mongoerr.New(mongoerr.Unauthorized, "renameCollection may only be run against the admin database.")
	}
	a := newArgs(req.Command)
	from, err := a.collection()
	if err != nil {
		return nil, err
	}
	to, err := a.string("to")
	if err != nil {
		return nil, err
	}
	dropTarget, _ := a.bool("dropTarget", false)
	fromDB, fromColl, ok1 := strings.Cut(from, ".")
	toDB, toColl, ok2 := strings.Cut(to, ".")
	if !ok1 || !ok2 {
		return nil, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", from)
	}
	if fromDB != toDB {
		return nil, mongoerr.New(mongoerr.IllegalOperation, "renaming a collection across databases is not supported (each database has its own encryption key)")
	}
	st, release, err := h.store(fromDB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if st == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "Source collection %s does not exist", from)
	}
	if err := st.RenameCollection(fromColl, toColl, dropTarget); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}
