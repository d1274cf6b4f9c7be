package repl

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/oplog"
)

// A multi-document transaction commits as ONE log entry (opTxn) holding a
// batch per database it wrote, so every member applies all of it or none
// of it, in the same place in the log as every other member.
//
// opTxn payload:
//
//	count uvarint | count × (len(db) uvarint | db | flags u8 | len(repr) uvarint | repr)
//
// flags is flagCatalog when the part changes the catalog (never, today: a
// transaction only writes documents and index entries). An entry with no
// part, a repeated database or bytes after the last part is malformed.

type txnPart struct {
	db      string
	catalog bool
	repr    []byte
}

// maxTxnParts bounds the databases in one transaction entry.
const maxTxnParts = 1024

func encodeTxnParts(out []byte, parts []txnPart) []byte {
	out = binary.AppendUvarint(out, uint64(len(parts)))
	for _, p := range parts {
		out = binary.AppendUvarint(out, uint64(len(p.db)))
		out = append(out, p.db...)
		var flags byte
		if p.catalog {
			flags |= flagCatalog
		}
		out = append(out, flags)
		out = binary.AppendUvarint(out, uint64(len(p.repr)))
		out = append(out, p.repr...)
	}
	return out
}

func decodeTxnParts(b []byte) ([]txnPart, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > maxTxnParts {
		return nil, fmt.Errorf("%w: transaction part count", errBadEntry)
	}
	b = b[k:]
	parts := make([]txnPart, 0, n)
	seen := map[string]bool{}
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > maxDBName || uint64(len(b)-k) < l+1 {
			return nil, fmt.Errorf("%w: transaction part %d database name", errBadEntry, i)
		}
		p := txnPart{db: string(b[k : k+int(l)])}
		b = b[k+int(l):]
		if seen[p.db] {
			return nil, fmt.Errorf("%w: transaction part %d repeats database %q", errBadEntry, i, p.db)
		}
		seen[p.db] = true
		if b[0]&^flagCatalog != 0 {
			return nil, fmt.Errorf("%w: transaction part %d flags %#x", errBadEntry, i, b[0])
		}
		p.catalog = b[0]&flagCatalog != 0
		b = b[1:]
		l, k = binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return nil, fmt.Errorf("%w: transaction part %d batch", errBadEntry, i)
		}
		p.repr = b[k : k+int(l)]
		b = b[k+int(l):]
		parts = append(parts, p)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last transaction part", errBadEntry, len(b))
	}
	return parts, nil
}

// CommitTxn implements docstore.TxnLog: it proposes a transaction's parts
// as one entry and returns once a majority holds it and this member
// applied every part.
func (m *Member) CommitTxn(ctx context.Context, parts []docstore.TxnPart) error {
	if len(parts) == 0 {
		return nil
	}
	e := entry{op: opTxn, db: parts[0].DB}
	for _, p := range parts {
		e.parts = append(e.parts, txnPart{db: p.DB, repr: p.Repr})
	}
	return m.propose(ctx, e)
}

// applyTxn applies every part of a transaction entry, in order. A replay
// after a crash applies them again from the start, which ends in the same
// state (each part is a blind write, like a batch entry). The oplog gets
// one entry for the whole transaction, as MongoDB writes it: an applyOps
// command holding every change.
func (f *fsm) applyTxn(e entry) ([]oplog.Op, error) {
	var ops []oplog.Op
	for _, p := range e.parts {
		if p.db == localDB || IsStaging(p.db) {
			return nil, fmt.Errorf("%w: a transaction part for database %q", errBadEntry, p.db)
		}
		partOps, err := f.dbs.ApplyBatch(p.db, p.repr, p.catalog)
		if err != nil {
			return nil, fmt.Errorf("transaction part %s: %w", p.db, err)
		}
		ops = append(ops, partOps...)
	}
	if len(oplog.WithoutMarkers(ops)) == 0 {
		return nil, nil
	}
	op, err := oplog.ApplyOps(ops)
	if err != nil {
		return nil, err
	}
	return []oplog.Op{op}, nil
}

var _ docstore.TxnLog = (*Member)(nil)
