package handlers

import (
	"encoding/binary"
	"encoding/hex"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// A change stream's resume token is a position in the oplog, which every
// member of the set derives identically from the raft log: a token taken
// on one member resumes on any other, before or after a failover.
//
//	{_data: hex(version u8 | T u32 | I u32 | index u32 | kind u8)}
//
// T/I is the oplog entry's timestamp; index is the change's place inside
// the entry (an applyOps entry holds a transaction's changes; 0 for any
// other); kind says what sits at that position. Tokens of one stream
// compare in the order of their events as strings, as MongoDB's do.
const tokenVersion = 1

type tokenKind uint8

const (
	// tokenEvent is an event: a resume continues after it.
	tokenEvent tokenKind = iota
	// tokenInvalidate is the invalidate that follows the event at the
	// same position: only startAfter may resume from it.
	tokenInvalidate
	// tokenHighWater marks everything up to and including the entry at
	// ts as seen (a batch's postBatchResumeToken when it ended on no
	// event).
	tokenHighWater
)

// resumePoint is where a stream stands: what it has consumed.
type resumePoint struct {
	ts    oplog.Timestamp
	index uint32
	kind  tokenKind
}

// pending reports whether the event at (ts, index, kind) is still to
// come for a stream standing at p.
func (p resumePoint) pending(ts oplog.Timestamp, index uint32, kind tokenKind) bool {
	switch c := ts.Compare(p.ts); {
	case c != 0:
		return c > 0
	case p.kind == tokenHighWater:
		return false
	case index != p.index:
		return index > p.index
	default:
		return kind > p.kind
	}
}

func (p resumePoint) token() bson.Raw {
	var b [14]byte
	b[0] = tokenVersion
	binary.BigEndian.PutUint32(b[1:], p.ts.T)
	binary.BigEndian.PutUint32(b[5:], p.ts.I)
	binary.BigEndian.PutUint32(b[9:], p.index)
	b[13] = byte(p.kind)
	raw, _ := bson.Marshal(bson.D{{Key: "_data", Value: strings.ToUpper(hex.EncodeToString(b[:]))}})
	return raw
}

// parseResumeToken reads a token given as resumeAfter or startAfter.
func parseResumeToken(v bson.RawValue, option string) (resumePoint, error) {
	bad := func(why string) (resumePoint, error) {
		return resumePoint{}, mongoerr.New(mongoerr.InvalidResumeToken, "invalid %s resume token: %s", option, why)
	}
	d, ok := v.DocumentOK()
	if !ok {
		return resumePoint{}, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$changeStream.%s' is the wrong type '%s', expected type 'object'", option, typeName(v.Type))
	}
	if wire.ValidateDocument(d) != nil {
		// The wire layer validates whole commands; this is for callers that
		// did not (the driver's Lookup and even its Validate panic on some
		// malformed BSON; the wire's validator walks it safely).
		return bad("it is not valid BSON")
	}
	s, ok := d.Lookup("_data").StringValueOK()
	if !ok {
		return bad("it has no string _data field")
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 14 {
		return bad("_data is not a cmkdb token")
	}
	if b[0] != tokenVersion {
		return bad("unknown token version")
	}
	p := resumePoint{
		ts:    oplog.Timestamp{T: binary.BigEndian.Uint32(b[1:]), I: binary.BigEndian.Uint32(b[5:])},
		index: binary.BigEndian.Uint32(b[9:]),
		kind:  tokenKind(b[13]),
	}
	if p.kind > tokenHighWater {
		return bad("unknown position kind")
	}
	return p, nil
}
