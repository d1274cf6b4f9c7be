package handlers

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// writeBatch reads the parts every write command (insert, update, delete)
// shares: the target collection, the statement array under field (within
// mongod's batch limits) and the ordered flag.
func writeBatch(a args, field string) (coll string, stmts []bson.RawValue, ordered bool, err error) {
	if coll, err = a.collection(); err != nil {
		return "", nil, false, err
	}
	if err = docstore.ValidateCollectionName(coll); err != nil {
		return "", nil, false, err
	}
	if !a.has(field) {
		return "", nil, false, mongoerr.New(codeMissingField, "BSON field '%s.%s' is missing but a required field", a.name, field)
	}
	if stmts, err = a.array(field); err != nil {
		return "", nil, false, err
	}
	if len(stmts) == 0 || len(stmts) > maxWriteBatch {
		return "", nil, false, mongoerr.New(mongoerr.InvalidLength, "Write batch sizes must be between 1 and %d. Got %d operations.", maxWriteBatch, len(stmts))
	}
	if ordered, err = a.bool("ordered", true); err != nil {
		return "", nil, false, err
	}
	return coll, stmts, ordered, nil
}

// runStatements runs statements 0..n-1 in order with MongoDB's write
// semantics: a statement's failure is a write error recorded against its
// index, and an ordered batch stops at the first one; a storage failure
// (node disabled, I/O error) fails the whole command.
func runStatements(n int, ordered bool, run func(i int) error) ([]writeError, error) {
	var werrs []writeError
	for i := 0; i < n; i++ {
		if err := run(i); err != nil {
			if isStorageFailure(err) {
				return werrs, err
			}
			werrs = append(werrs, writeError{index: i, err: err})
			if ordered {
				break
			}
		}
	}
	return werrs, nil
}

// writeReply renders a write command's reply: the counts given (n first),
// then writeErrors if any, then ok.
func writeReply(counts bson.D, werrs []writeError) (bson.Raw, error) {
	reply := counts
	if len(werrs) > 0 {
		reply = append(reply, bson.E{Key: "writeErrors", Value: writeErrorsDoc(werrs)})
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}
