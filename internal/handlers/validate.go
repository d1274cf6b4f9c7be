package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// validate walks a collection in one snapshot (docstore.Validate): every
// document's BSON and key, every index entry each document should have,
// every index entry against its document, and a capped collection's
// insertion order and totals. The walk is always the full one, so full,
// background (a snapshot read either way), checkBSONConformance and
// enforceFastCount (counts are exact) are accepted; repair and metadata
// are refused.
func (h *Handler) validate(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "validate"); err != nil {
		return nil, err
	}
	flags := map[string]bool{}
	for _, f := range []string{"full", "repair", "metadata", "background", "checkBSONConformance", "enforceFastCount", "scandata"} {
		v, err := a.bool(f, false)
		if err != nil {
			return nil, err
		}
		flags[f] = v
	}
	switch {
	case flags["background"] && flags["full"]:
		return nil, mongoerr.New(mongoerr.InvalidOptions, "Running the validate command with both { background: true } and { full: true } is not supported.")
	case flags["repair"]:
		return nil, mongoerr.New(mongoerr.NotImplemented, "validate with { repair: true } is not supported: cmkdb reports problems but does not repair them")
	case flags["metadata"]:
		return nil, mongoerr.New(mongoerr.NotImplemented, "validate with { metadata: true } is not supported: run it without, which checks the data and the indexes")
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	ns := req.DB + "." + collName
	if st == nil || st.Collection(collName) == nil {
		return nil, mongoerr.New(mongoerr.NamespaceNotFound, "Collection '%s' does not exist to validate.", ns)
	}
	coll := st.Collection(collName)
	res, err := st.Validate(ctx, coll, wire.ValidateDocument)
	if err != nil {
		return nil, err
	}
	keys, details := bson.D{}, bson.D{}
	for i, ix := range coll.Indexes {
		keys = append(keys, bson.E{Key: ix.Name, Value: intValue(res.KeysPerIndex[i])})
		d := bson.D{{Key: "valid", Value: len(res.IndexErrors[i]) == 0}}
		if len(res.IndexErrors[i]) > 0 {
			d = append(d, bson.E{Key: "errors", Value: res.IndexErrors[i]})
		}
		details = append(details, bson.E{Key: ix.Name, Value: d})
	}
	errs, warnings := bson.A{}, bson.A{}
	for _, e := range res.Errors {
		errs = append(errs, e)
	}
	for _, w := range res.Warnings {
		warnings = append(warnings, w)
	}
	return marshal(bson.D{
		{Key: "ns", Value: ns},
		{Key: "uuid", Value: coll.UUID},
		{Key: "nInvalidDocuments", Value: intValue(res.CorruptRecords)},
		{Key: "nNonCompliantDocuments", Value: intValue(res.NonCompliant)},
		{Key: "nrecords", Value: intValue(res.NRecords)},
		{Key: "nIndexes", Value: int32(len(coll.Indexes))},
		{Key: "keysPerIndex", Value: keys},
		{Key: "indexDetails", Value: details},
		{Key: "valid", Value: len(res.Errors) == 0},
		{Key: "repaired", Value: false},
		{Key: "warnings", Value: warnings},
		{Key: "errors", Value: errs},
		{Key: "extraIndexEntries", Value: bson.A{}},
		{Key: "missingIndexEntries", Value: bson.A{}},
		{Key: "corruptRecords", Value: bson.A{}},
		{Key: "ok", Value: 1.0},
	})
}
