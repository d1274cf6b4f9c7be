package docstore

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/query"
)

// indexEntries returns the encoded keys doc contributes to ix and the
// values each encodes. The extraction is query's, the same rules its index
// planner assumes, so the planner's bounds always cover what is stored.
//
// A document a partial or sparse index does not cover has none.
func indexEntries(doc bson.Raw, ix *Index) ([][]byte, [][]bson.RawValue, error) {
	if !ix.Covers(doc) {
		return nil, nil, nil
	}
	if ix.Text != nil {
		return textEntries(doc, ix)
	}
	pattern, err := bson.Marshal(ix.Key)
	if err != nil {
		return nil, nil, err
	}
	kp, err := query.ParseKeyPattern(pattern)
	if err != nil {
		return nil, nil, err
	}
	return kp.IndexEntries(doc)
}
