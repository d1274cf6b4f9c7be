// Package raftstore keeps hashicorp/raft's LogStore, StableStore and
// SnapshotStore in a replica set member's encrypted storage, so nothing
// replicated is ever written in plaintext.
//
// The log and stable stores (Store) live under a key prefix of a Pebble
// database that the caller opens over an encrypting file system (the
// member's "local" database); the snapshots (SnapshotStore) are files
// written through the same kind of file system, so they are encrypted under
// the member's keys as well. Neither ever writes a byte outside what it was
// given: the prefix, or the snapshot directory.
package raftstore
