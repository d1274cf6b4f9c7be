package handlers

import (
	"context"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// textFind is the text-search part of a find: the top-level $text taken
// out of the filter, and the {$meta: "textScore"} sort keys and projected
// fields taken out of the sort and projection (the rest of each goes
// through the ordinary query package).
type textFind struct {
	query *fts.Query
	// sortParts is the whole sort in order (nil: no sort); projMeta the
	// fields that project the score.
	sortParts []textSortPart
	projMeta  []string
}

type textSortPart struct {
	meta bool        // by score, descending
	sort *query.Sort // one ordinary key
}

func isTextScoreMeta(v bson.RawValue) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	els, err := d.Elements()
	if err != nil || len(els) != 1 || els[0].Key() != "$meta" {
		return false
	}
	s, ok := els[0].Value().StringValueOK()
	return ok && s == "textScore"
}

func without(doc bson.Raw, drop func(bson.RawElement) bool) (bson.Raw, error) {
	els, err := doc.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "%v", err)
	}
	out := bson.D{}
	for _, e := range els {
		if drop(e) {
			continue
		}
		out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
	}
	return bson.Marshal(out)
}

// splitTextFind takes $text and textScore out of a find's filter, sort and
// projection. It returns nil when the find uses neither.
func splitTextFind(filter, sortSpec, proj bson.Raw) (*textFind, bson.Raw, bson.Raw, bson.Raw, error) {
	tf := &textFind{}
	used := false
	if len(filter) > 5 {
		els, err := filter.Elements()
		if err == nil {
			for _, e := range els {
				if e.Key() != "$text" {
					continue
				}
				if tf.query != nil {
					return nil, nil, nil, nil, mongoerr.New(mongoerr.BadValue, "Too many text expressions")
				}
				if tf.query, err = fts.ParseQuery(e.Value()); err != nil {
					return nil, nil, nil, nil, err
				}
				used = true
			}
			if tf.query != nil {
				if filter, err = without(filter, func(e bson.RawElement) bool { return e.Key() == "$text" }); err != nil {
					return nil, nil, nil, nil, err
				}
			}
		}
	}
	if len(sortSpec) > 5 {
		els, err := sortSpec.Elements()
		if err == nil {
			hasMeta := false
			for _, e := range els {
				hasMeta = hasMeta || isTextScoreMeta(e.Value())
			}
			if hasMeta {
				used = true
				for _, e := range els {
					if isTextScoreMeta(e.Value()) {
						tf.sortParts = append(tf.sortParts, textSortPart{meta: true})
						continue
					}
					one, err := bson.Marshal(bson.D{{Key: e.Key(), Value: e.Value()}})
					if err != nil {
						return nil, nil, nil, nil, err
					}
					s, err := query.CompileSort(one)
					if err != nil {
						return nil, nil, nil, nil, err
					}
					tf.sortParts = append(tf.sortParts, textSortPart{sort: s})
				}
				sortSpec = nil
			}
		}
	}
	if len(proj) > 5 {
		els, err := proj.Elements()
		if err == nil {
			for _, e := range els {
				if isTextScoreMeta(e.Value()) {
					if strings.Contains(e.Key(), ".") {
						return nil, nil, nil, nil, mongoerr.New(mongoerr.NotImplemented, "projecting textScore into a dotted path is not supported")
					}
					tf.projMeta = append(tf.projMeta, e.Key())
				}
			}
			if len(tf.projMeta) > 0 {
				used = true
				if proj, err = without(proj, func(e bson.RawElement) bool { return isTextScoreMeta(e.Value()) }); err != nil {
					return nil, nil, nil, nil, err
				}
			}
		}
	}
	if !used {
		return nil, filter, sortSpec, proj, nil
	}
	if tf.query == nil {
		return nil, nil, nil, nil, mongoerr.New(40218, "query requires text score metadata, but it is not available")
	}
	return tf, filter, sortSpec, proj, nil
}

// textIndexRequired is mongod's answer to $text on a collection without a
// text index.
func textIndexRequired() error {
	return mongoerr.New(mongoerr.IndexNotFound, "text index required for $text query")
}

type textHit struct {
	doc   bson.Raw
	score float64
}

// textSearch reads the documents matching q through coll's text index,
// keeping those that match also the rest of the filter (m), with scores.
func (h *Handler) textSearch(ctx context.Context, db, collName string, q *fts.Query, m *query.Matcher) ([]textHit, error) {
	st, release, err := h.store(db, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	if coll == nil {
		return nil, mongoerr.New(mongoerr.IndexNotFound, "text index required for $text query (no such collection '%s.%s')", db, collName)
	}
	ix := docstore.TextIndex(coll)
	if ix == nil {
		return nil, textIndexRequired()
	}
	q.Bind(ix.Text)
	var hits []textHit
	var pos docstore.Position
	err = st.Scan(ctx, coll, docstore.TextPlan(ix, q.Terms), &pos, func(doc bson.Raw) (bool, error) {
		if m != nil && !m.Match(doc) {
			return true, nil
		}
		texts, err := ix.Text.Texts(doc)
		if err != nil {
			return false, err
		}
		if !q.Match(texts) {
			return true, nil
		}
		scores, err := ix.Text.Scores(doc)
		if err != nil {
			return false, err
		}
		hits = append(hits, textHit{doc: doc, score: q.Score(scores)})
		return true, nil
	})
	return hits, err
}

// collectText runs a find with $text: match, sort, skip, limit, project,
// adding the projected scores.
func (h *Handler) collectText(ctx context.Context, spec *findSpec, tf *textFind) ([]bson.Raw, error) {
	hits, err := h.textSearch(ctx, spec.db, spec.coll, tf.query, spec.matcher)
	if err != nil {
		return nil, err
	}
	if len(tf.sortParts) > 0 || spec.sort != nil {
		parts := tf.sortParts
		if len(parts) == 0 {
			parts = []textSortPart{{sort: spec.sort}}
		}
		keys := make([][][]bson.RawValue, len(hits))
		for i, hit := range hits {
			keys[i] = make([][]bson.RawValue, len(parts))
			for j, p := range parts {
				if !p.meta {
					keys[i][j] = p.sort.Key(hit.doc)
				}
			}
		}
		idx := make([]int, len(hits))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool {
			for j, p := range parts {
				if p.meta {
					sa, sb := hits[idx[a]].score, hits[idx[b]].score
					if sa != sb {
						return sa > sb
					}
					continue
				}
				if c := p.sort.CompareKeys(keys[idx[a]][j], keys[idx[b]][j]); c != 0 {
					return c < 0
				}
			}
			return false
		})
		sorted := make([]textHit, len(hits))
		for i, k := range idx {
			sorted[i] = hits[k]
		}
		hits = sorted
	}
	var out []bson.Raw
	skip := spec.skip
	for _, hit := range hits {
		if spec.limit > 0 && int64(len(out)) >= spec.limit {
			break
		}
		if skip > 0 {
			skip--
			continue
		}
		d := hit.doc
		if spec.projection != nil {
			if d, err = spec.projection.Apply(d); err != nil {
				return nil, err
			}
		}
		if len(tf.projMeta) > 0 {
			if d, err = withScore(d, tf.projMeta, hit.score); err != nil {
				return nil, err
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// withScore sets fields of doc to the score (replacing them when present).
func withScore(doc bson.Raw, fields []string, score float64) (bson.Raw, error) {
	els, err := doc.Elements()
	if err != nil {
		return nil, err
	}
	out := make(bson.D, 0, len(els)+len(fields))
	for _, e := range els {
		if !containsString(fields, e.Key()) {
			out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	for _, f := range fields {
		out = append(out, bson.E{Key: f, Value: score})
	}
	return bson.Marshal(out)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// textMatchIDs is matchIDs for a filter with $text (q; m is the rest of
// the filter): the _ids of the documents the text index finds that match,
// read through w.
func textMatchIDs(w *docstore.Writer, coll *docstore.Collection, q *fts.Query, m *query.Matcher, limit int) ([]bson.RawValue, error) {
	ix := docstore.TextIndex(coll)
	if ix == nil {
		return nil, textIndexRequired()
	}
	q.Bind(ix.Text)
	var ids []bson.RawValue
	var pos docstore.Position
	err := w.Scan(coll, docstore.TextPlan(ix, q.Terms), &pos, func(doc bson.Raw) (bool, error) {
		if !m.Match(doc) {
			return true, nil
		}
		texts, err := ix.Text.Texts(doc)
		if err != nil {
			return false, err
		}
		if !q.Match(texts) {
			return true, nil
		}
		id, err := docstore.IDOf(doc)
		if err != nil {
			return false, err
		}
		ids = append(ids, id)
		return limit == 0 || len(ids) < limit, nil
	})
	return ids, err
}
