package docstore

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

// A text index keeps one entry per distinct term, survives reopening with
// its definition, and TextPlan reads each matching document once.
func TestTextIndexPersistsAndPlans(t *testing.T) {
	eng := storagetest.NewEngine(t)
	db, _ := eng.CreateDatabase("app")
	s, _ := Open(db, nil)
	insert(t, s, "a",
		bson.D{{Key: "_id", Value: 1}, {Key: "t", Value: "running runs"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "t", Value: "the walkers"}},
		bson.D{{Key: "_id", Value: 3}, {Key: "t", Value: "run and walk"}},
	)
	spec, err := fts.NewSpec([]string{"t"}, bson.RawValue{}, bson.RawValue{}, bson.RawValue{})
	if err != nil {
		t.Fatal(err)
	}
	key := bson.D{{Key: "_fts", Value: "text"}, {Key: "_ftsx", Value: int32(1)}}
	if _, err := s.CreateIndex(context.Background(), "a", IndexSpec{Name: "t_text", Key: key, Text: spec}); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	coll := s2.Collection("a")
	ix := TextIndex(coll)
	if ix == nil || !ix.Text.Equal(spec) {
		t.Fatalf("text index after reopen: %+v", ix)
	}
	var got []string
	var pos Position
	err = s2.Scan(context.Background(), coll, TextPlan(ix, []string{"walker", "run", "walk", "run"}), &pos, func(doc bson.Raw) (bool, error) {
		got = append(got, idStr(doc))
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 3 2]" {
		t.Errorf("TextPlan scan: %v, want [1 3 2] (run, then walk, then walker)", got)
	}
	// The planner never picks a text index for an ordinary filter.
	if p, err := PlanFor(coll, mustRaw(t, bson.D{{Key: "_fts", Value: "run"}})); err != nil || p.Index != nil {
		t.Errorf("PlanFor: %v %v", p, err)
	}
	res, err := s2.Validate(context.Background(), coll, func([]byte) error { return nil })
	if err != nil || len(res.Errors) > 0 || res.MissingIndexEntries+res.ExtraIndexEntries > 0 || res.KeysPerIndex[1] != 4 {
		t.Errorf("validate: %+v %v", res, err)
	}
}
