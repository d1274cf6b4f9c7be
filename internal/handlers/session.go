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

// txnNumbersUnsupported starts as mongod's message does, which is what
// drivers recognise to tell the user to turn retryable writes off.
const txnNumbersUnsupported = "Transaction numbers are not supported by cmkdb replica sets yet: retryable writes and transactions are refused (use retryWrites=false)"

// checkSessionFields refuses a command carrying a transaction number (a
// transaction statement or a retryable write) and the transaction fields
// that need one, with mongod's codes.
//
// A replica set member refuses them too (its log has no session records
// yet, so a retried write could apply twice); drivers turn the refusal
// into "add retryWrites=false to your connection string", which cmkdb's
// connection strings for replica sets already carry.
func checkSessionFields(cmd bson.Raw, replicaSet bool) error {
	has := func(key string) bool { _, err := cmd.LookupErr(key); return err == nil }
	if has("txnNumber") {
		if !has("lsid") {
			return mongoerr.New(mongoerr.InvalidOptions, "Transaction number requires a session ID to also be specified")
		}
		if replicaSet {
			return mongoerr.New(mongoerr.IllegalOperation, txnNumbersUnsupported)
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

// refuseTransaction is commitTransaction and abortTransaction: no
// transaction can have started, so there is none to end.
func (h *Handler) refuseTransaction(_ context.Context, _ *wire.ConnState, _ *wire.Request) (bson.Raw, error) {
	if h.opts.Repl != nil {
		return nil, mongoerr.New(mongoerr.IllegalOperation, txnNumbersUnsupported)
	}
	return nil, mongoerr.New(mongoerr.IllegalOperation, txnNumbersNeedReplicaSet)
}
