package keys

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkOpen1000Databases measures the key work of opening a node with
// 1,000 databases: one KMS unwrap of the master key, MAC verification, and
// 1,000 local unwraps of database keys.
func BenchmarkOpen1000Databases(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	cmk, _ := newLocal(b, dir, "cmk.json")
	ksDir := filepath.Join(dir, "node")
	ks, err := Create(ctx, ksDir, cmk)
	if err != nil {
		b.Fatal(err)
	}
	// Add databases by building the body directly: 1,000 separate durable
	// commits would only measure fsync.
	bd := ks.b.clone()
	for i := 0; i < 1000; i++ {
		id := newID()
		key, _ := randomKey()
		v, err := ks.sealDBKey(ks.master, bd.NodeID, id, 1, key, ks.now())
		if err != nil {
			b.Fatal(err)
		}
		bd.Databases = append(bd.Databases, dbEntry{Name: "db" + strconv.Itoa(i), ID: id, CreatedAt: ks.now(), Current: 1, Versions: []dbVersionEntry{v}})
		ks.dbKeys[id] = map[uint32][]byte{1: key}
	}
	if err := ks.commit(bd, ks.master); err != nil {
		b.Fatal(err)
	}
	ks.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ks, err := Open(ctx, ksDir, cmk)
		if err != nil {
			b.Fatal(err)
		}
		if len(ks.Databases()) != 1000 {
			b.Fatal("databases missing")
		}
		ks.Close()
	}
}
