package query

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

type unwindStage struct {
	parts      []string
	indexField string
	preserve   bool
}

func compileUnwind(arg bson.RawValue) (stage, error) {
	u := &unwindStage{}
	var path string
	switch arg.Type {
	case bson.TypeString:
		path = stringish(arg)
	case bson.TypeEmbeddedDocument:
		for _, e := range elems(arg.Value) {
			switch e.key {
			case "path":
				if e.val.Type != bson.TypeString {
					return nil, mongoerr.New(28808, "expected a string as the path for $unwind stage, got %s", TypeName(e.val.Type))
				}
				path = stringish(e.val)
			case "includeArrayIndex":
				if e.val.Type != bson.TypeString || stringish(e.val) == "" || strings.HasPrefix(stringish(e.val), "$") {
					return nil, mongoerr.New(28810, "expected a non-empty string for the includeArrayIndex option to $unwind stage")
				}
				u.indexField = stringish(e.val)
			case "preserveNullAndEmptyArrays":
				if e.val.Type != bson.TypeBoolean {
					return nil, mongoerr.New(28809, "expected a boolean for the preserveNullAndEmptyArrays option to $unwind stage")
				}
				u.preserve = truthy(e.val)
			default:
				return nil, mongoerr.New(28811, "unrecognized option to $unwind stage: %s", e.key)
			}
		}
		if path == "" {
			return nil, mongoerr.New(28812, "no path specified to $unwind stage")
		}
	default:
		return nil, mongoerr.New(15981, "expected either a string or an object as specification for $unwind stage, got %s", TypeName(arg.Type))
	}
	if !strings.HasPrefix(path, "$") {
		return nil, mongoerr.New(28818, "path option to $unwind stage should be prefixed with a '$': %s", path)
	}
	parts, err := fieldPathParts(path[1:])
	if err != nil {
		return nil, err
	}
	if pathParts(u.indexField) > maxFieldPathParts {
		return nil, errFieldPathTooLong()
	}
	u.parts = parts
	return u, nil
}

func (u *unwindStage) run(_ context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	var pending []bson.Raw
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		for len(pending) == 0 {
			d, err := in.Next(ctx)
			if err != nil {
				return nil, err
			}
			if pending, err = u.expand(d); err != nil {
				return nil, err
			}
		}
		d := pending[0]
		pending = pending[1:]
		return d, nil
	}, close: in.Close}, nil
}

func (u *unwindStage) expand(d bson.Raw) ([]bson.Raw, error) {
	v := getPath(d, u.parts)
	withIndex := func(root *mdoc, idx bson.RawValue) bson.Raw {
		if u.indexField != "" {
			setAggPath(root, splitPath(u.indexField), idx)
		}
		return root.encode()
	}
	switch {
	case v.Type == bson.TypeArray:
		vals := arrayValues(v.Value)
		if len(vals) == 0 {
			if !u.preserve {
				return nil, nil
			}
			root, err := decodeDoc(d)
			if err != nil {
				return nil, err
			}
			setAggPath(root, u.parts, missing)
			return []bson.Raw{withIndex(root, rvNull)}, nil
		}
		out := make([]bson.Raw, 0, len(vals))
		for i, e := range vals {
			root, err := decodeDoc(d)
			if err != nil {
				return nil, err
			}
			setAggPath(root, u.parts, e)
			out = append(out, withIndex(root, rvInt64(int64(i))))
		}
		return out, nil
	case isNullish(v):
		if !u.preserve {
			return nil, nil
		}
	}
	// A non-array value unwinds to itself.
	if u.indexField == "" {
		return []bson.Raw{d}, nil
	}
	root, err := decodeDoc(d)
	if err != nil {
		return nil, err
	}
	return []bson.Raw{withIndex(root, rvNull)}, nil
}

type lookupStage struct {
	from, as     string
	localParts   []string
	foreignField string
	// The pipeline form: letNames/letExprs are evaluated per document and
	// substituted into stages; sub is the compiled pipeline when there is
	// no let (the same for every document).
	stages   []bson.Raw
	letNames []string
	letExprs []expr
	sub      *Pipeline
	hasPipe  bool
}

func compileLookup(arg bson.RawValue, src CollectionSource) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.FailedToParse, "the $lookup specification must be an Object")
	}
	l := &lookupStage{}
	var local string
	var letDoc bson.RawValue
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "pipeline":
			st, err := subStages(e.val, "$lookup.pipeline")
			if err != nil {
				return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup argument 'pipeline' must be an array of objects, is type %s", TypeName(e.val.Type))
			}
			l.stages, l.hasPipe = st, true
			continue
		case "let":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup argument 'let' must be an object, is type %s", TypeName(e.val.Type))
			}
			letDoc = e.val
			continue
		}
		if e.val.Type != bson.TypeString {
			return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup argument '%s: %s' must be a string, is type %s", e.key, debugString(e.val), TypeName(e.val.Type))
		}
		s := stringish(e.val)
		switch e.key {
		case "from":
			l.from = s
		case "as":
			l.as = s
		case "localField":
			local = s
		case "foreignField":
			l.foreignField = s
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "unknown argument to $lookup: %s", e.key)
		}
	}
	switch {
	case l.from == "" && !(l.hasPipe && startsWithDocuments(l.stages)):
		return nil, mongoerr.New(mongoerr.FailedToParse, "missing 'from' option to $lookup stage specification")
	case l.as == "":
		return nil, mongoerr.New(mongoerr.FailedToParse, "must specify 'as' field for a $lookup")
	case (local == "") != (l.foreignField == ""):
		return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup requires both or neither of 'localField' and 'foreignField' to be specified")
	case local == "" && !l.hasPipe:
		return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup requires either 'pipeline' or both 'localField' and 'foreignField' to be specified")
	case !isMissing(letDoc) && !l.hasPipe:
		return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup with a 'let' argument must also specify a 'pipeline'")
	}
	for _, p := range []string{local, l.foreignField, l.as} {
		if pathParts(p) > maxFieldPathParts {
			return nil, errFieldPathTooLong()
		}
	}
	if src == nil {
		return nil, mongoerr.New(mongoerr.InternalError, "$lookup needs a collection source")
	}
	if !isMissing(letDoc) {
		for _, e := range elems(letDoc.Value) {
			if err := checkVarName(e.key); err != nil {
				return nil, err
			}
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return nil, err
			}
			l.letNames, l.letExprs = append(l.letNames, e.key), append(l.letExprs, x)
		}
	}
	if l.hasPipe {
		// Compiled once now, so that a malformed sub-pipeline fails before
		// any document is read (with let, again per document).
		sub, err := compilePipeline(l.stages, src, subLookup)
		if err != nil {
			return nil, err
		}
		l.sub = sub
	}
	if local != "" {
		l.localParts = splitPath(local)
	}
	return l, nil
}

func (l *lookupStage) run(ctx context.Context, p *Pipeline, in Iterator) (Iterator, error) {
	// The foreign collection is read once per run, not once per document.
	var foreign []bson.Raw
	if l.from != "" {
		fit, err := p.src.Scan(ctx, l.from)
		if err != nil {
			return nil, err
		}
		foreign, err = drainBounded(ctx, fit, "$lookup")
		fit.Close()
		if err != nil {
			return nil, err
		}
	}
	var fparts []string
	if l.foreignField != "" {
		fparts = splitPath(l.foreignField)
	}
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		d, err := in.Next(ctx)
		if err != nil {
			return nil, err
		}
		candidates := foreign
		if l.localParts != nil {
			candidates = l.equalityMatches(d, foreign, fparts)
		}
		var matched []bson.RawValue
		if l.hasPipe {
			if matched, err = l.runPipeline(ctx, p, d, candidates); err != nil {
				return nil, err
			}
		} else {
			for _, f := range candidates {
				matched = append(matched, rvDoc(f))
			}
		}
		arr := buildArray(matched)
		if len(arr) > maxBSONObjectSize {
			return nil, mongoerr.New(4568, "Total size of documents in %s matching pipeline's $lookup stage exceeds %d bytes", l.from, maxBSONObjectSize)
		}
		root, err := decodeDoc(d)
		if err != nil {
			return nil, err
		}
		setAggPath(root, splitPath(l.as), rvArray(arr))
		return root.encode(), nil
	}, close: in.Close}, nil
}

// equalityMatches returns the foreign documents whose foreignField equals
// one of the local values (array elements included; a missing local field
// matches like null).
func (l *lookupStage) equalityMatches(d bson.Raw, foreign []bson.Raw, fparts []string) []bson.Raw {
	var locals []bson.RawValue
	walkPath(d, l.localParts, leafElems, func(v bson.RawValue) bool {
		if v.Type == bson.TypeUndefined {
			return false // empty array: nothing to match
		}
		if isMissing(v) {
			v = rvNull
		}
		locals = append(locals, v)
		return false
	})
	var out []bson.Raw
	for _, f := range foreign {
		hit := walkPath(f, fparts, leafExpand, func(fv bson.RawValue) bool {
			for _, lv := range locals {
				if compareMatch(opEQ, fv, lv) {
					return true
				}
			}
			return false
		})
		if hit {
			out = append(out, f)
		}
	}
	return out
}

// runPipeline runs the sub-pipeline for one input document over the
// candidate foreign documents, with the let variables bound.
func (l *lookupStage) runPipeline(ctx context.Context, p *Pipeline, d bson.Raw, candidates []bson.Raw) ([]bson.RawValue, error) {
	sub := l.sub
	if len(l.letNames) > 0 {
		vars := make(map[string]bson.RawValue, len(l.letNames))
		ec := &evalCtx{root: rvDoc(d), current: rvDoc(d)}
		for i, x := range l.letExprs {
			v, err := x.eval(ec)
			if err != nil {
				return nil, err
			}
			if isMissing(v) {
				v = rvUndefined
			}
			vars[l.letNames[i]] = v
		}
		stages, err := RewriteLetPipeline(l.stages, vars)
		if err != nil {
			return nil, err
		}
		if sub, err = compilePipeline(stages, p.src, subLookup); err != nil {
			return nil, err
		}
	}
	it, err := sub.Run(ctx, NewSliceIterator(candidates))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	res, err := drainBounded(ctx, it, "$lookup")
	if err != nil {
		return nil, err
	}
	out := make([]bson.RawValue, len(res))
	for i, r := range res {
		out[i] = rvDoc(r)
	}
	return out, nil
}
