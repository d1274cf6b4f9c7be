package query

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// $graphLookup: a breadth-first search over another collection of the
// database. The collection is read once per run (like $lookup), indexed by
// its connectToField values, and each input document's search holds at
// most maxBlockingBytes of visited documents and frontier values (40099
// beyond, as mongod).

type graphLookupStage struct {
	from, as           string
	asParts            []string
	startWith          expr
	fromParts, toParts []string
	depthParts         []string
	maxDepth           int64 // -1: unlimited
	restrict           *Matcher
}

const codeGraphLookupMemory mongoerr.Code = 40099

func compileGraphLookup(arg bson.RawValue, src CollectionSource) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(mongoerr.FailedToParse, "the $graphLookup stage specification must be an object, but found %s", TypeName(arg.Type))
	}
	g := &graphLookupStage{maxDepth: -1}
	var connectFrom, connectTo, depthField string
	hasFrom := false
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "startWith":
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return nil, err
			}
			g.startWith = x
			continue
		case "maxDepth":
			if !isNumeric(e.val.Type) {
				return nil, mongoerr.New(40100, "maxDepth must be numeric, found type: %s", TypeName(e.val.Type))
			}
			f := toNum(e.val).float()
			n, _ := truncInt64(toNum(e.val))
			if f < 0 {
				return nil, mongoerr.New(40101, "maxDepth requires a nonnegative argument, found: %d", n)
			}
			if float64(n) != f {
				return nil, mongoerr.New(40102, "maxDepth could not be represented as a long long: %d", n)
			}
			g.maxDepth = n
			continue
		case "restrictSearchWithMatch":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(40185, "restrictSearchWithMatch must be an object, found %s", TypeName(e.val.Type))
			}
			m, err := Compile(e.val.Value)
			if err != nil {
				return nil, err
			}
			g.restrict = m
			continue
		case "from", "as", "connectFromField", "connectToField", "depthField":
			if e.val.Type != bson.TypeString {
				if e.key == "from" {
					return nil, mongoerr.New(mongoerr.FailedToParse, "$graphLookup 'from' field must be a string, but found %s", TypeName(e.val.Type))
				}
				return nil, mongoerr.New(40103, "expected string as argument for %s, found: %s", e.key, TypeName(e.val.Type))
			}
		default:
			return nil, mongoerr.New(40104, "Unknown argument to $graphLookup: %s", e.key)
		}
		s := stringish(e.val)
		switch e.key {
		case "from":
			if s == "" || strings.ContainsAny(s, "$\x00") {
				return nil, mongoerr.New(mongoerr.InvalidNamespace, "invalid $graphLookup namespace: %s", s)
			}
			g.from, hasFrom = s, true
		case "as":
			g.as = s
		case "connectFromField":
			connectFrom = s
		case "connectToField":
			connectTo = s
		case "depthField":
			depthField = s
		}
	}
	if !hasFrom || g.as == "" || g.startWith == nil || connectFrom == "" || connectTo == "" {
		return nil, mongoerr.New(40105, "$graphLookup requires 'from', 'as', 'startWith', 'connectFromField', and 'connectToField' to be specified.")
	}
	for _, p := range []*struct {
		s   string
		dst *[]string
	}{{g.as, &g.asParts}, {connectFrom, &g.fromParts}, {connectTo, &g.toParts}, {depthField, &g.depthParts}} {
		if p.s == "" {
			continue
		}
		parts, err := fieldPathParts(p.s)
		if err != nil {
			return nil, err
		}
		*p.dst = parts
	}
	if src == nil {
		return nil, mongoerr.New(mongoerr.InternalError, "$graphLookup needs a collection source")
	}
	return g, nil
}

func (g *graphLookupStage) run(ctx context.Context, p *Pipeline, in Iterator) (Iterator, error) {
	fit, err := p.src.Scan(ctx, g.from)
	if err != nil {
		return nil, err
	}
	foreign, err := drainBounded(ctx, fit, "$graphLookup")
	fit.Close()
	if err != nil {
		return nil, err
	}
	// Index the foreign documents the search may reach by their
	// connectToField values (query equality: array elements and the whole
	// array; a missing field is never matched).
	byValue := map[string][]int{}
	for i, f := range foreign {
		if g.restrict != nil && !g.restrict.Match(f) {
			continue
		}
		seen := map[string]bool{}
		walkPath(f, g.toParts, leafExpand, func(v bson.RawValue) bool {
			if isMissing(v) {
				return false
			}
			k := string(EncodeValue(nil, v))
			if !seen[k] {
				seen[k] = true
				byValue[k] = append(byValue[k], i)
			}
			return false
		})
	}
	return &funcIter{next: func(ctx context.Context) (bson.Raw, error) {
		d, err := in.Next(ctx)
		if err != nil {
			return nil, err
		}
		found, err := g.search(ctx, d, foreign, byValue)
		if err != nil {
			return nil, err
		}
		arr := buildArray(found)
		if len(arr) > maxBSONObjectSize {
			return nil, mongoerr.New(mongoerr.BSONObjectTooLarge, "$graphLookup result for one document exceeds %d bytes", maxBSONObjectSize)
		}
		root, err := decodeDoc(d)
		if err != nil {
			return nil, err
		}
		setAggPath(root, g.asParts, rvArray(arr))
		return root.encode(), nil
	}, close: in.Close}, nil
}

func (g *graphLookupStage) search(ctx context.Context, d bson.Raw, foreign []bson.Raw, byValue map[string][]int) ([]bson.RawValue, error) {
	start, err := g.startWith.eval(&evalCtx{root: rvDoc(d), current: rvDoc(d)})
	if err != nil {
		return nil, err
	}
	var frontier []bson.RawValue
	if start.Type == bson.TypeArray {
		frontier = arrayValues(start.Value)
	} else if !isMissing(start) {
		frontier = []bson.RawValue{start}
	}
	visited := map[string]bool{} // by _id
	var out []bson.RawValue
	usage := 0
	for depth := int64(0); len(frontier) > 0 && (g.maxDepth < 0 || depth <= g.maxDepth); depth++ {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		queried := map[string]bool{}
		var next []bson.RawValue
		nextSize := 0
		for _, v := range frontier {
			k := string(EncodeValue(nil, v))
			if queried[k] {
				continue
			}
			queried[k] = true
			for _, i := range byValue[k] {
				f := foreign[i]
				id, ok := lookup(f, "_id")
				if !ok {
					return nil, mongoerr.New(40271, "Documents in the '%s' namespace must contain an _id for de-duplication in $graphLookup", g.from)
				}
				ik := string(EncodeValue(nil, id))
				if visited[ik] {
					continue
				}
				visited[ik] = true
				res := f
				if g.depthParts != nil {
					root, err := decodeDoc(f)
					if err != nil {
						return nil, err
					}
					setAggPath(root, g.depthParts, rvInt64(depth))
					res = root.encode()
				}
				walkPath(f, g.fromParts, leafElems, func(v bson.RawValue) bool {
					if !isMissing(v) && v.Type != bson.TypeUndefined {
						next = append(next, v)
						nextSize += len(v.Value) + 1
					}
					return false
				})
				out = append(out, rvDoc(res))
				usage += len(res) + len(ik)
				if usage+nextSize >= maxBlockingBytes {
					return nil, mongoerr.New(codeGraphLookupMemory, "$graphLookup reached maximum memory consumption")
				}
			}
		}
		frontier = next
	}
	return out, nil
}
