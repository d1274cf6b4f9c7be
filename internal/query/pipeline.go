package query

import (
	"context"
	"errors"
	"io"
	"math"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Iterator yields documents; Next returns io.EOF when exhausted.
type Iterator interface {
	Next(ctx context.Context) (bson.Raw, error)
	Close() error
}

// CollectionSource gives $lookup access to other collections.
type CollectionSource interface {
	Scan(ctx context.Context, coll string) (Iterator, error)
}

// SliceIterator iterates over an in-memory slice of documents.
type SliceIterator struct {
	docs []bson.Raw
	i    int
}

// NewSliceIterator returns an Iterator over docs.
func NewSliceIterator(docs []bson.Raw) *SliceIterator { return &SliceIterator{docs: docs} }

// Next implements Iterator.
func (s *SliceIterator) Next(context.Context) (bson.Raw, error) {
	if s.i >= len(s.docs) {
		return nil, io.EOF
	}
	s.i++
	return s.docs[s.i-1], nil
}

// Close implements Iterator.
func (s *SliceIterator) Close() error { return nil }

// Pipeline is a compiled aggregation pipeline. It is immutable; Run may be
// called concurrently.
type Pipeline struct {
	stages []stage
	src    CollectionSource
}

// stage transforms a document stream.
type stage interface {
	run(ctx context.Context, p *Pipeline, in Iterator) (Iterator, error)
}

// funcIter adapts a closure to Iterator.
type funcIter struct {
	next  func(ctx context.Context) (bson.Raw, error)
	close func() error
}

func (f *funcIter) Next(ctx context.Context) (bson.Raw, error) { return f.next(ctx) }
func (f *funcIter) Close() error                               { return f.close() }

// subKind says where a pipeline runs: at the top of a command, or inside
// another stage (which restricts the stages it may hold).
type subKind int

const (
	subTop subKind = iota
	subFacet
	subLookup
	subUnion
)

// CompilePipeline compiles the stages (each a one-field document). src
// may be nil if the pipeline reads no other collection. $out and $merge
// are the command handler's (they write): here they are refused.
func CompilePipeline(stages []bson.Raw, src CollectionSource) (*Pipeline, error) {
	return compilePipeline(stages, src, subTop)
}

// onlyFirst are the stages that must open their pipeline.
var onlyFirst = map[string]bool{"$documents": true, "$changeStream": true, "$collStats": true, "$indexStats": true, "$currentOp": true}

func compilePipeline(stages []bson.Raw, src CollectionSource, kind subKind) (*Pipeline, error) {
	p := &Pipeline{src: src}
	for i, s := range stages {
		if err := validateDoc(s); err != nil {
			return nil, badValue("invalid pipeline stage: %v", err)
		}
		es := elems(s)
		if len(es) != 1 {
			return nil, mongoerr.New(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		name := es[0].key
		if onlyFirst[name] && i > 0 {
			return nil, mongoerr.New(40602, "%s is only valid as the first stage in a pipeline", name)
		}
		switch {
		case kind == subFacet && facetForbidden[name]:
			return nil, mongoerr.New(40600, "%s is not allowed to be used within a $facet stage", name)
		case kind == subLookup && (name == "$out" || name == "$merge"):
			return nil, mongoerr.New(51047, "%s is not allowed within a $lookup's sub-pipeline", name)
		case kind == subUnion && (name == "$out" || name == "$merge"):
			return nil, mongoerr.New(31441, "%s is not allowed within a $unionWith's sub-pipeline", name)
		case name == "$out" || name == "$merge":
			return nil, mongoerr.New(40601, "%s can only be the final stage in the pipeline", name)
		}
		st, err := compileStage(name, es[0].val, src)
		if err != nil {
			return nil, err
		}
		p.stages = append(p.stages, st)
	}
	return p, nil
}

// Run executes the pipeline over in. The returned iterator owns in.
func (p *Pipeline) Run(ctx context.Context, in Iterator) (Iterator, error) {
	it := in
	for _, s := range p.stages {
		next, err := s.run(ctx, p, it)
		if err != nil {
			it.Close()
			return nil, err
		}
		it = next
	}
	return it, nil
}

// drain reads an iterator to the end.
func drain(ctx context.Context, it Iterator) ([]bson.Raw, error) {
	var out []bson.Raw
	for {
		d, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
}

func compileStage(name string, arg bson.RawValue, src CollectionSource) (stage, error) {
	switch name {
	case "$match":
		if arg.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(15959, "the match filter must be an expression in an object")
		}
		m, err := Compile(arg.Value)
		if err != nil {
			return nil, err
		}
		return mapStage(func(d bson.Raw) (bson.Raw, bool, error) { return d, m.Match(d), nil }), nil
	case "$project":
		if arg.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(15969, "$project specification must be an object")
		}
		pr, err := compileProjection(arg.Value, true)
		if err != nil {
			return nil, err
		}
		return mapStage(func(d bson.Raw) (bson.Raw, bool, error) {
			out, err := pr.Apply(d)
			return out, true, err
		}), nil
	case "$unset":
		var fields []string
		switch arg.Type {
		case bson.TypeString:
			fields = []string{stringish(arg)}
		case bson.TypeArray:
			for _, v := range arrayValues(arg.Value) {
				if v.Type != bson.TypeString {
					return nil, mongoerr.New(31120, "$unset specification must be a string or an array containing only string values")
				}
				fields = append(fields, stringish(v))
			}
		default:
			return nil, mongoerr.New(31002, "$unset specification must be a string or an array")
		}
		idx, spec := bsoncore.AppendDocumentStart(nil)
		for _, f := range fields {
			spec = bsoncore.AppendInt32Element(spec, f, 0)
		}
		spec, _ = bsoncore.AppendDocumentEnd(spec, idx)
		pr, err := compileProjection(spec, true)
		if err != nil {
			return nil, err
		}
		return mapStage(func(d bson.Raw) (bson.Raw, bool, error) {
			out, err := pr.Apply(d)
			return out, true, err
		}), nil
	case "$addFields", "$set":
		return compileAddFields(name, arg)
	case "$sort":
		if arg.Type != bson.TypeEmbeddedDocument || len(docBody(arg.Value)) == 0 {
			return nil, mongoerr.New(15976, "$sort stage must have at least one sort key")
		}
		s, err := CompileSort(arg.Value)
		if err != nil {
			return nil, err
		}
		return sortStage{s}, nil
	case "$skip", "$limit":
		n, ok := nonNegInt(arg)
		if !ok {
			return nil, mongoerr.New(15956, "invalid argument to %s stage: %s", name, debugString(arg))
		}
		if name == "$limit" {
			if n == 0 {
				return nil, mongoerr.New(15958, "the limit must be positive")
			}
			return limitStage{n}, nil
		}
		return skipStage{n}, nil
	case "$count":
		f := stringish(arg)
		if arg.Type != bson.TypeString || f == "" {
			return nil, mongoerr.New(40156, "the count field must be a non-empty string")
		}
		if strings.HasPrefix(f, "$") {
			return nil, mongoerr.New(40158, "the count field cannot be a $-prefixed path")
		}
		if strings.Contains(f, ".") {
			return nil, mongoerr.New(40160, "the count field cannot contain '.'")
		}
		return countStage{f}, nil
	case "$group":
		return compileGroup(arg)
	case "$unwind":
		return compileUnwind(arg)
	case "$lookup":
		return compileLookup(arg, src)
	case "$replaceRoot", "$replaceWith":
		return compileReplaceRoot(name, arg)
	case "$sortByCount":
		return compileSortByCount(arg)
	case "$sample":
		return compileSample(arg)
	case "$documents":
		return compileDocuments(arg)
	case "$facet":
		return compileFacet(arg, src)
	case "$unionWith":
		return compileUnionWith(arg, src)
	case "$bucket":
		return compileBucket(arg)
	case "$bucketAuto":
		return compileBucketAuto(arg)
	case "$setWindowFields":
		return compileSetWindowFields(arg)
	case "$graphLookup":
		return compileGraphLookup(arg, src)
	case "$indexStats":
		return nil, mongoerr.New(mongoerr.NotImplemented, "$indexStats is supported only as the first stage of a top-level aggregate on a collection")
	}
	return nil, mongoerr.New(40324, "Unrecognized pipeline stage name: '%s'", name)
}

// facetForbidden are the stages a $facet sub-pipeline may not hold.
var facetForbidden = map[string]bool{
	"$facet": true, "$out": true, "$merge": true, "$changeStream": true, "$collStats": true,
	"$indexStats": true, "$documents": true, "$currentOp": true, "$geoNear": true, "$search": true,
}

func nonNegInt(v bson.RawValue) (int64, bool) {
	if !isNumeric(v.Type) {
		return 0, false
	}
	f := toNum(v).float()
	if f < 0 || f != math.Trunc(f) {
		return 0, false
	}
	n, ok := truncInt64(toNum(v))
	return n, ok
}

// mapStage is a streaming 1:1 (or filtering) stage.
type mapStage func(bson.Raw) (bson.Raw, bool, error)

func (m mapStage) run(_ context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		for {
			d, err := in.Next(ctx)
			if err != nil {
				return nil, err
			}
			out, keep, err := m(d)
			if err != nil {
				return nil, err
			}
			if keep {
				return out, nil
			}
		}
	}, close: in.Close}, nil
}

type skipStage struct{ n int64 }

func (s skipStage) run(_ context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	skipped := int64(0)
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		for skipped < s.n {
			if _, err := in.Next(ctx); err != nil {
				return nil, err
			}
			skipped++
		}
		return in.Next(ctx)
	}, close: in.Close}, nil
}

type limitStage struct{ n int64 }

func (l limitStage) run(_ context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	seen := int64(0)
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		if seen >= l.n {
			return nil, io.EOF
		}
		seen++
		return in.Next(ctx)
	}, close: in.Close}, nil
}

type sortStage struct{ s *Sort }

func (s sortStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drain(ctx, in)
	in.Close()
	if err != nil {
		return nil, err
	}
	keys := make([][]bson.RawValue, len(docs))
	for i, d := range docs {
		keys[i] = s.s.Key(d)
	}
	idx := make([]int, len(docs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return s.s.CompareKeys(keys[idx[a]], keys[idx[b]]) < 0 })
	out := make([]bson.Raw, len(docs))
	for i, j := range idx {
		out[i] = docs[j]
	}
	return NewSliceIterator(out), nil
}

type countStage struct{ field string }

func (c countStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drain(ctx, in)
	in.Close()
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return NewSliceIterator(nil), nil
	}
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = bsoncore.AppendInt32Element(d, c.field, int32(len(docs)))
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return NewSliceIterator([]bson.Raw{d}), nil
}

// $addFields / $set: computed fields, dotted paths create documents and
// map over arrays of documents.
type addField struct {
	parts []string
	e     expr
}

func compileAddFields(name string, arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40272, "%s specification stage must be an object", name)
	}
	var fields []addField
	var walk func(prefix []string, doc []byte) error
	walk = func(prefix []string, doc []byte) error {
		for _, e := range elems(doc) {
			if strings.HasPrefix(e.key, "$") {
				return mongoerr.New(codeFieldNameDollar, "FieldPath field names may not start with '$'")
			}
			sub, err := splitFieldPath(len(prefix), e.key)
			if err != nil {
				return err
			}
			parts := append(append([]string{}, prefix...), sub...)
			if e.val.Type == bson.TypeEmbeddedDocument && !isOperatorDoc(e.val) && len(docBody(e.val.Value)) > 0 {
				if err := walk(parts, e.val.Value); err != nil {
					return err
				}
				continue
			}
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return err
			}
			fields = append(fields, addField{parts, x})
		}
		return nil
	}
	if err := walk(nil, arg.Value); err != nil {
		return nil, err
	}
	return mapStage(func(d bson.Raw) (bson.Raw, bool, error) {
		root, err := decodeDoc(d)
		if err != nil {
			return nil, false, err
		}
		ec := &evalCtx{root: rvDoc(d), current: rvDoc(d)}
		for _, f := range fields {
			v, err := f.e.eval(ec)
			if err != nil {
				return nil, false, err
			}
			setAggPath(root, f.parts, v)
		}
		return root.encode(), true, nil
	}), nil
}

// setAggPath sets a dotted path with aggregation semantics: missing values
// remove the field, non-document intermediates are replaced by documents,
// and arrays are mapped over.
func setAggPath(d *mdoc, parts []string, v bson.RawValue) {
	if len(parts) == 1 {
		if isMissing(v) {
			d.remove(parts[0])
			return
		}
		d.set(parts[0], mustDecode(v))
		return
	}
	child, ok := d.get(parts[0])
	switch c := child.(type) {
	case *mdoc:
		setAggPath(c, parts[1:], v)
		return
	case *marr:
		for i, e := range c.elems {
			sub, ok := e.(*mdoc)
			if !ok {
				sub = &mdoc{}
				c.elems[i] = sub
			}
			setAggPath(sub, parts[1:], v)
		}
		return
	}
	_ = ok
	sub := &mdoc{}
	setAggPath(sub, parts[1:], v)
	d.set(parts[0], sub)
}
