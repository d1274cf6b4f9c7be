package node

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
)

// loadNode fills a node with mb MiB of 1 KiB documents through docstore.
func loadNode(tb testing.TB, l Layout, mb int) *Node {
	tb.Helper()
	n, err := openNodeForChild(l)
	if err != nil {
		tb.Fatal(err)
	}
	eng, _, release, err := n.Acquire()
	if err != nil {
		tb.Fatal(err)
	}
	defer release()
	db, err := eng.CreateDatabase("app")
	if err != nil {
		tb.Fatal(err)
	}
	s, err := docstore.Open(db, nil)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := s.EnsureCollection("c")
	if err != nil {
		tb.Fatal(err)
	}
	// Random bytes: Pebble compresses blocks, and zeros would shrink to
	// nothing on disk.
	pad := make([]byte, 1024-40)
	r := mrand.New(mrand.NewPCG(1, 2))
	docs := mb * 1024
	for i := 0; i < docs; i += 1024 {
		if err := s.Write(context.Background(), func(w *docstore.Writer) error {
			for j := i; j < i+1024 && j < docs; j++ {
				for k := range pad {
					pad[k] = byte(r.Uint32())
				}
				raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: fmt.Sprintf("%010d", j)}, {Key: "pad", Value: pad}})
				if err := w.Insert(c, raw); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// TestSnapshotRestoreTimes measures a snapshot and a restore of a node
// holding CMKDB_SNAPSHOT_MB MiB of documents (skipped without it): the
// figures docs/benchmarks.md records.
func TestSnapshotRestoreTimes(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("CMKDB_SNAPSHOT_MB"))
	if mb == 0 {
		t.Skip("set CMKDB_SNAPSHOT_MB to measure")
	}
	l := Layout{Dir: t.TempDir()}
	start := time.Now()
	n := loadNode(t, l, mb)
	defer n.Close()
	load := time.Since(start)
	snap := filepath.Join(t.TempDir(), "snap")
	start = time.Now()
	info, err := n.Checkpoint(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	var size int64
	filepath.Walk(snap, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	start = time.Now()
	if err := n.Restore(context.Background(), snap, nil); err != nil {
		t.Fatal(err)
	}
	restore := time.Since(start)
	t.Logf("%d MiB of documents (loaded in %v): snapshot %v (%.1f MB of files, %d databases), restore %v (%.1f MB/s)",
		mb, load.Round(time.Millisecond), took.Round(time.Millisecond), float64(size)/1e6, len(info.DatabaseIDs), restore.Round(time.Millisecond),
		float64(size)/1e6/restore.Seconds())
}

// TestSnapshotWriteLatency measures the p99 latency of synced inserts
// (8 writers through docstore) while snapshots are taken every
// CMKDB_SNAPSHOT_LATENCY (a duration; 0s: back to back), against the same
// without snapshots, in alternating 4 s rounds of one run (skipped
// without it).
func TestSnapshotWriteLatency(t *testing.T) {
	every, err := time.ParseDuration(os.Getenv("CMKDB_SNAPSHOT_LATENCY"))
	if err != nil {
		t.Skip("set CMKDB_SNAPSHOT_LATENCY to the interval between snapshots (0s: back to back) to measure")
	}
	l := Layout{Dir: t.TempDir()}
	n := loadNode(t, l, 64)
	defer n.Close()
	w := &writerNode{Node: n}
	round := func(snapshots bool) []time.Duration {
		stop := make(chan struct{})
		done := make(chan []time.Duration, 8)
		for g := 0; g < 8; g++ {
			go func(g int) {
				var lat []time.Duration
				for i := 0; ; i++ {
					select {
					case <-stop:
						done <- lat
						return
					default:
					}
					start := time.Now()
					if err := w.insert("app", "lat", bson.D{{Key: "_id", Value: fmt.Sprintf("%d-%d-%d", g, i, time.Now().UnixNano())}}); err != nil {
						t.Error(err)
					}
					lat = append(lat, time.Since(start))
				}
			}(g)
		}
		taken := 0
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			if !snapshots {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			next := time.Now().Add(every)
			dir := filepath.Join(t.TempDir(), "s")
			if _, err := n.Checkpoint(context.Background(), dir); err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(dir)
			taken++
			time.Sleep(time.Until(next))
		}
		close(stop)
		var all []time.Duration
		for g := 0; g < 8; g++ {
			all = append(all, <-done...)
		}
		if snapshots {
			t.Logf("  %d snapshots during the round", taken)
		}
		return all
	}
	p99 := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)*99/100]
	}
	var with, without []time.Duration
	for i := 0; i < 3; i++ {
		a, b := round(false), round(true)
		t.Logf("round %d: p99 without snapshots %v (%d inserts), with %v (%d inserts)", i, p99(a), len(a), p99(b), len(b))
		without, with = append(without, a...), append(with, b...)
	}
	t.Logf("p99 of synced inserts: without snapshots %v, with a snapshot every %v %v, ratio %.2f",
		p99(without), every, p99(with), float64(p99(with))/float64(p99(without)))
}
