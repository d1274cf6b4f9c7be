package handlers

import (
	"context"
	"net"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// $collStats: one document about the collection, {ns, host, localTime},
// with what the stage asks for: latencyStats (the namespace's command
// latencies since the node started, ops.go), storageStats (the collStats
// command's numbers, stats.go), count. queryExecStats (collection scans)
// is not counted by cmkdb: refused.

type collStatsSpec struct {
	latency    bool
	histograms bool
	storage    bool
	scale      int64
	count      bool
}

// collStatsStage reports whether the pipeline opens with $collStats and
// parses its argument as mongod's DocumentSourceCollStatsSpec does.
func collStatsStage(stages []bson.Raw) (*collStatsSpec, error) {
	for _, st := range stages[min(1, len(stages)):] {
		if e, err := st.IndexErr(0); err == nil && e.Key() == "$collStats" {
			return nil, mongoerr.New(40602, "$collStats is only valid as the first stage in a pipeline")
		}
	}
	if len(stages) == 0 {
		return nil, nil
	}
	e, err := stages[0].IndexErr(0)
	if err != nil || e.Key() != "$collStats" {
		return nil, nil
	}
	d, ok := e.Value().DocumentOK()
	if !ok {
		return nil, mongoerr.New(40166, "$collStats must take a nested object but found: $collStats: %s", e.Value())
	}
	spec := &collStatsSpec{scale: 1}
	elems, err := d.Elements()
	if err != nil {
		return nil, err
	}
	for _, f := range elems {
		v := f.Value()
		switch f.Key() {
		case "latencyStats":
			ls, ok := v.DocumentOK()
			if !ok {
				return nil, wrongType("$collStats.latencyStats", v, "object")
			}
			spec.latency = true
			lelems, err := ls.Elements()
			if err != nil {
				return nil, err
			}
			for _, le := range lelems {
				if le.Key() != "histograms" {
					return nil, mongoerr.New(codeUnknownField, "BSON field '$collStats.latencyStats.%s' is an unknown field.", le.Key())
				}
				b, err := optionalBool("$collStats.latencyStats.histograms", le.Value())
				if err != nil {
					return nil, err
				}
				spec.histograms = b
			}
		case "storageStats":
			ss, ok := v.DocumentOK()
			if !ok {
				return nil, wrongType("$collStats.storageStats", v, "object")
			}
			spec.storage = true
			// mongod's StorageStatsSpec is not strict: other fields are
			// ignored; verbose, waitForLock and numericOnly change nothing
			// cmkdb reports (it has no WiredTiger section to shorten).
			for _, key := range []string{"verbose", "waitForLock", "numericOnly"} {
				if bv, err := ss.LookupErr(key); err == nil {
					if _, err := optionalBool("$collStats.storageStats."+key, bv); err != nil {
						return nil, err
					}
				}
			}
			if sv, err := ss.LookupErr("scale"); err == nil {
				f, ok := numberAsFloat(sv)
				if !ok {
					return nil, wrongType("$collStats.storageStats.scale", sv, "[long, int, decimal, double]")
				}
				if f < 1 {
					return nil, mongoerr.New(51024, "BSON field 'scale' value must be >= 1, actual value '%d'", int64(f))
				}
				spec.scale = int64(min(f, float64(1<<31-1)))
			}
		case "count":
			if err := emptyObject("$collStats.count", v); err != nil {
				return nil, err
			}
			spec.count = true
		case "queryExecStats":
			if err := emptyObject("$collStats.queryExecStats", v); err != nil {
				return nil, err
			}
			return nil, mongoerr.New(mongoerr.NotImplemented, "$collStats queryExecStats is not supported: cmkdb does not count collection scans")
		default:
			return nil, mongoerr.New(codeUnknownField, "BSON field '$collStats.%s' is an unknown field.", f.Key())
		}
	}
	return spec, nil
}

// emptyObject is mongod's validateObjectIsEmpty for an IDL object field.
func emptyObject(field string, v bson.RawValue) error {
	d, ok := v.DocumentOK()
	if !ok {
		return wrongType(field, v, "object")
	}
	if len(d) > 5 {
		return mongoerr.New(31170, "expected an empty object, but got %s", d)
	}
	return nil
}

// optionalBool reads an IDL optionalBool: a boolean or a number.
func optionalBool(field string, v bson.RawValue) (bool, error) {
	switch v.Type {
	case bson.TypeBoolean, bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return truthy(v), nil
	}
	return false, wrongType(field, v, "[bool, long, int, decimal, double]")
}

// wrongType is mongod's IDL type error.
func wrongType(field string, v bson.RawValue, want string) error {
	if want[0] == '[' {
		return mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected types '%s'", field, typeName(v.Type), want)
	}
	return mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s' is the wrong type '%s', expected type '%s'", field, typeName(v.Type), want)
}

// collStatsDoc builds the stage's one document.
func (h *Handler) collStatsDoc(ctx context.Context, c *wire.ConnState, db, collName string, spec *collStatsSpec) (bson.Raw, error) {
	ns := db + "." + collName
	doc := bson.D{
		{Key: "ns", Value: ns},
		{Key: "host", Value: h.hostPort(c)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
	}
	if spec.latency {
		l := h.ops.latencyOf(ns)
		doc = append(doc, bson.E{Key: "latencyStats", Value: l.doc(spec.histograms)})
	}
	if spec.storage {
		fields, exists, err := h.storageStats(ctx, db, collName, spec.scale)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, mongoerr.New(mongoerr.NamespaceNotFound, "Unable to retrieve storageStats in $collStats stage :: caused by :: Collection [%s] not found.", ns)
		}
		doc = append(doc, bson.E{Key: "storageStats", Value: fields})
	}
	if spec.count {
		fields, exists, err := h.storageStats(ctx, db, collName, 1)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, mongoerr.New(mongoerr.NamespaceNotFound, "Unable to retrieve count in $collStats stage :: caused by :: Collection [%s] not found.", ns)
		}
		for _, f := range fields {
			if f.Key == "count" {
				doc = append(doc, bson.E{Key: "count", Value: f.Value})
			}
		}
	}
	return bson.Marshal(doc)
}

// hostPort is this node as $collStats, $indexStats and currentOp name it:
// host name and the port the client connected to.
func (h *Handler) hostPort(c *wire.ConnState) string {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok && a != nil {
		return net.JoinHostPort(h.host, strconv.Itoa(a.Port))
	}
	return h.host
}
