package e2e

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// header builds a 16-byte wire message header.
func header(length, requestID, responseTo int32, op wiremessage.OpCode) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[0:], uint32(length))
	binary.LittleEndian.PutUint32(b[4:], uint32(requestID))
	binary.LittleEndian.PutUint32(b[8:], uint32(responseTo))
	binary.LittleEndian.PutUint32(b[12:], uint32(op))
	return b
}

// opMsg builds an OP_MSG with one body section holding body (raw bytes, so
// they may be invalid BSON).
func opMsg(body []byte) []byte {
	msg := header(int32(16+4+1+len(body)), 7, 0, wiremessage.OpMsg)
	msg = append(msg, 0, 0, 0, 0) // flags
	msg = append(msg, 0)          // section kind 0
	return append(msg, body...)
}

// serverAddr returns host:port from the connection string.
func serverAddr(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// expectCloseOrError sends payload on a fresh connection and waits, within
// a deadline, for the server to close the connection or answer with an
// error reply (ok: 0). It fails on a reply claiming success, and when the
// server neither closes nor answers.
func expectCloseOrError(t *testing.T, addr string, payload []byte, halfClose bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(payload); err != nil {
		return // the server already closed: fine
	}
	if halfClose {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	var lenBuf [4]byte
	_, err = io.ReadFull(conn, lenBuf[:])
	var ne net.Error
	switch {
	case err == nil:
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the server neither answered nor closed the connection within the deadline")
	default:
		return // EOF or reset: closed
	}
	n := int32(binary.LittleEndian.Uint32(lenBuf[:]))
	if n < 16 || n > 48<<20 {
		t.Fatalf("reply with length %d", n)
	}
	rest := make([]byte, n-4)
	if _, err := io.ReadFull(conn, rest); err != nil {
		t.Fatalf("truncated reply: %v", err)
	}
	reply := append(lenBuf[:], rest...)
	if doc, ok := replyDocument(reply); ok {
		if okv, _ := doc.Lookup("ok").AsFloat64OK(); okv != 0 {
			t.Fatalf("a malformed message got a successful reply: %s", doc)
		}
	}
}

// replyDocument extracts the body document from an OP_MSG or OP_REPLY.
func replyDocument(msg []byte) (bsoncore.Document, bool) {
	_, _, _, op, rem, ok := wiremessage.ReadHeader(msg)
	if !ok {
		return nil, false
	}
	switch op {
	case wiremessage.OpMsg:
		_, rem, ok = wiremessage.ReadMsgFlags(rem)
		if !ok {
			return nil, false
		}
		for len(rem) > 0 {
			var kind wiremessage.SectionType
			kind, rem, ok = wiremessage.ReadMsgSectionType(rem)
			if !ok {
				return nil, false
			}
			if kind == wiremessage.SingleDocument {
				doc, _, ok := wiremessage.ReadMsgSectionSingleDocument(rem)
				return doc, ok
			}
			return nil, false
		}
	case wiremessage.OpReply:
		_, rem, ok = wiremessage.ReadReplyFlags(rem)
		if !ok {
			return nil, false
		}
		_, rem, _ = wiremessage.ReadReplyCursorID(rem)
		_, rem, _ = wiremessage.ReadReplyStartingFrom(rem)
		_, rem, _ = wiremessage.ReadReplyNumberReturned(rem)
		doc, _, ok := bsoncore.ReadDocument(rem)
		return doc, ok
	}
	return nil, false
}

func TestMalformedInput(t *testing.T) {
	s := startServer(t, "--key-check-interval", "1h")
	addr := serverAddr(t, s.URI)
	good := connect(t, s.URI)
	coll := good.Database("malformed").Collection("c")
	if _, err := coll.InsertOne(opCtx(t), bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}

	// A connection left holding half a message must not stall anyone else.
	stalled, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, err := stalled.Write(header(200, 1, 0, wiremessage.OpMsg)[:10]); err != nil {
		t.Fatal(err)
	}

	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*131 + 7)
	}
	validPing, err := bson.Marshal(bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	badBSON := append([]byte(nil), validPing...)
	binary.LittleEndian.PutUint32(badBSON, uint32(len(badBSON)+50)) // document length lies
	cases := []struct {
		name      string
		payload   []byte
		halfClose bool
	}{
		{"Garbage", garbage, false},
		{"HTTPRequest", []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), false},
		{"LengthTooSmall", header(3, 1, 0, wiremessage.OpMsg), false},
		{"NegativeLength", header(-100, 1, 0, wiremessage.OpMsg), false},
		{"LengthTooLarge", header(0x7fff0000, 1, 0, wiremessage.OpMsg), false},
		{"UnknownOpCode", append(header(16+8, 1, 0, 9999), make([]byte, 8)...), false},
		{"BadBSONBody", opMsg(badBSON), false},
		{"BodyNotADocument", opMsg([]byte{5, 0, 0, 0, 1}), false},
		{"UnknownSectionKind", append(header(int32(16+4+1+len(validPing)), 1, 0, wiremessage.OpMsg), append([]byte{0, 0, 0, 0, 9}, validPing...)...), false},
		{"UnknownRequiredFlag", append(header(int32(16+4+1+len(validPing)), 1, 0, wiremessage.OpMsg), append([]byte{0x40, 0, 0, 0, 0}, validPing...)...), false},
		{"TruncatedThenEOF", opMsg(validPing)[:20], true},
		{"HeaderOnlyThenEOF", header(100, 1, 0, wiremessage.OpMsg), true},
		{"Compressed", append(header(int32(16+9+len(validPing)), 1, 0, wiremessage.OpCompressed), append([]byte{0xdd, 7, 0, 0, byte(len(validPing)), 0, 0, 0, 0}, validPing...)...), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectCloseOrError(t, addr, tc.payload, tc.halfClose)
			// Another client keeps working, on its existing and on new connections.
			if err := good.Ping(opCtx(t), nil); err != nil {
				t.Fatalf("ping after %s: %v", tc.name, err)
			}
			if n, err := coll.CountDocuments(opCtx(t), bson.D{}); err != nil || n != 1 {
				t.Fatalf("count after %s: %d, %v", tc.name, n, err)
			}
			fresh := connect(t, s.URI)
			if err := fresh.Database("malformed").Collection("c").FindOne(opCtx(t), bson.D{{Key: "_id", Value: 1}}).Err(); err != nil {
				t.Fatalf("find on a new client after %s: %v", tc.name, err)
			}
		})
	}
	if !s.Running() {
		t.Fatalf("the server exited:\n%s", s.Output.String())
	}
	// A well-formed message on a raw connection still works: the ping reply
	// is ok: 1 (so the checks above really told errors from successes).
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(opMsg(validPing)); err != nil {
		t.Fatal(err)
	}
	var lenBuf [4]byte
	if _, err := io.ReadFull(conn, lenBuf[:]); err != nil {
		t.Fatalf("raw ping: %v", err)
	}
	rest := make([]byte, binary.LittleEndian.Uint32(lenBuf[:])-4)
	if _, err := io.ReadFull(conn, rest); err != nil {
		t.Fatal(err)
	}
	doc, ok := replyDocument(append(lenBuf[:], rest...))
	if !ok {
		t.Fatal("raw ping: unreadable reply")
	}
	if v, _ := doc.Lookup("ok").AsFloat64OK(); v != 1 {
		t.Fatalf("raw ping reply: %s", doc)
	}
}
