package handlers

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// distinctValues appends the values path reaches in doc, as distinct sees
// them: arrays along the path are traversed, an array at the end
// contributes its elements (not itself), and a missing field contributes
// nothing.
func distinctValues(out []bson.RawValue, v bson.RawValue, parts []string) []bson.RawValue {
	if len(parts) == 0 {
		if v.Type == bson.TypeArray {
			elems, _ := v.Array().Values()
			return append(out, elems...)
		}
		return append(out, v)
	}
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		next, err := v.Document().LookupErr(parts[0])
		if err != nil {
			return out
		}
		return distinctValues(out, next, parts[1:])
	case bson.TypeArray:
		arr := v.Array()
		if i, err := strconv.Atoi(parts[0]); err == nil && i >= 0 {
			// A numeric component indexes the array.
			if next, err := arr.IndexErr(uint(i)); err == nil {
				return distinctValues(out, next, parts[1:])
			}
			return out
		}
		elems, _ := arr.Values()
		for _, e := range elems {
			if e.Type == bson.TypeEmbeddedDocument {
				out = distinctValues(out, e, parts)
			}
		}
	}
	return out
}

func (h *Handler) distinct(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "distinct"); err != nil {
		return nil, err
	}
	if isOplogNS(req.DB, collName) && h.opts.Repl != nil {
		return nil, mongoerr.New(mongoerr.NotImplemented, "distinct on local.oplog.rs is not supported: use an aggregation ($group) on it")
	}
	if !a.has("key") {
		return nil, mongoerr.New(codeMissingField, "BSON field 'distinct.key' is missing but a required field")
	}
	key, err := a.string("key")
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, mongoerr.New(40352, "FieldPath cannot be constructed with empty string")
	}
	if err := query.CheckFieldPathLength(key); err != nil {
		return nil, err
	}
	parts := strings.Split(key, ".")
	for _, p := range parts {
		if p == "" {
			return nil, mongoerr.New(15998, "FieldPath field names may not be empty strings.")
		}
		if strings.HasPrefix(p, "$") {
			return nil, mongoerr.New(16410, "FieldPath field names may not start with '$'.")
		}
	}
	filter, err := a.doc("query")
	if err != nil {
		return nil, err
	}
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return nil, err
		}
	}
	spec, err := parseFindSpec(req.DB, collName, filter, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	var vals []bson.RawValue
	src := &scanSource{spec: spec}
	for {
		docs, done, err := src.next(ctx, h, 1<<12)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			vals = distinctValues(vals, bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: d}, parts)
		}
		// Dedupe as we go so memory follows the distinct values, not the
		// documents.
		vals = dedupe(vals)
		if done {
			break
		}
	}
	out := make(bson.A, len(vals))
	size := 0
	for i, v := range vals {
		out[i] = v
		size += len(v.Value) + 8
	}
	if size > maxBSONSize {
		return nil, mongoerr.New(17217, "distinct too big, 16mb cap")
	}
	return marshal(bson.D{{Key: "values", Value: out}, {Key: "ok", Value: 1.0}})
}

// dedupe sorts vals in MongoDB's order and drops values equal under
// query.Compare (so 1 and 1.0 count once, as in mongod).
func dedupe(vals []bson.RawValue) []bson.RawValue {
	sort.SliceStable(vals, func(i, j int) bool { return query.Compare(vals[i], vals[j]) < 0 })
	out := vals[:0]
	for i, v := range vals {
		if i > 0 && query.Compare(out[len(out)-1], v) == 0 {
			continue
		}
		out = append(out, v)
	}
	return out
}
