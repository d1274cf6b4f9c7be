package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestRotationUnderLoad: manual master-key rotations through the admin API
// while clients write: no client sees an error, every acknowledged write is
// readable afterwards, and the node's master key version advances once per
// rotation. It logs client p99 latency with and without rotations (the
// benchmark of docs/benchmarks.md).
func TestRotationUnderLoad(t *testing.T) {
	s := startServer(t, "--key-check-interval", "1h")
	api := s.UpAPI()
	gid := s.Info.GroupID
	c := connect(t, s.URI)
	coll := c.Database("rot").Collection("load")

	version := func() int {
		ns := clusterNodes(t, api, gid, "Cluster0")
		if len(ns) != 1 {
			t.Fatalf("nodes: %+v", ns)
		}
		return ns[0].MasterKeyVersion
	}
	e2etest.Eventually(t, stateTimeout, "node reported", func() error {
		if ns := clusterNodes(t, api, gid, "Cluster0"); len(ns) != 1 || ns[0].MasterKeyVersion == 0 {
			return fmt.Errorf("nodes: %+v", ns)
		}
		return nil
	})
	v0 := version()

	const writers = 4
	var (
		next    atomic.Int64
		mu      sync.Mutex
		acked   []int64
		errs    []error
		phase   atomic.Int32 // 0 baseline, 1 rotating
		latency [2][]time.Duration
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				id := next.Add(1)
				p := phase.Load()
				start := time.Now()
				_, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: id}, {Key: "pad", Value: "x"}})
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					acked = append(acked, id)
					latency[p] = append(latency[p], d)
				}
				mu.Unlock()
			}
		}()
	}
	// Alternating windows of the same length, pooled: without rotations,
	// then with a rotation requested every 500 ms (each applied before the
	// next), four times over, so drift in the machine's load (a compaction,
	// a neighbour) falls on both sides alike. Both kinds of window poll the
	// admin API the same way.
	const (
		window  = 1500 * time.Millisecond
		pairs   = 4
		perWin  = 3
		spacing = window / perWin
	)
	rotations := 0
	for range pairs {
		phase.Store(0)
		for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			version()
		}
		phase.Store(1)
		start := time.Now()
		for i := 1; i <= perWin; i++ {
			rotations++
			want := v0 + rotations
			api.Call(t, "POST", "/groups/"+gid+"/clusters/Cluster0/encryptionAtRest/rotateMasterKey", nil, nil)
			e2etest.Eventually(t, stateTimeout, fmt.Sprintf("rotation %d applied", rotations), func() error {
				if v := version(); v < want {
					return fmt.Errorf("master key version %d, want %d", v, want)
				}
				return nil
			})
			time.Sleep(time.Until(start.Add(time.Duration(i) * spacing)))
		}
	}
	cancel()
	wg.Wait()

	if len(errs) > 0 {
		t.Fatalf("%d client errors during rotation, first: %v", len(errs), errs[0])
	}
	if v := version(); v != v0+rotations {
		t.Fatalf("master key version %d after %d rotations from %d", v, rotations, v0)
	}
	n, err := coll.CountDocuments(opCtx(t), bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(acked)) {
		t.Fatalf("%d documents readable, %d writes acknowledged", n, len(acked))
	}
	for _, id := range []int64{acked[0], acked[len(acked)/2], acked[len(acked)-1]} {
		if err := coll.FindOne(opCtx(t), bson.D{{Key: "_id", Value: id}}).Err(); err != nil {
			t.Fatalf("acknowledged write %d: %v", id, err)
		}
	}
	t.Logf("MEASURE %d inserts by %d clients; %d×%s without rotation: p50 %s p99 %s max %s (%d ops); %d×%s with %d rotations: p50 %s p99 %s max %s (%d ops); p99 ratio %.2f",
		len(acked), writers, pairs, window, pct(latency[0], 50), pct(latency[0], 99), pct(latency[0], 100), len(latency[0]),
		pairs, window, rotations, pct(latency[1], 50), pct(latency[1], 99), pct(latency[1], 100), len(latency[1]),
		float64(pct(latency[1], 99))/float64(pct(latency[0], 99)))
	disconnect(c)
	s.Stop(t)
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100].Round(time.Microsecond)
}
