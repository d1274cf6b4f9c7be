package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/wiremessage"
)

func mustMarshal(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func le32(n int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(n)) }

func TestReadMessage(t *testing.T) {
	good := AppendOpMsg(nil, 7, 0, 0, mustMarshal(t, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}}))
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
	}{
		{"valid", good, 0, nil},
		{"empty stream", nil, 0, io.EOF},
		{"partial length", []byte{1, 2}, 0, io.ErrUnexpectedEOF},
		{"length below header", append(le32(15), make([]byte, 11)...), 0, ErrInvalidLength},
		{"negative length", append(le32(-1), make([]byte, 12)...), 0, ErrInvalidLength},
		{"length above default max", le32(MaxMessageSizeBytes + 1), 0, ErrInvalidLength},
		{"length above custom max", good, len(good) - 1, ErrInvalidLength},
		{"truncated body", good[:len(good)-3], 0, io.ErrUnexpectedEOF},
		{"header only truncated", good[:10], 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ReadMessage(bytes.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Header{MessageLength: int32(len(good)), RequestID: 7, OpCode: wiremessage.OpMsg}
			if m.Header != want {
				t.Errorf("header = %+v, want %+v", m.Header, want)
			}
			if !bytes.Equal(m.Raw, good) {
				t.Error("raw bytes differ")
			}
		})
	}
}

func TestReadMessageSequential(t *testing.T) {
	var stream []byte
	for i := int32(1); i <= 3; i++ {
		stream = AppendOpMsg(stream, i, 0, 0, mustMarshal(t, bson.D{{Key: "ping", Value: i}}))
	}
	r := bytes.NewReader(stream)
	for i := int32(1); i <= 3; i++ {
		m, err := ReadMessage(r, 0)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.RequestID != i {
			t.Fatalf("request id %d, want %d", m.Header.RequestID, i)
		}
	}
	if _, err := ReadMessage(r, 0); !errors.Is(err, io.EOF) {
		t.Fatalf("after last message: %v, want EOF", err)
	}
}

func TestReadMessageLarge(t *testing.T) {
	// Bigger than the initial allocation, so the buffer must grow.
	body := mustMarshal(t, bson.D{{Key: "pad", Value: make([]byte, 3*initialAlloc+17)}})
	raw := AppendOpMsg(nil, 9, 0, 0, body)
	m, err := ReadMessage(bytes.NewReader(raw), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Raw, raw) {
		t.Fatal("large message corrupted")
	}
	if _, err := ReadMessage(bytes.NewReader(raw[:len(raw)-1]), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated large message: %v", err)
	}
}
