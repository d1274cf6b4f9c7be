package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// A log entry's value, version 1 (all integers big-endian):
//
//	version u8 | flags u8 | type u8 | index u64 | term u64
//	| [appendedAt: unix seconds i64 | nanoseconds u32]   (flagAppendedAt)
//	| len(data) u32 | data | len(extensions) u32 | extensions
//
// The encoding is canonical: a value decodes only if encoding the result
// gives the same bytes back, so there is exactly one way to write an entry.
const logVersion = 1

const (
	flagAppendedAt = 1 << 0
	knownFlags     = flagAppendedAt
)

// MaxFieldLen bounds Data and Extensions of one log entry. StoreLog refuses
// larger ones, so nothing is written that could not be read back.
const MaxFieldLen = 1 << 30

// maxFieldLen is MaxFieldLen, lowered by tests.
var maxFieldLen = MaxFieldLen

const fixedHeader = 1 + 1 + 1 + 8 + 8

// ErrCorruptLog is matched (errors.Is) by every DecodeError.
var ErrCorruptLog = errors.New("raftstore: corrupt log entry")

// DecodeError reports a stored log entry that cannot be decoded. A member
// never uses such an entry: raft gets the error and stops.
type DecodeError struct {
	Index  uint64 // the index the entry is stored under
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("raftstore: log entry %d: %s", e.Index, e.Reason)
}

func (e *DecodeError) Unwrap() error { return ErrCorruptLog }

// encodeLog returns the stored form of l.
func encodeLog(l *raft.Log) ([]byte, error) {
	if len(l.Data) > maxFieldLen || len(l.Extensions) > maxFieldLen {
		return nil, fmt.Errorf("raftstore: log entry %d: data (%d bytes) or extensions (%d bytes) over the %d-byte limit",
			l.Index, len(l.Data), len(l.Extensions), maxFieldLen)
	}
	n := fixedHeader + 4 + len(l.Data) + 4 + len(l.Extensions)
	var flags byte
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
		n += 8 + 4
	}
	out := make([]byte, 0, n)
	out = append(out, logVersion, flags, byte(l.Type))
	out = binary.BigEndian.AppendUint64(out, l.Index)
	out = binary.BigEndian.AppendUint64(out, l.Term)
	if flags&flagAppendedAt != 0 {
		out = binary.BigEndian.AppendUint64(out, uint64(l.AppendedAt.Unix()))
		out = binary.BigEndian.AppendUint32(out, uint32(l.AppendedAt.Nanosecond()))
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(l.Data)))
	out = append(out, l.Data...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(l.Extensions)))
	out = append(out, l.Extensions...)
	return out, nil
}

// decodeLog decodes the value stored under index into l. l's slices are
// fresh copies: b may be reused by the caller.
func decodeLog(index uint64, b []byte, l *raft.Log) error {
	fail := func(format string, args ...any) error {
		return &DecodeError{Index: index, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) < fixedHeader {
		return fail("%d bytes, shorter than the %d-byte header", len(b), fixedHeader)
	}
	if b[0] != logVersion {
		return fail("unknown format version %d", b[0])
	}
	flags := b[1]
	if flags&^knownFlags != 0 {
		return fail("unknown flags %#x", flags)
	}
	typ := raft.LogType(b[2])
	idx := binary.BigEndian.Uint64(b[3:])
	term := binary.BigEndian.Uint64(b[11:])
	if idx != index {
		return fail("entry records index %d", idx)
	}
	rest := b[fixedHeader:]
	var appendedAt time.Time
	if flags&flagAppendedAt != 0 {
		if len(rest) < 12 {
			return fail("truncated in the append time")
		}
		sec := int64(binary.BigEndian.Uint64(rest))
		nsec := binary.BigEndian.Uint32(rest[8:])
		if nsec >= 1e9 {
			return fail("append time has %d nanoseconds", nsec)
		}
		appendedAt = time.Unix(sec, int64(nsec))
		if appendedAt.IsZero() {
			return fail("append time flagged but zero")
		}
		rest = rest[12:]
	}
	field := func(name string) ([]byte, error) {
		if len(rest) < 4 {
			return nil, fail("truncated before the length of %s", name)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(maxFieldLen) || uint64(n) > uint64(len(rest)) {
			return nil, fail("%s length %d, but %d bytes remain", name, n, len(rest))
		}
		var v []byte
		if n > 0 {
			v = make([]byte, n)
			copy(v, rest[:n])
		}
		rest = rest[n:]
		return v, nil
	}
	data, err := field("data")
	if err != nil {
		return err
	}
	ext, err := field("extensions")
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fail("%d trailing bytes", len(rest))
	}
	*l = raft.Log{Index: idx, Term: term, Type: typ, Data: data, Extensions: ext, AppendedAt: appendedAt}
	return nil
}
