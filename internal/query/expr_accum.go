package query

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Accumulators used as expressions ($sum, $avg, $min, $max of one array
// argument, or of several arguments) and $mergeObjects.

func init() {
	registerOp(fnOp(0, -1, func(op string, a []bson.RawValue) (bson.RawValue, error) {
		var vals []bson.RawValue
		if len(a) == 1 && a[0].Type == bson.TypeArray {
			vals = arrayValues(a[0].Value)
		} else {
			vals = a
		}
		st := newAccStates(1)
		for _, v := range vals {
			accumulate(op, &st[0], v)
		}
		return finish(op, &st[0]), nil
	}), "$sum", "$avg", "$min", "$max", "$stdDevPop", "$stdDevSamp")
	registerOp(fnOp(0, -1, func(_ string, a []bson.RawValue) (bson.RawValue, error) {
		root := &mdoc{}
		for _, v := range a {
			if isNullish(v) {
				continue
			}
			if v.Type != bson.TypeEmbeddedDocument {
				return missing, mongoerr.New(40400, "$mergeObjects requires object inputs, but input %s is of type %s", debugString(v), TypeName(v.Type))
			}
			d, err := decodeDoc(v.Value)
			if err != nil {
				return missing, err
			}
			for _, f := range d.fields {
				root.set(f.key, f.val)
			}
		}
		return rvDoc(root.encode()), nil
	}), "$mergeObjects")
}
