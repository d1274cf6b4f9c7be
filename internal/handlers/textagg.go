package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// textScoreField carries a document's text score through an aggregation
// pipeline: the input documents get it, {$meta: "textScore"} reads it,
// inclusion projections keep it and the output loses it.
const textScoreField = "__cmkdb_textScore"

// textPipeline is an aggregation opening with a $match on $text.
type textPipeline struct {
	query  *fts.Query
	filter bson.Raw   // the rest of the $match
	rest   []bson.Raw // the following stages, textScore rewritten
}

func stageName(stage bson.Raw) (string, bson.RawValue) {
	e, err := stage.IndexErr(0)
	if err != nil {
		return "", bson.RawValue{}
	}
	return e.Key(), e.Value()
}

func hasTopLevelText(v bson.RawValue) bool {
	d, ok := v.DocumentOK()
	if !ok {
		return false
	}
	_, err := d.LookupErr("$text")
	return err == nil
}

func usesTextScore(v bson.RawValue) bool {
	if isTextScoreMeta(v) {
		return true
	}
	var vals []bson.RawValue
	switch v.Type {
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		els, err := bson.Raw(v.Value).Elements()
		if err != nil {
			return false
		}
		for _, e := range els {
			vals = append(vals, e.Value())
		}
	}
	for _, x := range vals {
		if usesTextScore(x) {
			return true
		}
	}
	return false
}

// splitTextPipeline finds a $text $match opening stages (nil if none),
// with mongod's errors for $text elsewhere and for textScore without it.
func splitTextPipeline(stages []bson.Raw) (*textPipeline, error) {
	for i, s := range stages {
		if name, v := stageName(s); i > 0 && name == "$match" && hasTopLevelText(v) {
			return nil, mongoerr.New(17313, "$match with $text is only allowed as the first pipeline stage")
		}
	}
	var tp *textPipeline
	if len(stages) > 0 {
		if name, v := stageName(stages[0]); name == "$match" && hasTopLevelText(v) {
			tf, filter, _, _, err := splitTextFind(v.Document(), nil, nil)
			if err != nil {
				return nil, err
			}
			tp = &textPipeline{query: tf.query, filter: filter}
		}
	}
	if tp == nil {
		for _, s := range stages {
			if usesTextScore(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: s}) {
				return nil, mongoerr.New(40218, "query requires text score metadata, but it is not available")
			}
		}
		return nil, nil
	}
	for _, s := range stages[1:] {
		r, err := rewriteTextStage(s)
		if err != nil {
			return nil, err
		}
		tp.rest = append(tp.rest, r)
	}
	return tp, nil
}

// rewriteTextStage replaces {$meta: "textScore"} by the score field.
func rewriteTextStage(stage bson.Raw) (bson.Raw, error) {
	name, v := stageName(stage)
	switch name {
	case "$sort":
		d, ok := v.DocumentOK()
		if !ok {
			return stage, nil
		}
		els, err := d.Elements()
		if err != nil {
			return stage, nil
		}
		out := bson.D{}
		for _, e := range els {
			if isTextScoreMeta(e.Value()) {
				out = append(out, bson.E{Key: textScoreField, Value: int32(-1)})
			} else {
				out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
			}
		}
		return bson.Marshal(bson.D{{Key: name, Value: out}})
	case "$project":
		p := rewriteMeta(v)
		if d, ok := p.(bson.D); ok && isInclusionProjection(d) {
			p = append(d, bson.E{Key: textScoreField, Value: int32(1)})
		}
		return bson.Marshal(bson.D{{Key: name, Value: p}})
	}
	return bson.Marshal(bson.D{{Key: name, Value: rewriteMeta(v)}})
}

func rewriteMeta(v bson.RawValue) any {
	if isTextScoreMeta(v) {
		return "$" + textScoreField
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		els, err := v.Document().Elements()
		if err != nil {
			return v
		}
		out := bson.D{}
		for _, e := range els {
			out = append(out, bson.E{Key: e.Key(), Value: rewriteMeta(e.Value())})
		}
		return out
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return v
		}
		out := bson.A{}
		for _, x := range vals {
			out = append(out, rewriteMeta(x))
		}
		return out
	}
	return v
}

// isInclusionProjection reports whether a $project keeps only what it
// names (anything but _id excluded with 0 or false makes it an exclusion).
func isInclusionProjection(d bson.D) bool {
	for _, e := range d {
		if e.Key == "_id" {
			continue
		}
		if rv, ok := e.Value.(bson.RawValue); ok {
			switch rv.Type {
			case bson.TypeBoolean:
				return rv.Boolean()
			case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
				f, ok := rv.AsFloat64OK()
				return !ok || f != 0
			}
		}
		return true
	}
	return false
}

// textInput is the pipeline input of a $text aggregation: the matching
// documents, each with its score field.
func (h *Handler) textInput(ctx context.Context, db, coll string, tp *textPipeline) (query.Iterator, error) {
	m, err := query.Compile(tp.filter)
	if err != nil {
		return nil, err
	}
	hits, err := h.textSearch(ctx, db, coll, tp.query, m)
	if err != nil {
		return nil, err
	}
	docs := make([]bson.Raw, len(hits))
	for i, hit := range hits {
		if docs[i], err = withScore(hit.doc, []string{textScoreField}, hit.score); err != nil {
			return nil, err
		}
	}
	return query.NewSliceIterator(docs), nil
}

// stripScore drops the score field from a pipeline's output.
type stripScore struct{ it query.Iterator }

func (s stripScore) Next(ctx context.Context) (bson.Raw, error) {
	d, err := s.it.Next(ctx)
	if err != nil || d == nil {
		return d, err
	}
	if _, err := d.LookupErr(textScoreField); err != nil {
		return d, nil
	}
	els, err := d.Elements()
	if err != nil {
		return nil, err
	}
	out := make(bson.D, 0, len(els))
	for _, e := range els {
		if e.Key() != textScoreField {
			out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	return bson.Marshal(out)
}

func (s stripScore) Close() error { return s.it.Close() }
