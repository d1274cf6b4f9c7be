package docstore

import (
	"fmt"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// A text index (Index.Text set) stores one entry per distinct term of a
// document (fts.Spec.Scores), keyed by the term as a string; scores are
// recomputed from the document when a $text query reads it.

// textTermKey is the encoded index key of a term.
func textTermKey(term string) []byte {
	v := bson.RawValue{Type: bson.TypeString, Value: bsonString(term)}
	return query.EncodeIndexKey([]bson.RawValue{v}, []int{1})
}

func bsonString(s string) []byte {
	_, b, err := bson.MarshalValue(s)
	if err != nil {
		panic(err) // a Go string always marshals
	}
	return b
}

// textEntries is indexEntries for a text index.
func textEntries(doc bson.Raw, ix *Index) ([][]byte, [][]bson.RawValue, error) {
	scores, err := ix.Text.Scores(doc)
	if err != nil {
		return nil, nil, err
	}
	terms := make([]string, 0, len(scores))
	for t := range scores {
		terms = append(terms, t)
	}
	sort.Strings(terms)
	keys := make([][]byte, len(terms))
	tuples := make([][]bson.RawValue, len(terms))
	for i, t := range terms {
		keys[i] = textTermKey(t)
		tuples[i] = []bson.RawValue{{Type: bson.TypeString, Value: bsonString(t)}}
	}
	return keys, tuples, nil
}

// TextIndex returns coll's text index, or nil (a collection has at most
// one).
func TextIndex(coll *Collection) *Index {
	for i := range coll.Indexes {
		if coll.Indexes[i].Text != nil {
			return &coll.Indexes[i]
		}
	}
	return nil
}

// TextPlan is a plan reading the documents whose text index entries hold
// any of terms (each document once).
func TextPlan(ix *Index, terms []string) Plan {
	sorted := append([]string(nil), terms...)
	sort.Strings(sorted)
	p := Plan{Index: ix, Ranges: []Range{}}
	for i, t := range sorted {
		if i > 0 && sorted[i-1] == t {
			continue
		}
		k := textTermKey(t)
		p.Ranges = append(p.Ranges, Range{Lo: k, Hi: prefixEnd(k)})
	}
	return p
}

// textIndexConflict is mongod's answer to a second text index: a
// collection has at most one, so any other text spec conflicts with it.
func textIndexConflict(ix *Index, spec IndexSpec) error {
	if ix.Text == nil || spec.Text == nil {
		return nil
	}
	if ix.Name == spec.Name {
		if ix.Text.Equal(spec.Text) && ix.Unique == spec.Unique {
			return nil
		}
		return mongoerr.New(mongoerr.IndexOptionsConflict, "An equivalent index already exists with the same name but different options. Requested index: %s, existing index: %s", textIndexString(spec.Name, spec.Text), textIndexString(ix.Name, ix.Text))
	}
	if ix.Text.Equal(spec.Text) {
		return mongoerr.New(mongoerr.IndexOptionsConflict, "Index already exists with a different name: %s", ix.Name)
	}
	return mongoerr.New(mongoerr.IndexOptionsConflict, "An equivalent index already exists with a different name and options. Requested index: %s, existing index: %s", textIndexString(spec.Name, spec.Text), textIndexString(ix.Name, ix.Text))
}

func textIndexString(name string, s *fts.Spec) string {
	w := ""
	for i, f := range s.Weights {
		if i > 0 {
			w += ", "
		}
		w += fmt.Sprintf("%s: %d", f.Path, f.Weight)
	}
	return fmt.Sprintf("{ v: 2, key: { _fts: \"text\", _ftsx: 1 }, name: \"%s\", weights: { %s }, default_language: \"%s\", language_override: \"%s\", textIndexVersion: 3 }", name, w, s.DefaultLanguage, s.LanguageOverride)
}
