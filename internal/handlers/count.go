package handlers

import (
	"context"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// count answers the count command (EstimatedDocumentCount in the drivers,
// and count() in old shells). Without a query, skip or limit it counts the
// collection's keys without reading documents.
func (h *Handler) count(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "count"); err != nil {
		return nil, err
	}
	hint, natural, err := parseHint(a)
	if err != nil {
		return nil, err
	}
	filter, err := a.doc("query")
	if err != nil {
		return nil, err
	}
	skip, err := a.int64("skip", 0)
	if err != nil {
		return nil, err
	}
	limit, err := a.int64("limit", 0)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		limit = -limit // as mongod: a negative limit counts like its absolute value
	}
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return nil, err
		}
	}
	tf, filter, _, _, err := splitTextFind(filter, nil, nil) // text.go
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(req.DB, collName, filter, nil, nil, skip, limit)
	if err != nil {
		return nil, err
	}
	spec.hint, spec.natural = hint, natural
	var n int64
	if tf != nil {
		docs, err := h.collectText(ctx, spec, tf)
		if err != nil {
			return nil, err
		}
		n = int64(len(docs))
	} else if isOplogNS(req.DB, collName) && h.opts.Repl != nil {
		// A member's oplog is served from its oplog store (oplogfind.go).
		if hint.Type != 0 {
			return nil, mongoerr.New(mongoerr.BadValue, "local.oplog.rs has no indexes to hint")
		}
		src := &oplogSource{spec: spec}
		src.pos = startAfter(spec.filter)
		for {
			docs, done, err := src.next(ctx, h, 1<<16)
			if err != nil {
				return nil, err
			}
			n += int64(len(docs))
			if done {
				break
			}
		}
	} else if len(filter) <= 5 && skip == 0 && limit == 0 && hint.Type == 0 {
		st, release, err := h.store(req.DB, false)
		if err != nil {
			return nil, err
		}
		if st != nil {
			if coll := st.Collection(collName); coll != nil {
				n, err = st.Count(ctx, coll)
			}
		}
		release()
		if err != nil {
			return nil, err
		}
	} else {
		src := &scanSource{spec: spec}
		for {
			docs, done, err := src.next(ctx, h, 1<<16)
			if err != nil {
				return nil, err
			}
			n += int64(len(docs))
			if done {
				break
			}
		}
	}
	return marshal(bson.D{{Key: "n", Value: intValue(n)}, {Key: "ok", Value: 1.0}})
}

// intValue is n as an int32 when it fits, as mongod replies, else int64.
func intValue(n int64) any {
	if n >= math.MinInt32 && n <= math.MaxInt32 {
		return int32(n)
	}
	return n
}
