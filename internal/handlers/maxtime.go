package handlers

import (
	"errors"
	"math"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// errMaxTimeExpired is the cause of a command context whose maxTimeMS
// deadline passed; commandError turns it into MaxTimeMSExpired.
var errMaxTimeExpired = errors.New("operation exceeded time limit")

func maxTimeError() error {
	return mongoerr.New(mongoerr.MaxTimeMSExpired, "operation exceeded time limit")
}

// parseMaxTimeMS reads a command's maxTimeMS with mongod's rules: a number
// holding a non-negative integer no larger than 2^31-1, else BadValue. 0
// (or no field) means no limit.
func parseMaxTimeMS(cmd bson.Raw) (time.Duration, error) {
	v, err := cmd.LookupErr("maxTimeMS")
	if err != nil {
		return 0, nil
	}
	var ms float64
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := v.AsInt64OK()
		ms = float64(n)
	case bson.TypeDouble:
		ms = v.Double()
		if math.IsNaN(ms) {
			ms = 0 // mongod reads NaN as 0: no limit
		}
	case bson.TypeDecimal128:
		// mongod truncates a decimal (only a double must be integral).
		f, err := strconv.ParseFloat(v.Decimal128().String(), 64)
		if err != nil || math.IsNaN(f) {
			f = 0
		}
		ms = math.Trunc(f)
	default:
		return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS must be a number")
	}
	if ms < 0 || ms > math.MaxInt32 {
		return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS is out of range")
	}
	if ms != math.Trunc(ms) {
		return 0, mongoerr.New(mongoerr.BadValue, "maxTimeMS has non-integral value")
	}
	return time.Duration(ms) * time.Millisecond, nil
}
