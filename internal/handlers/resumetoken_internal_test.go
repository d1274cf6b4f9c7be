package handlers

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/oplog"
)

// Tokens round-trip, and their order as strings is the order of the
// positions they name (MongoDB's tokens compare the same way).
func TestResumeTokenOrder(t *testing.T) {
	points := []resumePoint{
		{ts: oplog.Timestamp{T: 1, I: 0}, kind: tokenEvent},
		{ts: oplog.Timestamp{T: 1, I: 0}, kind: tokenInvalidate},
		{ts: oplog.Timestamp{T: 1, I: 1}, index: 0},
		{ts: oplog.Timestamp{T: 1, I: 1}, index: 7},
		{ts: oplog.Timestamp{T: 2, I: 0}, kind: tokenHighWater},
	}
	prev := ""
	for _, p := range points {
		tok := p.token()
		got, err := parseResumeToken(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: tok}, "resumeAfter")
		if err != nil || got != p {
			t.Fatalf("round trip of %+v: %+v %v", p, got, err)
		}
		s := tok.Lookup("_data").StringValue()
		if s <= prev {
			t.Fatalf("token %s does not sort after %s", s, prev)
		}
		prev = s
	}
	// A high-water mark has consumed its whole entry; an event only itself.
	hw := resumePoint{ts: oplog.Timestamp{T: 5}, kind: tokenHighWater}
	ev := resumePoint{ts: oplog.Timestamp{T: 5}, index: 2}
	for _, tc := range []struct {
		at      resumePoint
		ts      oplog.Timestamp
		index   uint32
		kind    tokenKind
		pending bool
	}{
		{hw, oplog.Timestamp{T: 5}, 9, tokenEvent, false},
		{hw, oplog.Timestamp{T: 5, I: 1}, 0, tokenEvent, true},
		{ev, oplog.Timestamp{T: 5}, 2, tokenEvent, false},
		{ev, oplog.Timestamp{T: 5}, 2, tokenInvalidate, true},
		{ev, oplog.Timestamp{T: 5}, 3, tokenEvent, true},
		{ev, oplog.Timestamp{T: 4, I: 99}, 9, tokenEvent, false},
	} {
		if got := tc.at.pending(tc.ts, tc.index, tc.kind); got != tc.pending {
			t.Errorf("%+v.pending(%v, %d, %d) = %v", tc.at, tc.ts, tc.index, tc.kind, got)
		}
	}
}

func FuzzParseResumeToken(f *testing.F) {
	f.Add([]byte(resumePoint{ts: oplog.Timestamp{T: 3, I: 4}, index: 1}.token()))
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseResumeToken(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: b}, "resumeAfter")
		if err != nil {
			return
		}
		again, err := parseResumeToken(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: p.token()}, "resumeAfter")
		if err != nil || again != p {
			t.Fatalf("re-parse of %+v: %+v %v", p, again, err)
		}
	})
}
