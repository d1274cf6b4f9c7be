package query

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Constants bound by a command's let (and, per document, by $lookup's let)
// are substituted into the text of a filter or pipeline: every $$name
// reference in an expression context becomes {$literal: value}. Outside
// expressions (a plain field condition like {a: "$$x"}) the string is data,
// as in mongod, and stays. A name that an inner $let, $map, $filter,
// $reduce or $lookup binds again would shadow the constant: such input is
// refused rather than rewritten wrongly.

func letNotSupported(format string, args ...any) error {
	return mongoerr.New(mongoerr.NotImplemented, format, args...)
}

func mustElements(d bson.Raw) []bson.RawElement {
	es, _ := d.Elements()
	return es
}

// RewriteLetFilter rewrites the $$ references inside a filter's $expr clauses.
func RewriteLetFilter(filter bson.Raw, vars map[string]bson.RawValue) (bson.Raw, error) {
	if len(vars) == 0 || len(filter) <= 5 {
		return filter, nil
	}
	d, err := rewriteFilter(filter, vars)
	if err != nil {
		return nil, err
	}
	return bson.Marshal(d)
}

func rewriteFilter(filter bson.Raw, vars map[string]bson.RawValue) (bson.D, error) {
	elems, err := filter.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid filter: %v", err)
	}
	out := make(bson.D, 0, len(elems))
	for _, e := range elems {
		v := e.Value()
		switch e.Key() {
		case "$expr":
			x, err := rewriteExpr(v, vars, 0)
			if err != nil {
				return nil, err
			}
			out = append(out, bson.E{Key: e.Key(), Value: x})
		case "$and", "$or", "$nor":
			arr, ok := v.ArrayOK()
			if !ok {
				out = append(out, bson.E{Key: e.Key(), Value: v})
				continue
			}
			vals, _ := arr.Values()
			items := bson.A{}
			for _, it := range vals {
				sub, ok := it.DocumentOK()
				if !ok {
					items = append(items, it)
					continue
				}
				r, err := rewriteFilter(sub, vars)
				if err != nil {
					return nil, err
				}
				items = append(items, r)
			}
			out = append(out, bson.E{Key: e.Key(), Value: items})
		default:
			out = append(out, bson.E{Key: e.Key(), Value: v})
		}
	}
	return out, nil
}

// binders are the expression operators that define variables of their own.
var binders = map[string]bool{"$let": true, "$map": true, "$filter": true, "$reduce": true}

// rewriteExpr replaces $$name references in an aggregation expression.
func rewriteExpr(v bson.RawValue, vars map[string]bson.RawValue, depth int) (any, error) {
	if depth > 200 {
		return nil, mongoerr.New(mongoerr.BadValue, "expression nested too deeply")
	}
	switch v.Type {
	case bson.TypeString:
		s := v.StringValue()
		if !strings.HasPrefix(s, "$$") {
			return v, nil
		}
		name, path, _ := strings.Cut(s[2:], ".")
		val, ok := vars[name]
		if !ok {
			return v, nil
		}
		if path != "" {
			var err error
			if val, err = letPath(val, path); err != nil {
				return nil, err
			}
		}
		return bson.D{{Key: "$literal", Value: val}}, nil
	case bson.TypeEmbeddedDocument:
		elems, err := v.Document().Elements()
		if err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "invalid expression: %v", err)
		}
		out := make(bson.D, 0, len(elems))
		for _, e := range elems {
			if e.Key() == "$literal" {
				out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
				continue
			}
			if binders[e.Key()] && rebinds(e.Value(), vars) {
				return nil, letNotSupported("a 'let' variable redefined inside %s is not supported", e.Key())
			}
			x, err := rewriteExpr(e.Value(), vars, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, bson.E{Key: e.Key(), Value: x})
		}
		return out, nil
	case bson.TypeArray:
		vals, _ := v.Array().Values()
		out := make(bson.A, 0, len(vals))
		for _, it := range vals {
			x, err := rewriteExpr(it, vars, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	}
	return v, nil
}

// rebinds reports whether a $let/$map/$filter/$reduce spec binds one of
// the let names again ($let's vars, the others' "as").
func rebinds(spec bson.RawValue, vars map[string]bson.RawValue) bool {
	d, ok := spec.DocumentOK()
	if !ok {
		return false
	}
	if as, ok := d.Lookup("as").StringValueOK(); ok {
		if _, clash := vars[as]; clash {
			return true
		}
	}
	if vd, ok := d.Lookup("vars").DocumentOK(); ok {
		elems, _ := vd.Elements()
		for _, e := range elems {
			if _, clash := vars[e.Key()]; clash {
				return true
			}
		}
	}
	// $reduce binds $$this and $$value, which are not user names.
	return false
}

// letPath resolves $$name.a.b through embedded documents.
func letPath(v bson.RawValue, path string) (bson.RawValue, error) {
	for _, p := range strings.Split(path, ".") {
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			next, err := v.Document().LookupErr(p)
			if err != nil {
				return bson.RawValue{Type: bson.TypeUndefined}, nil
			}
			v = next
		case bson.TypeArray:
			return bson.RawValue{}, letNotSupported("a path through an array in a 'let' variable is not supported")
		default:
			return bson.RawValue{Type: bson.TypeUndefined}, nil
		}
	}
	return v, nil
}

// RewriteLetPipeline rewrites the $$ references of an aggregation pipeline: in
// $match only inside $expr, in $lookup's sub-pipeline recursively (unless
// its own let rebinds a name), elsewhere in every expression.
func RewriteLetPipeline(stages []bson.Raw, vars map[string]bson.RawValue) ([]bson.Raw, error) {
	if len(vars) == 0 {
		return stages, nil
	}
	out := make([]bson.Raw, len(stages))
	for i, st := range stages {
		elems, err := st.Elements()
		if err != nil || len(elems) != 1 {
			out[i] = st // the pipeline compiler reports the shape error
			continue
		}
		name, v := elems[0].Key(), elems[0].Value()
		var nv any
		switch name {
		case "$match":
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			if nv, err = rewriteFilter(d, vars); err != nil {
				return nil, err
			}
		case "$lookup":
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			if ld, ok := d.Lookup("let").DocumentOK(); ok {
				for _, e := range mustElements(ld) {
					if _, clash := vars[e.Key()]; clash {
						return nil, letNotSupported("a 'let' variable redefined by $lookup's let is not supported")
					}
				}
			}
			nd := bson.D{}
			for _, e := range mustElements(d) {
				var x any = e.Value()
				switch e.Key() {
				case "pipeline":
					x, err = rewriteSubPipeline(e.Value(), vars)
				case "let":
					x, err = rewriteExpr(e.Value(), vars, 0)
				}
				if err != nil {
					return nil, err
				}
				nd = append(nd, bson.E{Key: e.Key(), Value: x})
			}
			nv = nd
		case "$graphLookup":
			// startWith is an expression; restrictSearchWithMatch a query
			// filter ($$ only inside $expr).
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			nd := bson.D{}
			for _, e := range mustElements(d) {
				var x any = e.Value()
				switch e.Key() {
				case "startWith":
					x, err = rewriteExpr(e.Value(), vars, 0)
				case "restrictSearchWithMatch":
					if fd, ok := e.Value().DocumentOK(); ok {
						x, err = rewriteFilter(fd, vars)
					}
				}
				if err != nil {
					return nil, err
				}
				nd = append(nd, bson.E{Key: e.Key(), Value: x})
			}
			nv = nd
		case "$facet", "$unionWith":
			d, ok := v.DocumentOK()
			if !ok {
				out[i] = st
				continue
			}
			nd := bson.D{}
			for _, e := range mustElements(d) {
				var x any = e.Value()
				if name == "$facet" || e.Key() == "pipeline" {
					if x, err = rewriteSubPipeline(e.Value(), vars); err != nil {
						return nil, err
					}
				}
				nd = append(nd, bson.E{Key: e.Key(), Value: x})
			}
			nv = nd
		default:
			if nv, err = rewriteExpr(v, vars, 0); err != nil {
				return nil, err
			}
		}
		raw, err := bson.Marshal(bson.D{{Key: name, Value: nv}})
		if err != nil {
			return nil, err
		}
		out[i] = raw
	}
	return out, nil
}

// rewriteSubPipeline rewrites a stage's sub-pipeline argument; anything
// but an array of documents is left for the pipeline compiler to refuse.
func rewriteSubPipeline(v bson.RawValue, vars map[string]bson.RawValue) (any, error) {
	arr, ok := v.ArrayOK()
	if !ok {
		return v, nil
	}
	vals, _ := arr.Values()
	sub := make([]bson.Raw, 0, len(vals))
	for _, x := range vals {
		sd, ok := x.DocumentOK()
		if !ok {
			return v, nil
		}
		sub = append(sub, sd)
	}
	rs, err := RewriteLetPipeline(sub, vars)
	if err != nil {
		return nil, err
	}
	ra := bson.A{}
	for _, r := range rs {
		ra = append(ra, r)
	}
	return ra, nil
}
