package repl

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// An entry is one raft log record: a database's committed batch, or the
// drop of a database. Layout (version 2):
//
//	version u8 | op u8 | flags u8 | wall i64 BE (ms) | len(db) uvarint | db | payload
//
// wall is the primary's clock when it proposed the entry: the oplog
// timestamps every member derives from the entry follow from it
// (oplog.Next), never from a member's own clock. Version 1 (no wall) is
// still read: its entries take raft's append time.
// The payload of opBatch is Pebble's batch representation (see
// docstore.Log); opDrop has none. opTxn (a multi-document transaction,
// txn.go) names its first part's database in the header and carries every
// part in its payload. Entries are decoded on every member, so a
// member never applies an entry it cannot fully parse: it stops with an
// error naming the index instead.
const (
	entryVersion   = 2
	entryVersionV1 = 1
)

type op uint8

const (
	opBatch op = 1
	opDrop  op = 2
	opTxn   op = 3
	// opRestorePart and opRestoreCommit restore a backup (restore.go).
	opRestorePart   op = 4
	opRestoreCommit op = 5
)

const flagCatalog = 1

type entry struct {
	op      op
	db      string
	catalog bool
	// wallMs is the proposer's clock (Unix ms); 0 in a version 1 entry.
	wallMs int64
	repr   []byte
	// parts are an opTxn's databases and batches, in apply order.
	parts []txnPart
}

// maxDBName bounds a database name in an entry (MongoDB's limit is 64).
const maxDBName = 255

func (e entry) encode() []byte {
	out := make([]byte, 0, 11+binary.MaxVarintLen64+len(e.db)+len(e.repr))
	var flags byte
	if e.catalog {
		flags |= flagCatalog
	}
	out = append(out, entryVersion, byte(e.op), flags)
	out = binary.BigEndian.AppendUint64(out, uint64(e.wallMs))
	out = binary.AppendUvarint(out, uint64(len(e.db)))
	out = append(out, e.db...)
	if e.op == opTxn {
		return encodeTxnParts(out, e.parts)
	}
	return append(out, e.repr...)
}

var errBadEntry = errors.New("repl: malformed log entry")

func decodeEntry(b []byte) (entry, error) {
	if len(b) < 4 {
		return entry{}, fmt.Errorf("%w: %d bytes", errBadEntry, len(b))
	}
	if b[0] != entryVersion && b[0] != entryVersionV1 {
		return entry{}, fmt.Errorf("%w: version %d (this build reads %d)", errBadEntry, b[0], entryVersion)
	}
	e := entry{op: op(b[1]), catalog: b[2]&flagCatalog != 0}
	if e.op < opBatch || e.op > opRestoreCommit {
		return entry{}, fmt.Errorf("%w: operation %d", errBadEntry, b[1])
	}
	hdr := 3
	if b[0] == entryVersion {
		if len(b) < 12 {
			return entry{}, fmt.Errorf("%w: %d bytes", errBadEntry, len(b))
		}
		e.wallMs = int64(binary.BigEndian.Uint64(b[3:11]))
		if e.wallMs <= 0 {
			return entry{}, fmt.Errorf("%w: wall time %d", errBadEntry, e.wallMs)
		}
		hdr = 11
	}
	n, k := binary.Uvarint(b[hdr:])
	if k <= 0 || n == 0 || n > maxDBName || uint64(len(b)-hdr-k) < n {
		return entry{}, fmt.Errorf("%w: database name", errBadEntry)
	}
	rest := b[hdr+k:]
	e.db, e.repr = string(rest[:n]), rest[n:]
	if e.op == opDrop && len(e.repr) != 0 {
		return entry{}, fmt.Errorf("%w: a drop carries no payload", errBadEntry)
	}
	// Only restores write staging databases, and only into them.
	if staging := IsStaging(e.db); e.op == opRestorePart && !staging || (e.op == opBatch || e.op == opTxn) && staging {
		return entry{}, fmt.Errorf("%w: operation %d on database %q", errBadEntry, e.op, e.db)
	}
	if e.op == opTxn {
		parts, err := decodeTxnParts(e.repr)
		if err != nil {
			return entry{}, err
		}
		if parts[0].db != e.db {
			return entry{}, fmt.Errorf("%w: a transaction's header names its first part", errBadEntry)
		}
		e.parts, e.repr = parts, nil
	}
	return e, nil
}
