package node

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// TestCheckpointAndRestore snapshots a node, writes more (documents and a
// whole database), then restores the snapshot while the node runs: the
// node serves exactly the snapshot's documents, the database created later
// is gone (its directory too), the keystore's generation went up and its
// master key is new; a restart serves the same. A snapshot whose CMK no
// longer answers is refused before anything changes.
func TestCheckpointAndRestore(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	n := openWriterNode(t, l)
	for i := 0; i < 1000; i++ {
		if err := n.insert("app", "c", bson.D{{Key: "_id", Value: fmt.Sprintf("a%04d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	snap := filepath.Join(t.TempDir(), "snap")
	info, err := n.Checkpoint(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.DatabaseIDs) != 1 || info.NodeID == "" || info.CMK.KeyID == "" {
		t.Fatalf("snapshot info %+v", info)
	}
	for i := 0; i < 300; i++ {
		if err := n.insert("app", "c", bson.D{{Key: "_id", Value: fmt.Sprintf("b%04d", i)}}); err != nil {
			t.Fatal(err)
		}
		if err := n.insert("later", "c", bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	_, before := keystoreIDs(t, n.Node)
	genBefore := n.KeystoreGeneration()
	r0, _ := keys.Inspect(l.KeystoreDir())

	var last, total int64
	if err := n.Restore(context.Background(), snap, func(c, tot int64) { last, total = c, tot }); err != nil {
		t.Fatal(err)
	}
	if total == 0 || last != total {
		t.Fatalf("restore progress ended at %d of %d bytes", last, total)
	}
	check := func(n *writerNode) {
		t.Helper()
		ids := n.ids(t, "app", "c")
		if len(ids) != 1000 || ids[0] != "a0000" || ids[999] != "a0999" {
			t.Fatalf("after restore app.c has %d documents (%v…)", len(ids), ids[:min(3, len(ids))])
		}
		eng, _, release, err := n.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if dbs := eng.Databases(); fmt.Sprint(dbs) != "[app]" {
			t.Fatalf("databases after restore: %v", dbs)
		}
	}
	check(n)
	_, after := keystoreIDs(t, n.Node)
	if got := dirNames(t, l.DataDir()); fmt.Sprint(got) != fmt.Sprint(after) || len(before) != 2 {
		t.Fatalf("data directory %v, keystore names %v (before %v)", got, after, before)
	}
	r1, err := keys.Inspect(l.KeystoreDir())
	if err != nil || r1.Generation <= genBefore || r1.Master.CreatedAt.Equal(r0.Master.CreatedAt) {
		t.Fatalf("restored keystore: generation %d (was %d), master created %v (was %v): %v",
			r1.Generation, genBefore, r1.Master.CreatedAt, r0.Master.CreatedAt, err)
	}
	n.Close()
	n = openWriterNode(t, l)
	check(n)

	// The CMK that wrapped the snapshot is disabled: refused, nothing changes.
	if err := n.insert("app", "c", bson.D{{Key: "_id", Value: "z"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Disable(l.LocalKeyPath()); err != nil {
		t.Fatal(err)
	}
	if err := n.Restore(context.Background(), snap, nil); err == nil {
		t.Fatal("restore with the snapshot's CMK disabled succeeded")
	}
	if got := len(n.ids(t, "app", "c")); got != 1001 {
		t.Fatalf("a refused restore changed the data: %d documents", got)
	}
	n.Close()
}
