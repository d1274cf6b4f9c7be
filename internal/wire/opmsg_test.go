package wire

import (
	"encoding/binary"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func parse(t *testing.T, raw []byte) (*OpMsg, error) {
	t.Helper()
	m, err := ReadMessage(bytesReader(raw), 0)
	if err != nil {
		t.Fatalf("ReadMessage: %v", err)
	}
	return ParseOpMsg(m)
}

func codeOf(err error) mongoerr.Code {
	var me *mongoerr.Error
	if errors.As(err, &me) {
		return me.Code
	}
	return -1
}

func TestOpMsgRoundTrip(t *testing.T) {
	body := mustMarshal(t, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	docs := []bsoncore.Document{
		bsoncore.Document(mustMarshal(t, bson.D{{Key: "_id", Value: 1}})),
		bsoncore.Document(mustMarshal(t, bson.D{{Key: "_id", Value: 2}})),
	}
	for _, flags := range []wiremessage.MsgFlag{0, wiremessage.ChecksumPresent, wiremessage.MoreToCome, wiremessage.ExhaustAllowed | wiremessage.ChecksumPresent} {
		raw := AppendOpMsg(nil, 1, 0, flags, body, DocumentSequence{Identifier: "documents", Documents: docs})
		m, err := parse(t, raw)
		if err != nil {
			t.Fatalf("flags %v: %v", flags, err)
		}
		if m.Flags != flags {
			t.Errorf("flags = %v, want %v", m.Flags, flags)
		}
		if len(m.Sequences) != 1 || len(m.Sequences[0].Documents) != 2 {
			t.Fatalf("sequences = %+v", m.Sequences)
		}
		cmd, err := m.Command()
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateDocument(cmd); err != nil {
			t.Fatalf("merged command invalid: %v", err)
		}
		var got struct {
			Insert    string
			DB        string `bson:"$db"`
			Documents []struct {
				ID int32 `bson:"_id"`
			}
		}
		if err := bson.Unmarshal(cmd, &got); err != nil {
			t.Fatal(err)
		}
		if got.Insert != "c" || got.DB != "test" || len(got.Documents) != 2 || got.Documents[1].ID != 2 {
			t.Errorf("merged command = %s", bson.Raw(cmd))
		}
		if firstKey(cmd) != "insert" {
			t.Errorf("first key = %q", firstKey(cmd))
		}
	}
}

func TestOpMsgCommandManySequences(t *testing.T) {
	body := mustMarshal(t, bson.D{{Key: "update", Value: "c"}, {Key: "$db", Value: "test"}})
	var docs []bsoncore.Document
	for i := range 25 { // two-digit array keys
		docs = append(docs, bsoncore.Document(mustMarshal(t, bson.D{{Key: "i", Value: i}})))
	}
	raw := AppendOpMsg(nil, 1, 0, 0, body,
		DocumentSequence{Identifier: "updates", Documents: docs},
		DocumentSequence{Identifier: "empty"})
	m, err := parse(t, raw)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := m.Command()
	if err != nil {
		t.Fatal(err)
	}
	if v := bson.Raw(cmd).Lookup("updates", "24", "i").Int32(); v != 24 {
		t.Errorf("updates.24.i = %d", v)
	}
	if arr, ok := bson.Raw(cmd).Lookup("empty").ArrayOK(); !ok || len(arr) != 5 {
		t.Errorf("empty = %v", bson.Raw(cmd).Lookup("empty"))
	}
}

func TestOpMsgMalformed(t *testing.T) {
	body := mustMarshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	doc := mustMarshal(t, bson.D{{Key: "a", Value: 1}})
	valid := AppendOpMsg(nil, 1, 0, 0, body)

	// build assembles a message from a flag word and raw section bytes.
	build := func(flags uint32, sections ...[]byte) []byte {
		out := make([]byte, HeaderLen, 64)
		binary.LittleEndian.PutUint32(out[12:], uint32(wiremessage.OpMsg))
		out = binary.LittleEndian.AppendUint32(out, flags)
		for _, s := range sections {
			out = append(out, s...)
		}
		return finishMessage(out, 0)
	}
	kind0 := func(d []byte) []byte { return append([]byte{0}, d...) }
	kind1 := func(id string, docs ...[]byte) []byte {
		s := []byte{1, 0, 0, 0, 0}
		s = append(s, id...)
		s = append(s, 0)
		for _, d := range docs {
			s = append(s, d...)
		}
		binary.LittleEndian.PutUint32(s[1:], uint32(len(s)-1))
		return s
	}
	badChecksum := AppendOpMsg(nil, 1, 0, wiremessage.ChecksumPresent, body)
	badChecksum[len(badChecksum)-1] ^= 0xff
	corruptedBody := AppendOpMsg(nil, 1, 0, wiremessage.ChecksumPresent, body)
	corruptedBody[HeaderLen+6] ^= 0x01
	badBSON := append([]byte(nil), doc...)
	badBSON[4] = 0x77 // unknown element type
	truncatedSeq := kind1("documents", doc)
	truncatedSeq = truncatedSeq[:len(truncatedSeq)-2]
	binary.LittleEndian.PutUint32(truncatedSeq[1:], uint32(len(truncatedSeq)-1))

	tests := []struct {
		name string
		raw  []byte
		code mongoerr.Code
	}{
		{"no flags", finishMessage(build(0)[:HeaderLen+2], 0), mongoerr.ProtocolError},
		{"no body section", build(0), mongoerr.ProtocolError},
		{"unknown required flag", build(1<<5, kind0(body)), mongoerr.ProtocolError},
		{"bad checksum", badChecksum, mongoerr.ProtocolError},
		{"corrupted checksummed body", corruptedBody, mongoerr.ProtocolError},
		{"checksum flag without checksum", build(1, []byte{0, 1}), mongoerr.ProtocolError},
		{"two bodies", build(0, kind0(body), kind0(body)), mongoerr.ProtocolError},
		{"unknown section kind", build(0, kind0(body), []byte{7, 1, 2, 3}), mongoerr.ProtocolError},
		{"truncated body document", build(0, kind0(body)[:len(body)-1]), mongoerr.InvalidBSON},
		{"invalid body bson", build(0, kind0(badBSON)), mongoerr.InvalidBSON},
		{"sequence without identifier", build(0, kind0(body), kind1("", doc)), mongoerr.ProtocolError},
		{"truncated sequence", build(0, kind0(body), truncatedSeq), mongoerr.InvalidBSON},
		{"sequence size past end", build(0, kind0(body), []byte{1, 0xff, 0, 0, 0, 'x', 0}), mongoerr.ProtocolError},
		{"invalid bson in sequence", build(0, kind0(body), kind1("documents", badBSON)), mongoerr.InvalidBSON},
		{"duplicate sequence", build(0, kind0(body), kind1("d", doc), kind1("d", doc)), mongoerr.ProtocolError},
	}
	if _, err := parse(t, valid); err != nil {
		t.Fatalf("control message rejected: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, tt.raw)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := codeOf(err); got != tt.code {
				t.Errorf("code = %v (%v), want %v", got, err, tt.code)
			}
		})
	}
}

func TestOpMsgOptionalFlagBitsIgnored(t *testing.T) {
	body := mustMarshal(t, bson.D{{Key: "ping", Value: 1}})
	raw := AppendOpMsg(nil, 1, 0, wiremessage.MsgFlag(1<<20), body)
	if _, err := parse(t, raw); err != nil {
		t.Fatalf("optional bit rejected: %v", err)
	}
}

func TestOpMsgSequenceDuplicatesBodyField(t *testing.T) {
	body := mustMarshal(t, bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{}}})
	raw := AppendOpMsg(nil, 1, 0, 0, body, DocumentSequence{Identifier: "documents"})
	m, err := parse(t, raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Command(); codeOf(err) != mongoerr.ProtocolError {
		t.Fatalf("err = %v, want ProtocolError", err)
	}
}

func TestChecksumMatchesKnownVector(t *testing.T) {
	// CRC-32C("123456789") is the standard check value 0xE3069283.
	if got := crc32c([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("crc32c = %#x", got)
	}
}

func TestOpMsgDocumentTooLarge(t *testing.T) {
	big := mustMarshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "pad", Value: make([]byte, MaxBSONObjectSize)}})
	raw := AppendOpMsg(nil, 1, 0, 0, big)
	m, err := ReadMessage(bytesReader(raw), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseOpMsg(m); codeOf(err) != mongoerr.BSONObjectTooLarge {
		t.Fatalf("err = %v, want BSONObjectTooLarge", err)
	}
}
