package repl

import (
	"bytes"
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
//     one synced; then each staging database gets a marker with the
//     commit's log index.
//
// Until the commit entry is committed the set serves its old data. A
// member that crashes replays the log from its last persisted raft
// snapshot: if that snapshot precedes the commit, the replay applies the
// commit again — after the entries before it, which may have written the
// target databases again — so the staging databases must still be whole
// then. They are: a staging database is dropped only once a raft snapshot
// at or past its commit index is persisted (dropCommittedStaging, at the
// next snapshot), after which no replay reaches that commit. A restore
// abandoned before its commit (the primary changed) leaves staging
// databases without a marker, which the next restore drops first through
// the log (no commit of theirs can follow).
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

// committedKey holds, in a staging database, the log index of its
// restore's commit (8 bytes, big-endian). Docstore keys start with
// 0x00–0x04: the marker is never a document's.
var committedKey = []byte{0xFE, 'c'}

// stagingCommit returns the commit index a staging database records (0:
// not committed).
func stagingCommit(db *storage.DB) (uint64, error) {
	v, closer, err := db.Get(committedKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("repl: staging database %s: commit marker of %d bytes", db.Name, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

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
func (f *fsm) applyRestoreCommit(index uint64, e entry) error {
	id := e.db
	names, err := decodeNames(e.repr)
	if err != nil {
		return err
	}
	if err := f.commitRestore(id, names); err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], index)
	for _, name := range names {
		db, err := f.eng.Database(stagingName(id, name))
		if err != nil {
			return err
		}
		if err := db.Set(committedKey, v[:], pebble.Sync); err != nil {
			return err
		}
	}
	// Change streams cannot resume across a restore.
	return f.resetOplog(f.prev)
}

// dropCommittedStaging drops the staging databases whose commit a
// persisted raft snapshot covers: no replay applies that commit again.
func (f *fsm) dropCommittedStaging() error {
	persisted := f.persisted.Load()
	for _, name := range f.eng.Databases() {
		if !IsStaging(name) {
			continue
		}
		db, err := f.eng.Database(name)
		if err != nil {
			return err
		}
		at, err := stagingCommit(db)
		if err != nil {
			return err
		}
		if at == 0 || at > persisted {
			continue
		}
		f.stopSnapshot()
		if err := f.dropStaging(name); err != nil {
			return err
		}
	}
	return nil
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
			if bytes.Equal(it.Key(), committedKey) {
				continue
			}
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
