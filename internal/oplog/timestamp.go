package oplog

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Timestamp is MongoDB's BSON timestamp: seconds and an increment that
// orders changes within a second. An oplog entry's ts is unique and
// increases with the log.
type Timestamp struct {
	T uint32
	I uint32
}

// Compare orders timestamps.
func (a Timestamp) Compare(b Timestamp) int {
	switch {
	case a.T < b.T:
		return -1
	case a.T > b.T:
		return 1
	case a.I < b.I:
		return -1
	case a.I > b.I:
		return 1
	}
	return 0
}

// String is the timestamp as mongosh prints it.
func (a Timestamp) String() string { return fmt.Sprintf("Timestamp(%d, %d)", a.T, a.I) }

// IsZero reports the zero timestamp (no position).
func (a Timestamp) IsZero() bool { return a.T == 0 && a.I == 0 }

// Next is the timestamp of the change after prev, made at wall time wall:
// wall's second unless that is earlier than prev's (a clock that went
// back, or a new primary whose clock runs behind), so timestamps never
// decrease. It is a pure function: every member computes the same
// timestamps from the same log.
func Next(prev Timestamp, wall time.Time) Timestamp {
	sec := wall.Unix()
	if sec < 0 {
		sec = 0
	}
	t := uint32(sec)
	if sec > int64(^uint32(0)) {
		t = ^uint32(0)
	}
	if t <= prev.T {
		if prev.I == ^uint32(0) {
			return Timestamp{T: prev.T + 1, I: 1}
		}
		return Timestamp{T: prev.T, I: prev.I + 1}
	}
	return Timestamp{T: t, I: 1}
}

// key is the timestamp's storage key suffix: big-endian, so keys sort as
// timestamps do.
func (a Timestamp) key() [8]byte {
	var k [8]byte
	binary.BigEndian.PutUint32(k[:4], a.T)
	binary.BigEndian.PutUint32(k[4:], a.I)
	return k
}

func timestampFromKey(b []byte) Timestamp {
	return Timestamp{T: binary.BigEndian.Uint32(b[:4]), I: binary.BigEndian.Uint32(b[4:8])}
}
