package handlers

import (
	"math"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// maxWriteConcernW is mongod's bound on a numeric w (the most members a
// replica set may have).
const maxWriteConcernW = 50

// checkWriteConcern validates a command's writeConcern as a standalone
// mongod 7.0 does, before the command runs: a malformed one fails to parse
// (FailedToParse, TypeMismatch), and one that needs other members — w > 1,
// a named mode other than "majority", tags — is refused with BadValue,
// since no replica set exists to acknowledge it. These are command errors
// (ok: 0), not a writeConcernError: nothing was written. A valid write
// concern is always satisfied: every write is synced before it is
// acknowledged (so j: true holds), "majority" of one node is that node, and
// w: 0 is served by the wire layer (no reply is sent for moreToCome).
//
// On a replica set member (members > 0) a write is acknowledged once a
// majority of the set committed and this member applied it: w up to the
// majority and "majority" are met; a w larger than the set is
// UnsatisfiableWriteConcern, as mongod answers, and a w between the
// majority and the set's size is refused with the same code, since cmkdb
// does not wait for more than a majority.
func checkWriteConcern(cmd *command, doc bson.Raw, members int) error {
	v, err := doc.LookupErr("writeConcern")
	if err != nil {
		return nil
	}
	if !cmd.writeConcern {
		return mongoerr.New(mongoerr.InvalidOptions, "Command does not support writeConcern")
	}
	wc, ok := v.DocumentOK()
	if !ok {
		return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'writeConcern' is the wrong type '%s', expected type 'object'", typeName(v.Type))
	}
	var j, fsync bool
	for _, field := range []string{"j", "fsync"} {
		f, err := wc.LookupErr(field)
		if err != nil {
			continue
		}
		var on bool
		switch f.Type {
		case bson.TypeBoolean:
			on = f.Boolean()
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			n, _ := numberValue(f)
			on = n != 0
		default:
			return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'writeConcern.%s' is the wrong type '%s', expected types '[bool, long, int, decimal, double]'", field, typeName(f.Type))
		}
		if field == "j" {
			j = on
		} else {
			fsync = on
		}
	}
	if j && fsync {
		return mongoerr.New(mongoerr.FailedToParse, "fsync and j options cannot be used together")
	}
	if f, err := wc.LookupErr("wtimeout"); err == nil {
		switch f.Type {
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		default:
			return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'writeConcern.wtimeout' is the wrong type '%s', expected types '[long, int, decimal, double]'", typeName(f.Type))
		}
	}
	w, err := wc.LookupErr("w")
	if err != nil {
		return nil
	}
	switch w.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		n, nan := numberValue(w)
		if nan {
			return mongoerr.New(mongoerr.FailedToParse, "w cannot be NaN")
		}
		if n < 0 || n > maxWriteConcernW {
			return mongoerr.New(mongoerr.FailedToParse, "w has to be a non-negative number and not greater than %d; found: %d", maxWriteConcernW, n)
		}
		switch {
		case members == 0 && n > 1:
			return mongoerr.New(mongoerr.BadValue, "cannot use 'w' > 1 when a host is not replicated")
		case members > 0 && n > int64(members):
			return mongoerr.New(mongoerr.UnsatisfiableWriteConcern, "Not enough data-bearing nodes")
		case members > 0 && n > int64(members/2+1):
			return mongoerr.New(mongoerr.UnsatisfiableWriteConcern,
				"cmkdb acknowledges a write once a majority (%d of %d members) holds it; w: %d would need it to wait for more, which it does not do", members/2+1, members, n)
		}
	case bson.TypeString:
		s := w.StringValue()
		if strings.IndexByte(s, 0) >= 0 {
			return mongoerr.New(mongoerr.FailedToParse, "w has illegal embedded NUL byte, w: %s", s)
		}
		if s != "majority" && members > 0 {
			return mongoerr.New(mongoerr.UnknownReplWriteConcern, "No write concern mode named '%s' found in replica set configuration", s)
		}
		if s != "majority" {
			return mongoerr.New(mongoerr.BadValue, "cannot use non-majority 'w' mode \"%s\" when a host is not a member of a replica set", s)
		}
	case bson.TypeEmbeddedDocument:
		tags := w.Document()
		if len(tags) <= 5 {
			return mongoerr.New(mongoerr.FailedToParse, "tagged write concern requires tags")
		}
		elems, _ := tags.Elements()
		for _, e := range elems {
			if _, nan := numberValue(e.Value()); nan || !isNumber(e.Value().Type) {
				return mongoerr.New(mongoerr.FailedToParse, "tags must be a single level document with only number values; found: %s", e.Key())
			}
		}
		// Tags name replica set members: there are none to match.
		if members > 0 {
			return mongoerr.New(mongoerr.UnknownReplWriteConcern, "cmkdb replica set members carry no tags: no member matches a tagged write concern")
		}
		return mongoerr.New(mongoerr.BadValue, "cannot use 'w' tags when a host is not a member of a replica set")
	default:
		return mongoerr.New(mongoerr.FailedToParse, "w has to be a number, string, or object")
	}
	return nil
}

func isNumber(t bson.Type) bool {
	switch t {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		return true
	}
	return false
}

// numberValue is a numeric BSON value truncated to an int64 (saturating,
// as mongod's safeNumberLong), and whether it is NaN.
func numberValue(v bson.RawValue) (int64, bool) {
	var f float64
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := v.AsInt64OK()
		return n, false
	case bson.TypeDouble:
		f = v.Double()
	case bson.TypeDecimal128:
		var err error
		if f, err = strconv.ParseFloat(v.Decimal128().String(), 64); err != nil {
			return 0, true
		}
	default:
		return 0, false
	}
	switch {
	case math.IsNaN(f):
		return 0, true
	case f >= math.MaxInt64:
		return math.MaxInt64, false
	case f <= math.MinInt64:
		return math.MinInt64, false
	}
	return int64(f), false
}
