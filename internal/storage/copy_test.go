package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// dump returns every key and value of db, in order.
func dump(t *testing.T, db *DB) [][2][]byte {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out [][2][]byte
	for it.First(); it.Valid(); it.Next() {
		out = append(out, [2][]byte{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
	}
	return out
}

// TestCopyWhileWriting copies a database while a writer keeps committing
// sets, deletes and range deletions (under one lock, calling AfterCommit
// in commit order, as docstore does). Once the writer stops and the copy
// catches up a last time, the destination holds exactly the source's keys
// and values. Without the tap (writes during the copy lost) or with the
// tapped batches applied out of order, it would not.
func TestCopyWhileWriting(t *testing.T) {
	n := newNode(t)
	src, err := n.eng.CreateDatabase("src")
	if err != nil {
		t.Fatal(err)
	}
	dst, err := n.eng.CreateDatabase("dst")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // the writer lock
	commit := func(fill func(b *pebble.Batch)) {
		mu.Lock()
		defer mu.Unlock()
		b := src.NewBatch()
		defer b.Close()
		fill(b)
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Error(err)
			return
		}
		src.AfterCommit(b.Repr())
	}
	key := func(i int) []byte { return []byte(fmt.Sprintf("k%06d", i)) }
	for i := 0; i < 20000; i++ {
		commit(func(b *pebble.Batch) { b.Set(key(i), bytes.Repeat([]byte{byte(i)}, 100), nil) })
	}

	c, err := n.eng.StartCopy("src", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if _, err := n.eng.StartCopy("src", dst); err == nil {
		t.Fatal("a second copy of the same database started")
	}
	if err := n.eng.DropDatabase("src"); !errors.Is(err, ErrDatabaseBusy) {
		t.Fatalf("dropping a database being copied: %v, want ErrDatabaseBusy", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := r.IntN(25000)
			switch i % 7 {
			case 0:
				commit(func(b *pebble.Batch) { b.Delete(key(k), nil) })
			case 1:
				commit(func(b *pebble.Batch) { b.DeleteRange(key(k), key(k+20), nil) })
			default:
				commit(func(b *pebble.Batch) {
					b.Set(key(k), []byte(fmt.Sprintf("v%d", i)), nil)
					b.Set(key(k+1), []byte(fmt.Sprintf("w%d", i)), nil)
				})
			}
		}
	}()
	if err := c.Bulk(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.CatchUp(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock() // writes stopped: the last catch-up makes dst equal src
	if _, err := c.CatchUp(); err != nil {
		t.Fatal(err)
	}
	mu.Unlock()
	c.Stop()
	if c.Keys < 20000*9/10 {
		t.Fatalf("bulk phase copied %d keys", c.Keys)
	}
	want, got := dump(t, src), dump(t, dst)
	if len(want) != len(got) {
		t.Fatalf("source has %d keys, copy %d", len(want), len(got))
	}
	for i := range want {
		if !bytes.Equal(want[i][0], got[i][0]) || !bytes.Equal(want[i][1], got[i][1]) {
			t.Fatalf("key %d: source %q=%q, copy %q=%q", i, want[i][0], want[i][1], got[i][0], got[i][1])
		}
	}
	if err := n.eng.DropDatabase("src"); err != nil {
		t.Fatalf("dropping the source once the copy stopped: %v", err)
	}
	// After Stop, commits are no longer tapped.
	src.AfterCommit([]byte("not a batch"))
	if b, err := c.t.take(); err != nil || len(b) != 0 {
		t.Fatalf("tap after Stop: %d batches, %v", len(b), err)
	}
}

// TestCopyOverflow: a backlog beyond MaxCopyBacklog fails the copy with
// ErrCopyOverflow instead of growing without bound.
func TestCopyOverflow(t *testing.T) {
	n := newNode(t)
	src, _ := n.eng.CreateDatabase("src")
	dst, _ := n.eng.CreateDatabase("dst")
	c, err := n.eng.StartCopy("src", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	big := make([]byte, 1<<20)
	for i := 0; i <= MaxCopyBacklog>>20; i++ {
		src.AfterCommit(big)
	}
	if _, err := c.CatchUp(); err == nil || !errors.Is(err, ErrCopyOverflow) {
		t.Fatalf("CatchUp after overflow: %v", err)
	}
}
