package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// collModUnsupported are collMod options mongod 7.0 has and cmkdb does
// not implement; each is refused rather than ignored.
var collModUnsupported = map[string]string{
	"viewOn":                       "views are not supported",
	"pipeline":                     "views are not supported",
	"expireAfterSeconds":           "TTL (expireAfterSeconds) is not supported",
	"timeseries":                   "time series collections are not supported",
	"changeStreamPreAndPostImages": "change streams are not supported",
	"cappedSize":                   "resizing a capped collection (cappedSize) is not supported",
	"cappedMax":                    "resizing a capped collection (cappedMax) is not supported",
	"recordPreImages":              "recordPreImages is not supported",
	"dryRun":                       "collMod dryRun is not supported",
}

// collMod changes a collection's validation options (validator,
// validationLevel, validationAction) and an index's expireAfterSeconds or
// hidden (index: {name | keyPattern, expireAfterSeconds, hidden}).
func (h *Handler) collMod(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	coll, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "collMod"); err != nil {
		return nil, err
	}
	for _, e := range mustElements(a.cmd) {
		if msg, ok := collModUnsupported[e.Key()]; ok {
			return nil, notSupported("%s", msg)
		}
	}
	var ch docstore.ValidationChange
	if a.has("validator") {
		v, err := a.doc("validator")
		if err != nil {
			return nil, err
		}
		if v == nil {
			v = bson.Raw{}
		}
		ch.Validator = &v
	}
	if a.has("validationLevel") {
		s, err := enumField(a, "validationLevel", "strict", "moderate", "off")
		if err != nil {
			return nil, err
		}
		ch.ValidationLevel = &s
	}
	if a.has("validationAction") {
		s, err := enumField(a, "validationAction", "error", "warn")
		if err != nil {
			return nil, err
		}
		ch.ValidationAction = &s
	}
	var ir *collModIndex
	if v, ok := a.value("index"); ok && v.Type != bson.TypeNull {
		if ir, err = parseCollModIndex(v); err != nil {
			return nil, err
		}
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var cl *docstore.Collection
	if st != nil {
		cl = st.Collection(coll)
	}
	if cl == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", req.DB, coll)
	}
	var name string
	if ir != nil {
		// Check the whole request before changing anything.
		if name, err = ir.resolve(cl, req.DB); err != nil {
			return nil, err
		}
	}
	if _, _, err := st.ChangeValidation(coll, ch); err != nil {
		return nil, err
	}
	reply := bson.D{}
	if ir != nil {
		before, after, err := st.ModifyIndex(coll, name, ir.change)
		if err != nil {
			return nil, err
		}
		if ir.change.ExpireAfterSeconds != nil {
			if before.TTL {
				reply = append(reply, bson.E{Key: "expireAfterSeconds_old", Value: before.ExpireAfterSeconds})
			}
			reply = append(reply, bson.E{Key: "expireAfterSeconds_new", Value: after.ExpireAfterSeconds})
		}
		if ir.change.Hidden != nil {
			reply = append(reply, bson.E{Key: "hidden_old", Value: before.Hidden}, bson.E{Key: "hidden_new", Value: after.Hidden})
		}
	}
	return marshal(append(reply, bson.E{Key: "ok", Value: 1.0}))
}

// collModIndex is collMod's index argument.
type collModIndex struct {
	name       string
	keyPattern bson.Raw
	change     docstore.IndexChange
}

func parseCollModIndex(v bson.RawValue) (*collModIndex, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'collMod.index' is the wrong type '%s', expected type 'object'", typeName(v.Type))
	}
	ir := &collModIndex{}
	elems, _ := d.Elements()
	for _, e := range elems {
		ev := e.Value()
		switch k := e.Key(); k {
		case "name":
			if ir.name, ok = ev.StringValueOK(); !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'collMod.index.name' is the wrong type '%s', expected type 'string'", typeName(ev.Type))
			}
		case "keyPattern":
			if ir.keyPattern, ok = ev.DocumentOK(); !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'collMod.index.keyPattern' is the wrong type '%s', expected type 'object'", typeName(ev.Type))
			}
		case "expireAfterSeconds":
			secs, err := ttlSeconds(ev, mongoerr.TypeMismatch, mongoerr.InvalidOptions)
			if err != nil {
				return nil, err
			}
			ir.change.ExpireAfterSeconds = &secs
		case "hidden":
			if ev.Type != bson.TypeBoolean {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'collMod.index.hidden' is the wrong type '%s', expected type 'bool'", typeName(ev.Type))
			}
			h := ev.Boolean()
			ir.change.Hidden = &h
		case "unique", "prepareUnique", "forceNonUnique":
			return nil, notSupported("collMod index option '%s' is not supported", k)
		default:
			return nil, mongoerr.New(codeUnknownField, "BSON field 'collMod.index.%s' is an unknown field.", k)
		}
	}
	switch {
	case ir.name != "" && ir.keyPattern != nil:
		return nil, mongoerr.New(mongoerr.InvalidOptions, "Cannot specify both key pattern and name.")
	case ir.name == "" && ir.keyPattern == nil:
		return nil, mongoerr.New(mongoerr.InvalidOptions, "Must specify either index name or key pattern.")
	case ir.change.ExpireAfterSeconds == nil && ir.change.Hidden == nil:
		return nil, mongoerr.New(mongoerr.InvalidOptions, "no expireAfterSeconds, hidden, unique, or prepareUnique field")
	}
	return ir, nil
}

// resolve finds the index the request names and checks the change
// against it, returning its name.
func (ir *collModIndex) resolve(c *docstore.Collection, db string) (string, error) {
	var ix *docstore.Index
	for i := range c.Indexes {
		cand := &c.Indexes[i]
		if ir.name != "" && cand.Name == ir.name {
			ix = cand
		}
		if ir.keyPattern != nil {
			pattern, err := bson.Marshal(cand.Key)
			if err == nil && query.Compare(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: pattern},
				bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: ir.keyPattern}) == 0 {
				ix = cand
			}
		}
	}
	if ix == nil {
		what := ir.name
		if ir.keyPattern != nil {
			what = ir.keyPattern.String()
		}
		return "", mongoerr.New(mongoerr.IndexNotFound, "cannot find index %s for ns %s.%s", what, db, c.Name)
	}
	if ix.ID == 0 {
		if ir.change.Hidden != nil {
			return "", mongoerr.New(mongoerr.BadValue, "can't hide _id index")
		}
		return "", mongoerr.New(mongoerr.InvalidOptions, "the _id field does not support TTL indexing")
	}
	if ir.change.ExpireAfterSeconds != nil && len(ix.Key) > 1 {
		return "", mongoerr.New(mongoerr.InvalidOptions, "TTL indexes are single-field indexes, compound indexes do not support TTL")
	}
	return ix.Name, nil
}
