package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// explain reports the plan a query would use (queryPlanner verbosity
// only): which index and how many key ranges, or a collection scan.
func (h *Handler) explain(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	inner, err := a.doc("explain")
	if err != nil {
		return nil, err
	}
	if inner == nil {
		return nil, mongoerr.New(codeMissingField, "BSON field 'explain.explain' is missing but a required field")
	}
	ia := newArgs(inner)
	collName, err := ia.collection()
	if err != nil {
		return nil, err
	}
	var filter bson.Raw
	switch ia.name {
	case "find":
		filter, err = ia.doc("filter")
	case "count", "distinct", "findAndModify", "findandmodify":
		filter, err = ia.doc("query")
	case "aggregate":
		var vals []bson.RawValue
		if vals, err = ia.array("pipeline"); err == nil {
			var stages []bson.Raw
			for _, v := range vals {
				if d, ok := v.DocumentOK(); ok {
					stages = append(stages, d)
				}
			}
			filter, _ = aggregatePlan(stages)
		}
	case "update", "delete":
		field := map[string]string{"update": "updates", "delete": "deletes"}[ia.name]
		var vals []bson.RawValue
		if vals, err = ia.array(field); err == nil && len(vals) > 0 {
			if d, ok := vals[0].DocumentOK(); ok {
				filter, err = args{cmd: d, name: ia.name + "." + field}.doc("q")
			}
		}
	default:
		return nil, mongoerr.New(mongoerr.NotImplemented, "explain of %s is not supported", ia.name)
	}
	if err != nil {
		return nil, err
	}
	if _, err := parseFindSpec(req.DB, collName, filter, nil, nil, 0, 0); err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	winning := bson.D{{Key: "stage", Value: "EOF"}}
	if st != nil {
		if coll := st.Collection(collName); coll != nil {
			plan, err := docstore.PlanFor(coll, filter)
			if err != nil {
				return nil, err
			}
			winning = planDoc(plan, filter)
		}
	}
	if filter == nil {
		filter = bson.Raw{5, 0, 0, 0, 0}
	}
	return marshal(bson.D{
		{Key: "queryPlanner", Value: bson.D{
			{Key: "namespace", Value: req.DB + "." + collName},
			{Key: "parsedQuery", Value: filter},
			{Key: "winningPlan", Value: winning},
			{Key: "rejectedPlans", Value: bson.A{}},
		}},
		{Key: "command", Value: inner},
		{Key: "serverInfo", Value: bson.D{{Key: "host", Value: h.host}, {Key: "version", Value: ServerVersion}}},
		{Key: "ok", Value: 1.0},
	})
}

func planDoc(p docstore.Plan, filter bson.Raw) bson.D {
	if p.Index == nil {
		return bson.D{{Key: "stage", Value: "COLLSCAN"}, {Key: "direction", Value: "forward"}}
	}
	if p.Index.ID == 0 && len(p.Ranges) == 1 {
		// mongod's fast path for an equality on _id.
		if v, err := filter.LookupErr("_id"); err == nil && v.Type != bson.TypeEmbeddedDocument {
			return bson.D{{Key: "stage", Value: "IDHACK"}}
		}
	}
	return bson.D{{Key: "stage", Value: "FETCH"}, {Key: "inputStage", Value: bson.D{
		{Key: "stage", Value: "IXSCAN"},
		{Key: "keyPattern", Value: p.Index.Key},
		{Key: "indexName", Value: p.Index.Name},
		{Key: "isUnique", Value: p.Index.Unique},
		{Key: "isMultiKey", Value: p.Index.ID != 0},
		{Key: "direction", Value: "forward"},
		{Key: "keyRanges", Value: int32(len(p.Ranges))},
	}}}
}
