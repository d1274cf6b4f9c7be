package handlers

import (
	"net"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// $indexStats: one document per index of the collection with its usage
// since the index was created or the node started (docstore counts every
// operation whose scan was planned on the index).

// indexStatsStage reports whether the pipeline opens with $indexStats and
// checks its argument.
func indexStatsStage(stages []bson.Raw) (bool, error) {
	if len(stages) == 0 {
		return false, nil
	}
	for _, st := range stages[1:] {
		if e, err := st.IndexErr(0); err == nil && e.Key() == "$indexStats" {
			return false, mongoerr.New(40602, "$indexStats is only valid as the first stage in a pipeline")
		}
	}
	e, err := stages[0].IndexErr(0)
	if err != nil || e.Key() != "$indexStats" {
		return false, nil
	}
	if d, ok := e.Value().DocumentOK(); !ok || len(d) > 5 {
		return true, mongoerr.New(28803, "The $indexStats stage specification must be an empty object")
	}
	return true, nil
}

// indexStatsDocs lists the usage of the collection's indexes (none for a
// collection that does not exist, as mongod).
func (h *Handler) indexStatsDocs(c *wire.ConnState, db, collName string) ([]bson.Raw, error) {
	st, release, err := h.store(db, false)
	if err != nil {
		return nil, err
	}
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	release()
	if coll == nil {
		return nil, nil
	}
	host := h.host
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a != nil {
		host = net.JoinHostPort(h.host, strconv.Itoa(a.Port))
	}
	var out []bson.Raw
	for i := range coll.Indexes {
		ix := &coll.Indexes[i]
		u := docstore.IndexStats(coll, ix)
		raw, err := bson.Marshal(bson.D{
			{Key: "name", Value: ix.Name},
			{Key: "key", Value: ix.Key},
			{Key: "host", Value: host},
			{Key: "accesses", Value: bson.D{{Key: "ops", Value: u.Ops}, {Key: "since", Value: bson.NewDateTimeFromTime(u.Since)}}},
			{Key: "spec", Value: indexDoc(ix)},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}
