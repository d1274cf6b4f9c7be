package wire

import (
	"encoding/binary"
	"strings"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// OpQuery is a parsed legacy OP_QUERY. Since MongoDB 6.0 servers accept it
// only for the first handshake command (isMaster/hello against <db>.$cmd),
// which drivers still send that way when no server API version is declared.
type OpQuery struct {
	Flags                wiremessage.QueryFlag
	FullCollectionName   string
	NumberToSkip         int32
	NumberToReturn       int32
	Query                bsoncore.Document
	ReturnFieldsSelector bsoncore.Document // nil when absent
}

// ParseOpQuery parses and validates an OP_QUERY. Errors are *mongoerr.Error.
func ParseOpQuery(m *Message) (*OpQuery, error) {
	p := m.Body()
	var q OpQuery
	var f int32
	var ok bool
	truncated := func() (*OpQuery, error) {
		return nil, mongoerr.New(mongoerr.ProtocolError, "OP_QUERY is truncated")
	}
	if f, p, ok = readInt32(p); !ok {
		return truncated()
	}
	q.Flags = wiremessage.QueryFlag(f)
	if q.FullCollectionName, p, ok = readCString(p); !ok {
		return truncated()
	}
	if q.NumberToSkip, p, ok = readInt32(p); !ok {
		return truncated()
	}
	if q.NumberToReturn, p, ok = readInt32(p); !ok {
		return truncated()
	}
	doc, err := readSectionDocument(p)
	if err != nil {
		return nil, err
	}
	q.Query = doc
	p = p[len(doc):]
	if len(p) > 0 {
		if q.ReturnFieldsSelector, err = readSectionDocument(p); err != nil {
			return nil, err
		}
		if len(p) != len(q.ReturnFieldsSelector) {
			return nil, mongoerr.New(mongoerr.ProtocolError, "OP_QUERY has trailing bytes")
		}
	}
	return &q, nil
}

// CommandDB returns the database of a "<db>.$cmd" namespace.
func (q *OpQuery) CommandDB() (string, bool) {
	db, ok := strings.CutSuffix(q.FullCollectionName, ".$cmd")
	return db, ok && db != ""
}

// Command returns the command document, unwrapping the {$query: {...},
// $readPreference: ...} form drivers use when talking to mongos.
func (q *OpQuery) Command() bsoncore.Document {
	if d, ok := q.Query.Lookup("$query").DocumentOK(); ok {
		return d
	}
	return q.Query
}

// firstKey returns the first field name of doc, or "".
func firstKey(doc bsoncore.Document) string {
	e, err := doc.IndexErr(0)
	if err != nil {
		return ""
	}
	return e.Key()
}

// AppendOpReply appends a complete OP_REPLY carrying docs to dst.
func AppendOpReply(dst []byte, requestID, responseTo int32, flags wiremessage.ReplyFlag, docs ...[]byte) []byte {
	start := len(dst)
	_, dst = wiremessage.AppendHeaderStart(dst, requestID, responseTo, wiremessage.OpReply)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(flags))
	dst = binary.LittleEndian.AppendUint64(dst, 0) // cursorID
	dst = binary.LittleEndian.AppendUint32(dst, 0) // startingFrom
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(docs)))
	for _, d := range docs {
		dst = append(dst, d...)
	}
	return finishMessage(dst, start)
}

// AppendOpQuery appends a complete OP_QUERY to dst; servers never send one,
// but tests and tools build them.
func AppendOpQuery(dst []byte, requestID int32, flags wiremessage.QueryFlag, ns string, skip, limit int32, query []byte) []byte {
	start := len(dst)
	_, dst = wiremessage.AppendHeaderStart(dst, requestID, 0, wiremessage.OpQuery)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(flags))
	dst = append(dst, ns...)
	dst = append(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(skip))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(limit))
	dst = append(dst, query...)
	return finishMessage(dst, start)
}

// OpReply is a parsed OP_REPLY, for clients and tests.
type OpReply struct {
	Flags          wiremessage.ReplyFlag
	CursorID       int64
	StartingFrom   int32
	NumberReturned int32
	Documents      []bsoncore.Document
}

// ParseOpReply parses an OP_REPLY.
func ParseOpReply(m *Message) (*OpReply, error) {
	p := m.Body()
	if len(p) < 20 {
		return nil, mongoerr.New(mongoerr.ProtocolError, "OP_REPLY is truncated")
	}
	r := &OpReply{
		Flags:          wiremessage.ReplyFlag(int32(binary.LittleEndian.Uint32(p))),
		CursorID:       int64(binary.LittleEndian.Uint64(p[4:])),
		StartingFrom:   int32(binary.LittleEndian.Uint32(p[12:])),
		NumberReturned: int32(binary.LittleEndian.Uint32(p[16:])),
	}
	p = p[20:]
	for len(p) > 0 {
		d, err := readDocument(p, MaxBSONInternalSize)
		if err != nil {
			return nil, err
		}
		r.Documents = append(r.Documents, d)
		p = p[len(d):]
	}
	return r, nil
}

// compressedOriginalOpCode returns the opcode an OP_COMPRESSED wraps.
func compressedOriginalOpCode(m *Message) (wiremessage.OpCode, bool) {
	op, _, ok := readInt32(m.Body())
	return wiremessage.OpCode(op), ok
}
