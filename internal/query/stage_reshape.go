package query

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// maxBlockingBytes bounds what a blocking stage ($facet, $bucketAuto,
// $setWindowFields, $graphLookup) holds in memory, as mongod's 100 MB
// per-stage limit without allowDiskUse.
const maxBlockingBytes = 100 << 20

// codeMemoryLimit is QueryExceededMemoryLimitNoDiskUseAllowed.
const codeMemoryLimit mongoerr.Code = 292

// drainBounded reads an iterator to the end, failing once the documents
// held exceed maxBlockingBytes.
func drainBounded(ctx context.Context, it Iterator, stage string) ([]bson.Raw, error) {
	var out []bson.Raw
	size := 0
	for {
		d, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if size += len(d); size > maxBlockingBytes {
			return nil, mongoerr.New(codeMemoryLimit, "%s exceeded memory limit of %d bytes, but did not opt in to external sorting.", stage, maxBlockingBytes)
		}
		out = append(out, d)
	}
}

// $replaceRoot / $replaceWith.
func compileReplaceRoot(name string, arg bson.RawValue) (stage, error) {
	newRoot := arg
	if name == "$replaceRoot" {
		if arg.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(40229, "expected an object as specification for $replaceRoot stage, got %s", TypeName(arg.Type))
		}
		found := false
		for _, e := range elems(arg.Value) {
			if e.key != "newRoot" {
				return nil, mongoerr.New(40230, "unrecognized option to $replaceRoot stage: %s, only valid option is 'newRoot'.", e.key)
			}
			newRoot, found = e.val, true
		}
		if !found {
			return nil, mongoerr.New(40231, "no newRoot specified for the $replaceRoot stage")
		}
	}
	x, err := compileExpr(newRoot, 0)
	if err != nil {
		return nil, err
	}
	return mapStage(func(d bson.Raw) (bson.Raw, bool, error) {
		v, err := x.eval(&evalCtx{root: rvDoc(d), current: rvDoc(d)})
		if err != nil {
			return nil, false, err
		}
		if v.Type != bson.TypeEmbeddedDocument {
			shown := debugString(v)
			if isMissing(v) {
				shown = "MISSING"
			}
			return nil, false, mongoerr.New(40228, "'newRoot' expression must evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'. Input document: %s", shown, TypeName(v.Type), debugString(rvDoc(d)))
		}
		return bson.Raw(v.Value), true, nil
	}), nil
}

// $sortByCount: {$group: {_id: expr, count: {$sum: 1}}}, {$sort: {count: -1}}.
func compileSortByCount(arg bson.RawValue) (stage, error) {
	switch arg.Type {
	case bson.TypeEmbeddedDocument:
		if !strings.HasPrefix(firstKey(arg.Value), "$") {
			return nil, mongoerr.New(40147, "the sortByCount field must be defined as a $-prefixed path or an expression inside an object")
		}
	case bson.TypeString:
		if !strings.HasPrefix(stringish(arg), "$") {
			return nil, mongoerr.New(40148, "the sortByCount field must be defined as a $-prefixed path or an expression inside an object")
		}
	default:
		return nil, mongoerr.New(40149, "the sortByCount field must be specified as a string or as an object")
	}
	idx, g := bsoncore.AppendDocumentStart(nil)
	g = appendRawElement(g, "_id", arg)
	g = bsoncore.AppendDocumentElement(g, "count", bsoncore.NewDocumentBuilder().AppendInt32("$sum", 1).Build())
	g, _ = bsoncore.AppendDocumentEnd(g, idx)
	gs, err := compileGroup(rvDoc(g))
	if err != nil {
		return nil, err
	}
	s, err := CompileSort(bson.Raw(bsoncore.NewDocumentBuilder().AppendInt32("count", -1).Build()))
	if err != nil {
		return nil, err
	}
	return seqStage{gs, sortStage{s}}, nil
}

// seqStage runs stages one after the other (a stage that desugars into
// several, as $sortByCount and $bucket in mongod).
type seqStage []stage

func (s seqStage) run(ctx context.Context, p *Pipeline, in Iterator) (Iterator, error) {
	it := in
	for _, st := range s {
		next, err := st.run(ctx, p, it)
		if err != nil {
			it.Close()
			return nil, err
		}
		it = next
	}
	return it, nil
}

// $sample: a uniform random sample of size documents (reservoir
// sampling), in random order.
type sampleStage struct{ size int64 }

func compileSample(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(28745, "the $sample stage specification must be an object")
	}
	var size *int64
	for _, e := range elems(arg.Value) {
		if e.key != "size" {
			return nil, mongoerr.New(28748, "unrecognized option to $sample: %s", e.key)
		}
		if !isNumeric(e.val.Type) {
			return nil, mongoerr.New(28746, "size argument to $sample must be a number")
		}
		f := toNum(e.val).float()
		if f < 0 {
			return nil, mongoerr.New(28747, "size argument to $sample must not be negative")
		}
		n, ok := truncInt64(toNum(e.val))
		if !ok {
			n = 1 << 62
		}
		size = &n
	}
	if size == nil {
		return nil, mongoerr.New(28749, "$sample stage must specify a size")
	}
	return sampleStage{*size}, nil
}

func (s sampleStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	defer in.Close()
	var res []bson.Raw
	size, seen := 0, int64(0)
	for {
		d, err := in.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		seen++
		if int64(len(res)) < s.size {
			res = append(res, d)
			if size += len(d); size > maxBlockingBytes {
				return nil, mongoerr.New(codeMemoryLimit, "$sample exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxBlockingBytes)
			}
			continue
		}
		if j := rand.Int64N(seen); j < s.size {
			res[j] = d
		}
	}
	rand.Shuffle(len(res), func(i, j int) { res[i], res[j] = res[j], res[i] })
	return NewSliceIterator(res), nil
}

// $documents: the documents an expression evaluates to (an array of
// objects), replacing the input.
type documentsStage struct{ e expr }

func compileDocuments(arg bson.RawValue) (stage, error) {
	x, err := compileExpr(arg, 0)
	if err != nil {
		return nil, err
	}
	return documentsStage{x}, nil
}

func (s documentsStage) run(_ context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	in.Close()
	empty := rvDoc(emptyRaw)
	v, err := s.e.eval(&evalCtx{root: empty, current: empty})
	if err != nil {
		return nil, err
	}
	if v.Type != bson.TypeArray {
		return nil, mongoerr.New(5858203, "error during $documents evaluation: an array is expected")
	}
	var docs []bson.Raw
	for _, d := range arrayValues(v.Value) {
		if d.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(40228, "'newRoot' expression must evaluate to an object, but resulting value was: %s. Type of resulting value: '%s'.", debugString(d), TypeName(d.Type))
		}
		docs = append(docs, bson.Raw(d.Value))
	}
	return NewSliceIterator(docs), nil
}

var emptyRaw = []byte{5, 0, 0, 0, 0}

// $facet: every sub-pipeline over the same input, one output document.
type facetStage struct {
	names []string
	subs  []*Pipeline
}

func compileFacet(arg bson.RawValue, src CollectionSource) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument || len(docBody(arg.Value)) == 0 {
		return nil, mongoerr.New(40169, "the $facet specification must be a non-empty object, but found: %s", debugString(arg))
	}
	f := &facetStage{}
	for _, e := range elems(arg.Value) {
		if e.key == "" || strings.HasPrefix(e.key, "$") || strings.Contains(e.key, ".") {
			return nil, mongoerr.New(40352, "$facet pipeline names must follow the naming rules of field path expressions: '%s'", e.key)
		}
		if e.val.Type != bson.TypeArray {
			return nil, mongoerr.New(40170, "arguments to $facet must be arrays, %s is type %s", e.key, TypeName(e.val.Type))
		}
		var stages []bson.Raw
		for _, s := range arrayValues(e.val.Value) {
			if s.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(40171, "elements of arrays in $facet spec must be non-empty objects, %s argument contained an element of type %s: %s", e.key, TypeName(s.Type), debugString(s))
			}
			stages = append(stages, bson.Raw(s.Value))
		}
		p, err := compilePipeline(stages, src, subFacet)
		if err != nil {
			return nil, err
		}
		f.names = append(f.names, e.key)
		f.subs = append(f.subs, p)
	}
	return f, nil
}

func (f *facetStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drainBounded(ctx, in, "$facet")
	in.Close()
	if err != nil {
		return nil, err
	}
	idx, out := bsoncore.AppendDocumentStart(nil)
	for i, p := range f.subs {
		it, err := p.Run(ctx, NewSliceIterator(docs))
		if err != nil {
			return nil, err
		}
		res, err := drainBounded(ctx, it, "$facet")
		it.Close()
		if err != nil {
			return nil, err
		}
		vals := make([]bson.RawValue, len(res))
		for j, r := range res {
			vals[j] = rvDoc(r)
		}
		out = bsoncore.AppendArrayElement(out, f.names[i], buildArray(vals))
		if len(out) > maxBSONObjectSize {
			return nil, mongoerr.New(4031700, "document constructed by $facet is %d bytes, which exceeds the limit of %d bytes", len(out), maxBSONObjectSize)
		}
	}
	out, _ = bsoncore.AppendDocumentEnd(out, idx)
	return NewSliceIterator([]bson.Raw{out}), nil
}

const maxBSONObjectSize = 16 << 20

// $unionWith: the input, then another collection's documents through an
// optional pipeline.
type unionStage struct {
	coll string
	sub  *Pipeline
}

func compileUnionWith(arg bson.RawValue, src CollectionSource) (stage, error) {
	u := &unionStage{}
	var stages []bson.Raw
	switch arg.Type {
	case bson.TypeString:
		u.coll = stringish(arg)
	case bson.TypeEmbeddedDocument:
		for _, e := range elems(arg.Value) {
			switch e.key {
			case "coll":
				if e.val.Type != bson.TypeString {
					return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$unionWith.coll' is the wrong type '%s', expected type 'string'", TypeName(e.val.Type))
				}
				u.coll = stringish(e.val)
			case "pipeline":
				var err error
				if stages, err = subStages(e.val, "$unionWith.pipeline"); err != nil {
					return nil, err
				}
			default:
				return nil, mongoerr.New(40415, "BSON field '$unionWith.%s' is an unknown field.", e.key)
			}
		}
		if u.coll == "" && !startsWithDocuments(stages) {
			return nil, mongoerr.New(mongoerr.FailedToParse, "$unionWith stage without explicit collection must have a pipeline with $documents as first stage")
		}
	default:
		return nil, mongoerr.New(mongoerr.FailedToParse, "the $unionWith stage specification must be an object or string, but found %s", TypeName(arg.Type))
	}
	if src == nil {
		return nil, mongoerr.New(mongoerr.InternalError, "$unionWith needs a collection source")
	}
	p, err := compilePipeline(stages, src, subUnion)
	if err != nil {
		return nil, err
	}
	u.sub = p
	return u, nil
}

// subStages reads a sub-pipeline argument (an array of stage documents).
func subStages(v bson.RawValue, field string) ([]bson.Raw, error) {
	if v.Type != bson.TypeArray {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type 'array'", field, TypeName(v.Type))
	}
	var out []bson.Raw
	for _, s := range arrayValues(v.Value) {
		if s.Type != bson.TypeEmbeddedDocument {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "Each element of the '%s' array must be an object", field)
		}
		out = append(out, bson.Raw(s.Value))
	}
	return out, nil
}

func startsWithDocuments(stages []bson.Raw) bool {
	return len(stages) > 0 && firstKey(stages[0]) == "$documents"
}

func (u *unionStage) run(_ context.Context, p *Pipeline, in Iterator) (Iterator, error) {
	var second Iterator
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		if in != nil {
			d, err := in.Next(ctx)
			if !errors.Is(err, io.EOF) {
				return d, err
			}
			in.Close()
			in = nil
		}
		if second == nil {
			var base Iterator = NewSliceIterator(nil)
			if u.coll != "" {
				var err error
				if base, err = p.src.Scan(ctx, u.coll); err != nil {
					return nil, err
				}
			}
			it, err := u.sub.Run(ctx, base)
			if err != nil {
				return nil, err
			}
			second = it
		}
		return second.Next(ctx)
	}, close: func() error {
		if in != nil {
			in.Close()
		}
		if second != nil {
			second.Close()
		}
		return nil
	}}, nil
}
