package repl

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/storage"
)

// A restore replicates through the log like any write, in two steps, so
// that every member ends with the set's old data or the restored data,
// never a mix, whenever a member or the primary crashes:
//
//  1. opRestorePart entries copy the snapshot's keys into staging
//     databases, "$restore.<id>.<db>" (a name no client can give: '$'),
//     which nothing reads and no oplog entry records;
//  2. one opRestoreCommit entry {id, names} makes them the set's data, on
//     each member as it applies it: databases not named are dropped, each
//     named one is cleared and refilled from its staging database, every
//     one synced; then a done record for id is written (synced) in the
//     member's local database, and the staging databases are dropped.
//
// Until the commit entry is committed the set serves its old data; a
// restore abandoned before it leaves staging databases, which the next
// restore drops first. Applying the commit again — a member replays the
// log from its last raft snapshot after a crash — finds the done record
// and only drops the staging databases the replayed parts recreated
// (they may be partial: parts before that raft snapshot are not
// replayed), so it never copies an incomplete staging database over the
// data. Later entries are replayed over the result as always.
//
// opRestorePart payload: (uvarint len(key) | key | uvarint len(value) | value)*
// opRestoreCommit: the header's database field is the restore id; payload:
// uvarint count | count × (uvarint len(name) | name).

// StagingPrefix starts the name of a restore's staging databases.
const StagingPrefix = "$restore."

// IsStaging reports whether db is a restore's staging database: not a
// user's, never listed to clients.
func IsStaging(db string) bool { return strings.HasPrefix(db, StagingPrefix) }

func stagingName(id, db string) string { return StagingPrefix + id + "." + db }

// restorePartBytes bounds one part entry's payload.
const restorePartBytes = 1 << 20

func newRestoreID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// doneKey records in the local database that restore id's commit was
// applied here.
func doneKey(id string) []byte { return append([]byte{0xF4}, id...) }

func appendKV(out, k, v []byte) []byte {
	out = binary.AppendUvarint(out, uint64(len(k)))
	out = append(out, k...)
	out = binary.AppendUvarint(out, uint64(len(v)))
	return append(out, v...)
}

func decodeKVs(b []byte, fn func(k, v []byte) error) error {
	for len(b) > 0 {
		var kv [2][]byte
		for i := range kv {
			n, k := binary.Uvarint(b)
			if k <= 0 || n > uint64(len(b)-k) {
				return fmt.Errorf("%w: restore part", errBadEntry)
			}
			kv[i], b = b[k:k+int(n)], b[k+int(n):]
		}
		if err := fn(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

func encodeNames(names []string) []byte {
	out := binary.AppendUvarint(nil, uint64(len(names)))
	for _, n := range names {
		out = binary.AppendUvarint(out, uint64(len(n)))
		out = append(out, n...)
	}
	return out
}

func decodeNames(b []byte) ([]string, error) {
	count, k := binary.Uvarint(b)
	if k <= 0 || count > maxTxnParts {
		return nil, fmt.Errorf("%w: restore commit", errBadEntry)
	}
	b = b[k:]
	names := make([]string, 0, count)
	for range count {
		n, k := binary.Uvarint(b)
		if k <= 0 || n == 0 || n > maxDBName || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: restore commit", errBadEntry)
		}
		name := string(b[k : k+int(n)])
		if name == localDB || IsStaging(name) {
			return nil, fmt.Errorf("%w: restore commit names %q", errBadEntry, name)
		}
		names = append(names, name)
		b = b[k+int(n):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: restore commit: trailing bytes", errBadEntry)
	}
	return names, nil
}

func (f *fsm) database(name string) (*storage.DB, error) {
	db, err := f.eng.Database(name)
	if errors.Is(err, storage.ErrNoDatabase) {
		db, err = f.eng.CreateDatabase(name)
	}
	return db, err
}

// applyRestorePart writes a part into its staging database.
func (f *fsm) applyRestorePart(e entry) error {
	if !IsStaging(e.db) {
		return fmt.Errorf("%w: a restore part for %q", errBadEntry, e.db)
	}
	db, err := f.database(e.db)
	if err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	if err := decodeKVs(e.repr, func(k, v []byte) error { return b.Set(k, v, nil) }); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// dropStaging drops a staging database (no oplog entry: nothing read it).
func (f *fsm) dropStaging(name string) error {
	if err := f.eng.DropDatabase(name); err != nil && !errors.Is(err, storage.ErrNoDatabase) {
		return err
	}
	return nil
}

// applyRestoreCommit makes restore id's staging databases the set's data.
func (f *fsm) applyRestoreCommit(e entry) error {
	id := e.db
	names, err := decodeNames(e.repr)
	if err != nil {
		return err
	}
	local, err := f.eng.Database(localDB)
	if err != nil {
		return err
	}
	_, closer, err := local.Get(doneKey(id))
	switch {
	case err == nil:
		closer.Close()
	case errors.Is(err, pebble.ErrNotFound):
		if err := f.commitRestore(id, names); err != nil {
			return fmt.Errorf("restore %s: %w", id, err)
		}
		if err := local.Set(doneKey(id), nil, pebble.Sync); err != nil {
			return err
		}
	default:
		return err
	}
	for _, name := range names {
		if err := f.dropStaging(stagingName(id, name)); err != nil {
			return err
		}
	}
	// Change streams cannot resume across a restore.
	return f.resetOplog(f.prev)
}

func (f *fsm) commitRestore(id string, names []string) error {
	keep := map[string]bool{}
	for _, name := range names {
		if _, err := f.eng.Database(stagingName(id, name)); err != nil {
			return fmt.Errorf("staging database of %s: %w", name, err)
		}
		keep[name] = true
	}
	for _, name := range f.eng.Databases() {
		if name == localDB || IsStaging(name) || keep[name] {
			continue
		}
		if _, err := f.dbs.DropReplicated(name); err != nil {
			return fmt.Errorf("drop %s: %w", name, err)
		}
	}
	for _, name := range names {
		src, err := f.eng.Database(stagingName(id, name))
		if err != nil {
			return err
		}
		d, err := startRestore(f.eng, name)
		if err != nil {
			return err
		}
		it, err := src.NewIter(nil)
		if err != nil {
			d.b.Close()
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			v, err := it.ValueAndErr()
			if err == nil {
				err = d.set(it.Key(), v) // the batch copies them
			}
			if err != nil {
				it.Close()
				d.b.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			d.b.Close()
			return err
		}
		if err := d.finish(); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := f.dbs.Reload(name); err != nil {
			return fmt.Errorf("reload %s: %w", name, err)
		}
	}
	return nil
}
