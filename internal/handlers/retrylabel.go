package handlers

import (
	"errors"
	"slices"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// retryableWriteCodes are the errors after which a retryable write may be
// sent again to the (new) primary: the server refusing it was not, or
// stopped being, the primary, or was shutting down (the retryable writes
// specification's list, as mongod labels them).
var retryableWriteCodes = []mongoerr.Code{
	mongoerr.NotWritablePrimary, mongoerr.NotPrimaryNoSecondaryOk, 13436, // NotPrimaryOrSecondary
	mongoerr.InterruptedDueToReplStateChange, 11600, // InterruptedAtShutdown
	91,                    // ShutdownInProgress
	mongoerr.NodeDisabled, // PrimarySteppedDown's code
	6, 7, 89, 9001,        // HostUnreachable, HostNotFound, NetworkTimeout, SocketException
	mongoerr.ExceededTimeLimit,
}

// labelRetryableWrite adds the RetryableWriteError label to err when req
// is a retryable write (a write command with a txnNumber outside a
// transaction, or commitTransaction/abortTransaction) and err is one of
// retryableWriteCodes. Drivers speaking wire version 9 and later retry a
// write on that label alone, not on the code: without it a write refused
// by a primary that just stepped down reaches the application.
func labelRetryableWrite(req *wire.Request, err error) error {
	var me *mongoerr.Error
	if !errors.As(err, &me) || !slices.Contains(retryableWriteCodes, me.Code) || slices.Contains(me.Labels, mongoerr.RetryableWriteError) {
		return err
	}
	switch {
	case req.Name == "commitTransaction" || req.Name == "abortTransaction":
	case retryableCommands[req.Name]:
		if _, lerr := req.Command.LookupErr("txnNumber"); lerr != nil {
			return err
		}
		if _, lerr := req.Command.LookupErr("autocommit"); lerr == nil {
			return err // a transaction's statement: TransientTransactionError's business
		}
	default:
		return err
	}
	return me.WithLabels(mongoerr.RetryableWriteError)
}
