package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// collModUnsupported are collMod options mongod 7.0 has and cmkdb does
// not implement; each is refused rather than ignored.
var collModUnsupported = map[string]string{
	"index":                        "changing index options with collMod is not supported",
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

// collMod changes a collection's validation options: validator,
// validationLevel and validationAction.
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
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if st == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "ns does not exist: %s.%s", req.DB, coll)
	}
	if _, _, err := st.ChangeValidation(coll, ch); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}
