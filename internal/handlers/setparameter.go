package handlers

import (
	"context"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// runtimeParameters are the server parameters setParameter changes, in
// the order getParameter lists them.
func (h *Handler) runtimeParameters() bson.D {
	return bson.D{
		{Key: "ttlMonitorEnabled", Value: h.ttl.enabled.Load()},
		{Key: "ttlMonitorSleepSecs", Value: h.ttl.sleepSecs.Load()},
	}
}

// setParameter changes server parameters at runtime: ttlMonitorSleepSecs
// (a positive integer) and ttlMonitorEnabled (a boolean). The reply's
// "was" is the previous value, as mongod's. Parameters cmkdb reports but
// cannot change are refused with 238; unknown ones as mongod refuses them.
func (h *Handler) setParameter(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	elems, err := req.Command.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid command document: %v", err)
	}
	type change struct {
		apply func() any
	}
	var changes []change
	for i, e := range elems {
		k, v := e.Key(), e.Value()
		if i == 0 || genericFields[k] {
			continue
		}
		switch k {
		case "ttlMonitorSleepSecs":
			n, ok := integralValue(v)
			if !ok {
				return nil, mongoerr.New(mongoerr.BadValue, "Invalid value for parameter ttlMonitorSleepSecs: %s is not a valid integer", v.String())
			}
			if n < 1 || n > math.MaxInt32 {
				return nil, mongoerr.New(mongoerr.BadValue, "Invalid value for parameter ttlMonitorSleepSecs: %d is not greater than or equal to 1", n)
			}
			changes = append(changes, change{func() any { return h.ttl.setSleepSecs(int32(n)) }})
		case "ttlMonitorEnabled":
			if v.Type != bson.TypeBoolean {
				return nil, mongoerr.New(mongoerr.BadValue, "Invalid value for parameter ttlMonitorEnabled: %s is not a valid boolean", v.String())
			}
			b := v.Boolean()
			changes = append(changes, change{func() any { return h.ttl.enabled.Swap(b) }})
		case "featureCompatibilityVersion", "authenticationMechanisms":
			return nil, mongoerr.New(mongoerr.IllegalOperation, "Cannot set parameter %s at runtime", k)
		case "cursorTimeoutMillis":
			return nil, notSupported("setting %s is not supported", k)
		default:
			return nil, mongoerr.New(mongoerr.InvalidOptions, "attempted to set unrecognized parameter [%s], use help:true to see options ", k)
		}
	}
	if len(changes) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "no option found to set, use help:true to see options ")
	}
	var was any
	for i, ch := range changes {
		if old := ch.apply(); i == 0 {
			was = old
		}
	}
	return marshal(bson.D{{Key: "was", Value: was}, {Key: "ok", Value: 1.0}})
}

// integralValue reads an integral number.
func integralValue(v bson.RawValue) (int64, bool) {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		return v.AsInt64OK()
	case bson.TypeDouble:
		f := v.Double()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}
