// Package oplog keeps a replica set member's oplog: MongoDB's
// local.oplog.rs, one entry per replicated change (an insert, an update,
// a delete, a catalog command), in MongoDB's entry format
// ({ts, t, v, op, ns, ui, o, o2, wall}).
//
// The oplog is not what replicates — the raft log is (internal/repl).
// Every member derives the same oplog from the same log entries as it
// applies them, so an entry's timestamp names the same change on every
// member: a change stream's resume token taken from one member resumes on
// another after a failover.
//
// It is stored in the member's local database (encrypted under that
// member's keys like everything else), keyed by timestamp, and capped by
// size and age (Limits).
package oplog
