package node_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/node"
)

// TestDisableDuringScanLatency measures how long a long collection scan
// keeps handing out documents after the DISABLED verdict: a scan of a large
// encrypted collection runs under a command context bound to the node; a
// thousand documents in, the node is disabled; the figure is the time from
// the verdict to the last document the scan returned (0 when it returned
// none after it). It asserts only what must hold — the scan stops with the
// node's DisabledError and nothing is returned after Disable returned — and
// logs the figures (docs/benchmarks.md):
//
//	go test -run TestDisableDuringScanLatency -v ./internal/node
func TestDisableDuringScanLatency(t *testing.T) {
	const docs, trials, disableAfter = 50000, 15, 1000
	l := node.Layout{Dir: t.TempDir()}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n, err := node.Open(ctx, l, cmk, node.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	openStore := func(create bool) (*docstore.Store, func()) {
		eng, _, release, err := n.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		db, err := eng.Database("app")
		if create {
			db, err = eng.CreateDatabase("app")
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := docstore.Open(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, release
	}
	s, release := openStore(true)
	c, err := s.EnsureCollection("big")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, func(w *docstore.Writer) error {
		for i := 0; i < docs; i++ {
			d, _ := bson.Marshal(bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: "0123456789abcdef0123456789abcdef"}})
			if err := w.Insert(c, d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	release()

	var afterVerdict, disableTook []time.Duration
	for trial := 0; trial < trials; trial++ {
		s, release := openStore(false)
		c := s.Collection("big")
		cctx, unbind := n.Bind(ctx)
		var seen atomic.Int64
		var last atomic.Int64 // unix nanos of the last document handed out
		reached := make(chan struct{})
		// On a busy machine the scan could reach its end before this
		// goroutine runs Disable: near the end it waits for the verdict,
		// so the scan is always still running when it comes.
		disabled := make(chan struct{})
		ended := make(chan error, 1)
		go func() {
			defer release()
			ended <- s.Scan(cctx, c, docstore.Plan{}, &docstore.Position{}, func(bson.Raw) (bool, error) {
				last.Store(time.Now().UnixNano())
				switch seen.Add(1) {
				case disableAfter:
					close(reached)
				case docs - 100:
					<-disabled
				}
				return true, nil
			})
		}()
		<-reached
		verdict := time.Now()
		n.Disable("the customer master key is invalid (KEY_DISABLED): measurement", kms.ReasonKeyDisabled)
		returned := time.Now()
		close(disabled)
		err := <-ended
		unbind()
		var de *node.DisabledError
		if !errors.As(err, &de) {
			t.Fatalf("trial %d: the scan ended with %v after %d documents, want the node's DisabledError", trial, err, seen.Load())
		}
		lastDoc := time.Unix(0, last.Load())
		if lastDoc.After(returned) {
			t.Fatalf("trial %d: a document was returned %v after Disable returned", trial, lastDoc.Sub(returned))
		}
		afterVerdict = append(afterVerdict, max(0, lastDoc.Sub(verdict)))
		disableTook = append(disableTook, returned.Sub(verdict))
		if err := n.Enable(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(afterVerdict)
	slices.Sort(disableTook)
	t.Logf("%d trials, scan of %d documents disabled %d documents in: verdict -> last document returned: median %v, max %v; Disable returned after: median %v, max %v",
		trials, docs, disableAfter, afterVerdict[trials/2], afterVerdict[trials-1], disableTook[trials/2], disableTook[trials-1])
}
