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
}

func compileLookup(arg bson.RawValue, src CollectionSource) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.FailedToParse, "the $lookup specification must be an Object")
	}
	l := &lookupStage{}
	var local string
	for _, e := range elems(arg.Value) {
		if e.val.Type != bson.TypeString {
			if e.key == "pipeline" || e.key == "let" {
				return nil, mongoerr.New(mongoerr.NotImplemented, "$lookup with 'pipeline' or 'let' is not supported")
			}
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
	case l.from == "":
		return nil, mongoerr.New(mongoerr.FailedToParse, "missing 'from' option to $lookup stage specification")
	case l.as == "":
		return nil, mongoerr.New(mongoerr.FailedToParse, "must specify 'as' field for a $lookup")
	case local == "" || l.foreignField == "":
		return nil, mongoerr.New(mongoerr.FailedToParse, "$lookup requires both or neither of 'localField' and 'foreignField' to be specified")
	}
	for _, p := range []string{local, l.foreignField, l.as} {
		if pathParts(p) > maxFieldPathParts {
			return nil, errFieldPathTooLong()
		}
	}
	if src == nil {
		return nil, mongoerr.New(mongoerr.InternalError, "$lookup needs a collection source")
	}
	l.localParts = splitPath(local)
	return l, nil
}

func (l *lookupStage) run(ctx context.Context, p *Pipeline, in Iterator) (Iterator, error) {
	// The foreign collection is read once per run, not once per document.
	fit, err := p.src.Scan(ctx, l.from)
	if err != nil {
		return nil, err
	}
	foreign, err := drain(ctx, fit)
	fit.Close()
	if err != nil {
		return nil, err
	}
	fparts := splitPath(l.foreignField)
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		d, err := in.Next(ctx)
		if err != nil {
			return nil, err
		}
		// Local values: every value the path reaches (array elements
		// included); a missing local field matches like null.
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
		var matched []bson.RawValue
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
				matched = append(matched, rvDoc(f))
			}
		}
		root, err := decodeDoc(d)
		if err != nil {
			return nil, err
		}
		setAggPath(root, splitPath(l.as), rvArray(buildArray(matched)))
		return root.encode(), nil
	}, close: in.Close}, nil
}
