package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// A cmkdb node is a standalone server: it has no oplog, so it can neither
// run multi-document transactions nor remember retryable writes. It
// answers both as a standalone mongod 7.0 does, before the command runs,
// so a transaction's writes are never applied outside a transaction.
// hello advertises no setName (no replica set), so drivers send no
// txnNumber for retryable writes; logicalSessionTimeoutMinutes only lets
// them use sessions (lsid), which are stateless here.

const txnNumbersNeedReplicaSet = "Transaction numbers are only allowed on a replica set member or mongos"

// checkSessionFields refuses a command carrying a transaction number (a
// transaction statement or a retryable write) and the transaction fields
// that need one, with mongod's codes.
//
// A replica set member accepts the transaction number of a retryable
// write (retryable.go) and of a transaction statement (transaction.go).
func checkSessionFields(name string, cmd bson.Raw, replicaSet bool) error {
	has := func(key string) bool { _, err := cmd.LookupErr(key); return err == nil }
	if has("txnNumber") {
		if !has("lsid") {
			return mongoerr.New(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
		}
		if replicaSet && retryableCommands[name] && !has("autocommit") && !has("startTransaction") {
			return nil // a retryable write (retryable.go)
		}
		if replicaSet && has("autocommit") {
			return nil // a transaction statement (transaction.go)
		}
		if replicaSet {
			return mongoerr.New(mongoerr.InvalidOptions,
				"txnNumber may only be provided for multi-document transactions and retryable write commands. autocommit:false was not provided, and %s is not a retryable write command.", name)
		}
		return mongoerr.New(mongoerr.IllegalOperation, txnNumbersNeedReplicaSet)
	}
	if has("autocommit") {
		return mongoerr.New(mongoerr.InvalidOptions, "'autocommit' field requires a transaction number to also be specified")
	}
	if has("startTransaction") {
		return mongoerr.New(mongoerr.InvalidOptions, "'startTransaction' field requires 'autocommit' field to also be specified")
	}
	return nil
}

// refuseTransaction is commitTransaction and abortTransaction sent
// without a transaction's fields (those with them run in
// runTxnStatement), or on a standalone node, where no transaction can
// have started.
func (h *Handler) refuseTransaction(_ context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if h.opts.Repl != nil {
		return nil, mongoerr.New(50768, "%s must be run within a transaction", req.Name)
	}
	return nil, mongoerr.New(mongoerr.IllegalOperation, txnNumbersNeedReplicaSet)
}
