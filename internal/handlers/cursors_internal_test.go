package handlers

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// busySource stands for a scan that takes as long as its context lets it:
// it returns only when the context ends, with the context's cause (as
// docstore scans do).
type busySource struct{ calls int }

func (b *busySource) next(ctx context.Context, _ *Handler, _ int) ([]bson.Raw, bool, error) {
	b.calls++
	<-ctx.Done()
	return nil, false, context.Cause(ctx)
}

// A cursor opened with a maxTimeMS runs its getMores under what is left of
// it; once spent, a getMore fails at once with MaxTimeMSExpired.
func TestCursorMaxTimeBudget(t *testing.T) {
	h := &Handler{}
	src := &busySource{}
	cur := &cursor{src: src, timed: true, budget: 20 * time.Millisecond}
	ctx := context.Background()
	_, _, err := h.nextBatch(ctx, cur, 1)
	if got := mongoerr.CodeOf(commandError(ctx, err)); got != mongoerr.MaxTimeMSExpired {
		t.Fatalf("first getMore: %v (code %d), want MaxTimeMSExpired", err, got)
	}
	if cur.budget > 0 {
		t.Fatalf("budget left after the limit expired: %v", cur.budget)
	}
	_, _, err = h.nextBatch(ctx, cur, 1)
	if mongoerr.CodeOf(err) != mongoerr.MaxTimeMSExpired || src.calls != 1 {
		t.Fatalf("getMore on a spent cursor: %v after %d scans", err, src.calls)
	}
	// A cursor without maxTimeMS has no deadline.
	free := &cursor{src: sliceOf(3)}
	if docs, done, err := h.nextBatch(ctx, free, 10); err != nil || !done || len(docs) != 3 {
		t.Fatalf("untimed cursor: %d docs, %v, %v", len(docs), done, err)
	}
}

func sliceOf(n int) *sliceSource {
	s := &sliceSource{}
	for i := 0; i < n; i++ {
		d, _ := bson.Marshal(bson.D{{Key: "_id", Value: i}})
		s.docs = append(s.docs, d)
	}
	return s
}
