package docstore

import (
	"context"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

// A scan stops at the first document after its context is done, with the
// context's cause, through every path that reads a collection.
func TestScansStopWhenTheContextEnds(t *testing.T) {
	s, err := Open(storagetest.NewDB(t, "app"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var docs []bson.D
	for i := 0; i < 50; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "k", Value: i % 7}})
	}
	if err := insert(t, s, "c", docs...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateIndex(context.Background(), "c", IndexSpec{Key: bson.D{{Key: "k", Value: 1}}}); err != nil {
		t.Fatal(err)
	}
	c := s.Collection("c")
	byIndex, err := PlanFor(c, mustRaw(t, bson.D{{Key: "k", Value: bson.D{{Key: "$gte", Value: 0}}}}))
	if err != nil || byIndex.Index == nil {
		t.Fatalf("plan %v %v", byIndex, err)
	}
	if _, err := s.CreateCollectionWithOptions("capped", CollOptions{Capped: true, Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if err := insert(t, s, "capped", docs...); err != nil {
		t.Fatal(err)
	}
	capped := s.Collection("capped")
	revoked := errors.New("node disabled")
	const stopAfter = 10
	type scanFn func(ctx context.Context, fn func(bson.Raw) (bool, error)) error
	cases := []struct {
		name string
		scan scanFn
	}{
		{"collection scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Scan(ctx, c, Plan{}, &Position{}, fn)
		}},
		{"index scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Scan(ctx, c, byIndex, &Position{}, fn)
		}},
		{"reverse natural scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Scan(ctx, c, Plan{Natural: -1}, &Position{}, fn)
		}},
		{"capped natural scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Scan(ctx, capped, Plan{}, &Position{}, fn)
		}},
		{"capped reverse natural scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Scan(ctx, capped, Plan{Natural: -1}, &Position{}, fn)
		}},
		{"writer scan", func(ctx context.Context, fn func(bson.Raw) (bool, error)) error {
			return s.Write(ctx, func(w *Writer) error { return w.Scan(c, Plan{}, &Position{}, fn) })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			seen := 0
			err := tc.scan(ctx, func(bson.Raw) (bool, error) {
				seen++
				if seen == stopAfter {
					cancel(revoked)
				}
				return true, nil
			})
			if !errors.Is(err, revoked) {
				t.Fatalf("err = %v, want the context's cause", err)
			}
			if seen != stopAfter {
				t.Fatalf("fn saw %d documents, want %d (none after the cancel)", seen, stopAfter)
			}
		})
	}
	done, cancel := context.WithCancelCause(context.Background())
	cancel(revoked)
	if _, err := s.Count(done, c); !errors.Is(err, revoked) {
		t.Errorf("Count: %v", err)
	}
	if _, err := s.CreateIndex(done, "c", IndexSpec{Key: bson.D{{Key: "j", Value: 1}}}); !errors.Is(err, revoked) {
		t.Errorf("CreateIndex: %v", err)
	}
	if len(s.Collection("c").Indexes) != 2 {
		t.Errorf("an interrupted index build was published")
	}
	err = s.Write(done, func(w *Writer) error {
		return w.Insert(c, mustRaw(t, bson.D{{Key: "_id", Value: 100}}))
	})
	if !errors.Is(err, revoked) {
		t.Errorf("Insert: %v", err)
	}
	if got, _, _ := s.Get(c, mustRaw(t, bson.D{{Key: "_id", Value: 100}}).Lookup("_id")); got != nil {
		t.Errorf("an interrupted insert was written")
	}
}
