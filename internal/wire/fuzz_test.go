package wire

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

// FuzzReadMessage feeds arbitrary bytes through framing, parsing and the
// connection's message handling (with a handler that walks the command),
// which must never panic and must always produce well-formed replies.
func FuzzReadMessage(f *testing.F) {
	body := mustMarshal(f, bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	doc := bsoncore.Document(mustMarshal(f, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: bson.A{1, "x", bson.D{}}}}))
	f.Add(AppendOpMsg(nil, 1, 0, 0, body))
	f.Add(AppendOpMsg(nil, 1, 0, wiremessage.ChecksumPresent, body, DocumentSequence{Identifier: "documents", Documents: []bsoncore.Document{doc, doc}}))
	f.Add(AppendOpMsg(nil, 1, 0, wiremessage.MoreToCome, body))
	f.Add(AppendOpQuery(nil, 1, 0, "admin.$cmd", 0, -1, mustMarshal(f, bson.D{{Key: "$query", Value: bson.D{{Key: "isMaster", Value: 1}}}})))
	f.Add(AppendOpReply(nil, 1, 0, 0, doc))
	f.Add(wiremessage.AppendHeader(nil, 16, 1, 0, wiremessage.OpCompressed))
	f.Add([]byte{})

	srv, err := NewServer(Config{
		Handler: HandlerFunc(func(_ context.Context, _ *ConnState, req *Request) (bson.Raw, error) {
			_ = req.Command.String() // walks every nested value
			return req.Command, nil
		}),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadMessage(bytes.NewReader(data), 1<<20)
		if err != nil {
			return
		}
		switch m.Header.OpCode {
		case wiremessage.OpMsg:
			if msg, err := ParseOpMsg(m); err == nil {
				if cmd, err := msg.Command(); err == nil {
					if err := ValidateDocument(cmd); err != nil {
						t.Fatalf("merged command of a valid message is invalid: %v", err)
					}
				}
			}
		case wiremessage.OpQuery:
			if q, err := ParseOpQuery(m); err == nil {
				_ = q.Command()
			}
		case wiremessage.OpReply:
			_, _ = ParseOpReply(m)
		}

		c := &conn{srv: srv, id: 1, log: srv.log}
		c.state.Store(NewConnState(1, &net.TCPAddr{}, &net.TCPAddr{}, nil))
		reply, _ := c.handleMessage(context.Background(), m)
		if reply == nil {
			return
		}
		rm, err := ReadMessage(bytes.NewReader(reply), MaxMessageSizeBytes)
		if err != nil {
			t.Fatalf("unreadable reply: %v", err)
		}
		if rm.Header.ResponseTo != m.Header.RequestID {
			t.Fatalf("reply answers %d, want %d", rm.Header.ResponseTo, m.Header.RequestID)
		}
		switch rm.Header.OpCode {
		case wiremessage.OpMsg:
			if _, err := ParseOpMsg(rm); err != nil {
				t.Fatalf("malformed OP_MSG reply: %v", err)
			}
		case wiremessage.OpReply:
			if _, err := ParseOpReply(rm); err != nil {
				t.Fatalf("malformed OP_REPLY: %v", err)
			}
		default:
			t.Fatalf("reply opcode %v", rm.Header.OpCode)
		}
	})
}
