package raftstore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Key layout under the caller's prefix:
//
//	prefix | 'l' | index u64 big-endian   a log entry (see codec.go)
//	prefix | 's' | key                    a stable store value
const (
	tagLog    = 'l'
	tagStable = 's'
)

// ErrKeyNotFound is what Get and GetUint64 return for a key never set. Its
// message is exactly "not found": hashicorp/raft recognises a missing key
// by comparing err.Error() with that string.
var ErrKeyNotFound = errors.New("not found")

// Store is raft's LogStore and StableStore in a Pebble database, under one
// key prefix. Every write is one batch committed with pebble.Sync. The
// database belongs to the caller, who closes it after the raft instance
// using the Store has shut down.
type Store struct {
	db        *pebble.DB
	logLower  []byte // prefix|'l'
	logUpper  []byte // prefix|'m': just past every log key
	stablePfx []byte // prefix|'s'
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// New returns a Store keeping its keys under prefix in db. The prefix must
// be non-empty and no other user of db may write keys starting with it (nor
// use a prefix that starts with this one).
func New(db *pebble.DB, prefix []byte) (*Store, error) {
	if db == nil {
		return nil, errors.New("raftstore: nil database")
	}
	if len(prefix) == 0 {
		return nil, errors.New("raftstore: empty key prefix")
	}
	p := func(tag byte) []byte {
		k := make([]byte, 0, len(prefix)+1)
		return append(append(k, prefix...), tag)
	}
	return &Store{db: db, logLower: p(tagLog), logUpper: p(tagLog + 1), stablePfx: p(tagStable)}, nil
}

func (s *Store) logKey(index uint64) []byte {
	k := make([]byte, 0, len(s.logLower)+8)
	return binary.BigEndian.AppendUint64(append(k, s.logLower...), index)
}

func (s *Store) stableKey(key []byte) []byte {
	k := make([]byte, 0, len(s.stablePfx)+len(key))
	return append(append(k, s.stablePfx...), key...)
}

// FirstIndex returns the first index stored, 0 when the log is empty.
func (s *Store) FirstIndex() (uint64, error) { return s.edgeIndex(true) }

// LastIndex returns the last index stored, 0 when the log is empty.
func (s *Store) LastIndex() (uint64, error) { return s.edgeIndex(false) }

func (s *Store) edgeIndex(first bool) (idx uint64, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: s.logLower, UpperBound: s.logUpper})
	if err != nil {
		return 0, fmt.Errorf("raftstore: log iterator: %w", err)
	}
	defer func() {
		if cerr := it.Close(); err == nil && cerr != nil {
			idx, err = 0, fmt.Errorf("raftstore: log iterator: %w", cerr)
		}
	}()
	var ok bool
	if first {
		ok = it.First()
	} else {
		ok = it.Last()
	}
	if !ok {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("raftstore: log iterator: %w", err)
		}
		return 0, nil
	}
	k := it.Key()
	if len(k) != len(s.logLower)+8 {
		return 0, fmt.Errorf("raftstore: malformed log key %x", k)
	}
	return binary.BigEndian.Uint64(k[len(s.logLower):]), nil
}

// GetLog reads the entry at index into log; raft.ErrLogNotFound if there
// is none, a *DecodeError if it cannot be decoded.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	v, closer, err := s.db.Get(s.logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: read log entry %d: %w", index, err)
	}
	defer closer.Close()
	return decodeLog(index, v, log)
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one synced batch: all of them or none.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, l := range logs {
		v, err := encodeLog(l)
		if err != nil {
			return err
		}
		if err := b.Set(s.logKey(l.Index), v, nil); err != nil {
			return fmt.Errorf("raftstore: store log entry %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: store log entries %d-%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
	}
	return nil
}

// DeleteRange deletes the entries from min to max, both included, with one
// range deletion in a synced batch.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	end := s.logUpper
	if max < ^uint64(0) {
		end = s.logKey(max + 1)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(s.logKey(min), end, nil); err != nil {
		return fmt.Errorf("raftstore: delete log entries %d-%d: %w", min, max, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: delete log entries %d-%d: %w", min, max, err)
	}
	return nil
}

// Set stores a stable value, synced.
func (s *Store) Set(key, val []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(s.stableKey(key), val, nil); err != nil {
		return fmt.Errorf("raftstore: set %q: %w", key, err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftstore: set %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of a stable value; ErrKeyNotFound ("not found") if
// the key was never set.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(s.stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

// SetUint64 stores a stable integer (8 bytes, big-endian), synced.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns a stable integer; 0 and ErrKeyNotFound if the key was
// never set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: stable key %q holds %d bytes, not a uint64", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}
