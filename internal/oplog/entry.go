package oplog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Op kinds, MongoDB's.
const (
	Insert  = "i"
	Update  = "u"
	Delete  = "d"
	Command = "c"
	Noop    = "n"
)

// Op is one change, before the member gives it a place in the oplog.
type Op struct {
	Kind string
	NS   string // "db.coll"; "db.$cmd" for a command
	// UI is the collection's UUID (absent for a database command).
	UI *bson.Binary
	// O is the inserted document, the update's diff ({$v: 2, diff}) or
	// replacement document, the deleted document's {_id}, or the command.
	O bson.Raw
	// O2 is an update's {_id}.
	O2 bson.Raw
	// LSID is the logical session ({id, uid}) of a retryable write or a
	// transaction, with its TxnNumber; nil otherwise.
	LSID      bson.Raw
	TxnNumber int64
}

// Entry is an Op at its place in the oplog.
type Entry struct {
	Op
	TS   Timestamp
	Term int64
	Wall time.Time
}

// Doc renders e as MongoDB stores it in local.oplog.rs.
func (e Entry) Doc() (bson.Raw, error) {
	d := bson.D{
		{Key: "op", Value: e.Kind},
		{Key: "ns", Value: e.NS},
	}
	if e.UI != nil {
		d = append(d, bson.E{Key: "ui", Value: *e.UI})
	}
	d = append(d, bson.E{Key: "o", Value: e.O})
	if e.O2 != nil {
		d = append(d, bson.E{Key: "o2", Value: e.O2})
	}
	d = append(d,
		bson.E{Key: "ts", Value: bson.Timestamp{T: e.TS.T, I: e.TS.I}},
		bson.E{Key: "t", Value: e.Term},
		bson.E{Key: "v", Value: int64(2)},
		bson.E{Key: "wall", Value: bson.NewDateTimeFromTime(e.Wall)},
	)
	if e.LSID != nil {
		d = append(d, bson.E{Key: "lsid", Value: e.LSID}, bson.E{Key: "txnNumber", Value: e.TxnNumber})
	}
	return bson.Marshal(d)
}

var errBadEntry = errors.New("oplog: malformed entry")

// parseDoc reads back what Doc wrote.
func parseDoc(raw bson.Raw) (Entry, error) {
	if err := validate(raw); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", errBadEntry, err)
	}
	var e Entry
	var ok bool
	if e.Kind, ok = raw.Lookup("op").StringValueOK(); !ok {
		return Entry{}, fmt.Errorf("%w: op", errBadEntry)
	}
	if e.NS, ok = raw.Lookup("ns").StringValueOK(); !ok {
		return Entry{}, fmt.Errorf("%w: ns", errBadEntry)
	}
	if v, err := raw.LookupErr("ui"); err == nil {
		st, data, ok := v.BinaryOK()
		if !ok {
			return Entry{}, fmt.Errorf("%w: ui", errBadEntry)
		}
		e.UI = &bson.Binary{Subtype: st, Data: data}
	}
	if e.O, ok = raw.Lookup("o").DocumentOK(); !ok {
		return Entry{}, fmt.Errorf("%w: o", errBadEntry)
	}
	if v, err := raw.LookupErr("o2"); err == nil {
		if e.O2, ok = v.DocumentOK(); !ok {
			return Entry{}, fmt.Errorf("%w: o2", errBadEntry)
		}
	}
	t, i, ok := raw.Lookup("ts").TimestampOK()
	if !ok {
		return Entry{}, fmt.Errorf("%w: ts", errBadEntry)
	}
	e.TS = Timestamp{T: t, I: i}
	if e.Term, ok = raw.Lookup("t").Int64OK(); !ok {
		return Entry{}, fmt.Errorf("%w: t", errBadEntry)
	}
	w, ok := raw.Lookup("wall").DateTimeOK()
	if !ok {
		return Entry{}, fmt.Errorf("%w: wall", errBadEntry)
	}
	e.Wall = time.UnixMilli(w).UTC()
	if v, err := raw.LookupErr("lsid"); err == nil {
		if e.LSID, ok = v.DocumentOK(); !ok {
			return Entry{}, fmt.Errorf("%w: lsid", errBadEntry)
		}
		if e.TxnNumber, ok = raw.Lookup("txnNumber").Int64OK(); !ok {
			return Entry{}, fmt.Errorf("%w: txnNumber", errBadEntry)
		}
	}
	return e, nil
}

// validate checks raw is one well-formed BSON document. The driver's
// Validate (v2.5.0) panics on some malformed input — a document whose
// declared length is below 5 (found by FuzzParseDoc), an element whose
// length field is near 2^31 (FuzzUpdateO): a damaged stored value must be
// an error naming the entry, not a crash of the member, so a panic of
// Validate is recovered as that error.
func validate(raw bson.Raw) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed document: %v", r)
		}
	}()
	if len(raw) < 5 {
		return fmt.Errorf("%d bytes are too short for a document", len(raw))
	}
	if n := int32(binary.LittleEndian.Uint32(raw)); n < 5 {
		return fmt.Errorf("document length %d", n)
	}
	return raw.Validate()
}

// A stored value is the raft index of the log entry the change came from,
// then the entry as MongoDB stores it:
//
//	uvarint(raft index) | BSON document
//
// The index lets a restarted member cut the oplog back to what precedes
// the first entry it replays (Log.TrimFrom).
func encodeValue(index uint64, doc bson.Raw) []byte {
	out := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(doc)), index)
	return append(out, doc...)
}

func decodeValue(v []byte) (uint64, bson.Raw, error) {
	index, n := binary.Uvarint(v)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: index", errBadEntry)
	}
	return index, bson.Raw(v[n:]), nil
}

// Stored is an oplog entry as read back: its MongoDB document, and the
// raft index it came from.
type Stored struct {
	Entry
	Index uint64
	Raw   bson.Raw
}

// SessionMarker stands for a session's record in a batch that changed
// nothing else (a transaction's commit record, kept in admin): it is never
// written to the oplog, only read for the session (ApplyOps, and
// WithoutMarkers for plain batches).
func SessionMarker(lsid bson.Raw, txn int64) Op {
	return Op{Kind: Noop, LSID: lsid, TxnNumber: txn}
}

func (o Op) isSessionMarker() bool { return o.Kind == Noop && o.NS == "" && o.LSID != nil }

// WithoutMarkers drops the session markers from ops.
func WithoutMarkers(ops []Op) []Op {
	out := ops[:0:0]
	for _, op := range ops {
		if !op.isSessionMarker() {
			out = append(out, op)
		}
	}
	return out
}

// ApplyOps wraps a transaction's changes in one command entry, as MongoDB
// records a committed transaction: {applyOps: [change, …]} on admin.$cmd,
// with the transaction's session at the top level. Readers (change
// streams) unwind it into one event per change.
func ApplyOps(ops []Op) (Op, error) {
	arr := make(bson.A, 0, len(ops))
	var lsid bson.Raw
	var txn int64
	for _, op := range ops {
		if op.LSID != nil && lsid == nil {
			lsid, txn = op.LSID, op.TxnNumber
		}
		if op.isSessionMarker() {
			continue
		}
		d := bson.D{{Key: "op", Value: op.Kind}, {Key: "ns", Value: op.NS}}
		if op.UI != nil {
			d = append(d, bson.E{Key: "ui", Value: *op.UI})
		}
		d = append(d, bson.E{Key: "o", Value: op.O})
		if op.O2 != nil {
			d = append(d, bson.E{Key: "o2", Value: op.O2})
		}
		arr = append(arr, d)
	}
	o, err := bson.Marshal(bson.D{{Key: "applyOps", Value: arr}})
	if err != nil {
		return Op{}, fmt.Errorf("oplog: applyOps: %w", err)
	}
	return Op{Kind: Command, NS: "admin.$cmd", O: o, LSID: lsid, TxnNumber: txn}, nil
}
