package handlers

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// genericFields are the fields any command may carry (mongod's generic
// arguments: sessions, transactions, API version, read and write concern,
// gossiped cluster times, comments). Each command's own fields are listed
// next to its handler; anything else is refused as mongod's IDL parser
// refuses it, so that an option cmkdb does not know is never silently
// ignored.
var genericFields = map[string]bool{
	"$db": true, "lsid": true, "txnNumber": true, "autocommit": true, "startTransaction": true,
	"stmtId": true, "$clusterTime": true, "$readPreference": true, "$client": true, "$audit": true,
	"$configServerState": true, "$configTime": true, "$topologyTime": true, "$oplogQueryData": true,
	"$replData": true, "$queryOptions": true, "$gleStats": true, "apiVersion": true, "apiStrict": true,
	"apiDeprecationErrors": true, "comment": true, "maxTimeMS": true, "readConcern": true,
	"writeConcern": true, "mayBypassWriteBlocking": true, "clientOperationKey": true,
	"txnRetryCounter": true,
}

// Each command's own top-level fields, from mongod 7.0's command
// definitions. Fields a command accepts but cmkdb cannot honour are listed
// here and refused where they are read, with a precise error.
var commandFields = map[string][]string{
	"find": {"filter", "projection", "sort", "hint", "skip", "limit", "batchSize", "singleBatch",
		"max", "min", "returnKey", "showRecordId", "tailable", "oplogReplay", "noCursorTimeout",
		"awaitData", "allowPartialResults", "collation", "allowDiskUse", "let", "readOnce"},
	"aggregate": {"pipeline", "explain", "allowDiskUse", "cursor", "bypassDocumentValidation",
		"collation", "hint", "let"},
	"update":        {"updates", "ordered", "bypassDocumentValidation", "let"},
	"delete":        {"deletes", "ordered", "let"},
	"insert":        {"documents", "ordered", "bypassDocumentValidation"},
	"count":         {"query", "limit", "skip", "hint", "collation", "fields"}, // fields: a projection mongod ignores
	"distinct":      {"key", "query", "collation"},
	"findAndModify": {"query", "fields", "sort", "remove", "update", "new", "upsert", "bypassDocumentValidation", "collation", "arrayFilters", "hint", "let"},
	"create": {"capped", "autoIndexId", "idIndex", "size", "max", "storageEngine", "validator",
		"validationLevel", "validationAction", "indexOptionDefaults", "viewOn", "pipeline", "collation",
		"timeseries", "clusteredIndex", "changeStreamPreAndPostImages", "expireAfterSeconds",
		"encryptedFields", "temp", "flags"},
	"dbStats":   {"scale", "freeStorage"},
	"collStats": {"scale"},
	"dataSize":  {"keyPattern", "min", "max", "estimate"},
	"validate":  {"full", "repair", "metadata", "background", "checkBSONConformance", "enforceFastCount", "scandata"},
	"fsync":     {"lock", "fsyncLockAcquisitionTimeoutMillis"},
	"collMod": {"validator", "validationLevel", "validationAction", "index", "viewOn", "pipeline",
		"expireAfterSeconds", "timeseries", "changeStreamPreAndPostImages", "cappedSize", "cappedMax",
		"recordPreImages", "dryRun"},
}

// checkFields refuses fields that are neither generic nor the command's
// own (mongod: 40415 "BSON field 'find.foo' is an unknown field.").
// Document sequences (insert's documents, update's updates) arrive merged
// into the command and are ordinary fields here.
func checkFields(a args, command string) error {
	own := commandFields[command]
	elems, err := a.cmd.Elements()
	if err != nil {
		return mongoerr.New(mongoerr.BadValue, "invalid command document: %v", err)
	}
	for i, e := range elems {
		k := e.Key()
		if i == 0 || genericFields[k] || contains(own, k) {
			continue
		}
		return mongoerr.New(codeUnknownField, "BSON field '%s.%s' is an unknown field.", command, k)
	}
	return checkReadConcern(a, command)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// codeNotAReplicaSet is mongod's NotAReplicaSet (123).
const codeNotAReplicaSet = mongoerr.NotAReplicaSet

// checkReadConcern accepts the read concern levels a standalone mongod
// serves (local, available, majority: one node's committed data is all
// three) and refuses the ones that need a replica set, with a standalone
// mongod's errors.
func checkReadConcern(a args, command string) error {
	v, ok := a.value("readConcern")
	if !ok || v.Type == bson.TypeNull {
		return nil
	}
	rc, ok := v.DocumentOK()
	if !ok {
		return mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.readConcern' is the wrong type '%s', expected type 'object'", command, typeName(v.Type))
	}
	elems, err := rc.Elements()
	if err != nil {
		return mongoerr.New(mongoerr.BadValue, "invalid readConcern: %v", err)
	}
	for _, e := range elems {
		switch e.Key() {
		case "level":
			lv, ok := e.Value().StringValueOK()
			if !ok {
				return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'readConcern.level' is the wrong type '%s', expected type 'string'", typeName(e.Value().Type))
			}
			switch lv {
			case "local", "available", "majority":
			case "snapshot":
				// A standalone mongod has no snapshot history to read at.
				return mongoerr.New(codeNotAReplicaSet, "node needs to be a replica set member to use read concern")
			case "linearizable":
				// Served (or refused on a standalone node) before the
				// command runs: readConcernLinearizable in replset.go.
			default:
				return mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field 'readConcern.level' is not a valid value.", lv)
			}
		case "afterClusterTime", "atClusterTime", "afterOpTime":
			return mongoerr.New(codeNotAReplicaSet, "node needs to be a replica set member to use read concern")
		case "provenance":
		default:
			return mongoerr.New(codeUnknownField, "BSON field 'readConcern.%s' is an unknown field.", e.Key())
		}
	}
	return nil
}
