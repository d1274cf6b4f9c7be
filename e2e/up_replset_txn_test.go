package e2e

import (
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestUpReplicaSetTransactions runs the Node driver's transactions
// (node/txn.js: withTransaction, abort, a write conflict that leaves
// nothing behind, withTransaction's retry) and change streams
// (node/changestream.js) against `cmkdb up --nodes 3`.
func TestUpReplicaSetTransactions(t *testing.T) {
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3")
	if out := e2etest.Node(t, "txn.js", s.URI, "node_txn"); !strings.Contains(out, `"ok":true`) {
		t.Fatalf("txn.js: %s", out)
	}
	if out := e2etest.Node(t, "changestream.js", s.URI, "node_cs"); !strings.Contains(out, `"ok":true`) {
		t.Fatalf("changestream.js: %s", out)
	}
}

// TestUpReplicaSetMongooseTransaction runs a mongoose transaction
// (node/mongoose_txn.js) against `cmkdb up --nodes 3`. mongoose is in
// e2e/node/package.json: scripts/install-deps.sh installs it.
func TestUpReplicaSetMongooseTransaction(t *testing.T) {
	e2etest.RequireNodeModule(t, "mongoose")
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--nodes", "3")
	if out := e2etest.Node(t, "mongoose_txn.js", s.URI, "mongoose_txn"); !strings.Contains(out, `"ok":true`) {
		t.Fatalf("mongoose_txn.js: %s", out)
	}
}
