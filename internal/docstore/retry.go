package docstore

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Retryable writes. A write command sent with a session id (lsid) and a
// transaction number may be sent again by a driver that lost the reply
// (a failover, a dropped connection). Its reply is kept in the same batch
// as its writes, under the session, so it is committed — and replicated —
// exactly when they are: a retry finds it and is answered from it instead
// of writing twice.
//
// Key: prefixRetry | lsid. Value: BSON {txnNumber: int64, reply: document}.
// Only a session's latest retryable write is kept.
const prefixRetry = 0x03

func retryKey(lsid []byte) []byte { return append([]byte{prefixRetry}, lsid...) }

type retryRecord struct {
	TxnNumber int64    `bson:"txnNumber"`
	Reply     bson.Raw `bson:"reply"`
}

// RetryRecord returns the latest retryable write recorded for session
// lsid: its transaction number and reply. ok is false when none is.
func (s *Store) RetryRecord(lsid []byte) (txn int64, reply bson.Raw, ok bool, err error) {
	v, closer, err := s.db.Get(retryKey(lsid))
	if err == pebble.ErrNotFound {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("docstore: retryable write record: %w", err)
	}
	defer closer.Close()
	var r retryRecord
	if err := bson.Unmarshal(v, &r); err != nil {
		return 0, nil, false, fmt.Errorf("docstore: retryable write record: %w", err)
	}
	return r.TxnNumber, append(bson.Raw(nil), r.Reply...), true, nil
}

// PutRetryRecord stages, in this write's batch, the reply a retry of the
// session's write number txn must get.
func (w *Writer) PutRetryRecord(lsid []byte, txn int64, reply bson.Raw) error {
	v, err := bson.Marshal(retryRecord{TxnNumber: txn, Reply: reply})
	if err != nil {
		return err
	}
	return w.b.Set(retryKey(lsid), v, nil)
}
