// Package repl makes a node a member of a replica set: one raft group per
// set (hashicorp/raft), whose log carries the logical write batches every
// member applies to its own databases under its own keys.
//
// The raft log, stable store and snapshots live in the member's encrypted
// "local" database; nothing replicated is ever written in the clear.
package repl
