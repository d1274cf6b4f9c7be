package docstore

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// formatKeyValue writes v as mongod prints values in its messages (a
// duplicate key's "dup key: { _id: 1 }"): numbers bare, strings in double
// quotes, ObjectId('…'), new Date(ms), documents and arrays nested the
// same way. Tools and users read these messages, so they follow mongod's
// form, not extended JSON.
func formatKeyValue(buf *bytes.Buffer, v bson.RawValue) {
	switch v.Type {
	case bson.TypeInt32:
		buf.WriteString(strconv.FormatInt(int64(v.Int32()), 10))
	case bson.TypeInt64:
		buf.WriteString(strconv.FormatInt(v.Int64(), 10))
	case bson.TypeDouble:
		f := v.Double()
		switch {
		case math.IsNaN(f):
			buf.WriteString("nan.0")
		case math.IsInf(f, 1):
			buf.WriteString("inf.0")
		case math.IsInf(f, -1):
			buf.WriteString("-inf.0")
		case f == math.Trunc(f) && math.Abs(f) < 1e15:
			buf.WriteString(strconv.FormatFloat(f, 'f', 1, 64))
		default:
			buf.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case bson.TypeDecimal128:
		fmt.Fprintf(buf, "%s", v.Decimal128().String())
	case bson.TypeString:
		buf.WriteString(strconv.Quote(v.StringValue()))
	case bson.TypeBoolean:
		buf.WriteString(strconv.FormatBool(v.Boolean()))
	case bson.TypeNull, bson.TypeUndefined:
		buf.WriteString("null")
	case bson.TypeObjectID:
		fmt.Fprintf(buf, "ObjectId('%s')", v.ObjectID().Hex())
	case bson.TypeDateTime:
		fmt.Fprintf(buf, "new Date(%d)", v.DateTime())
	case bson.TypeEmbeddedDocument:
		els, _ := v.Document().Elements()
		if len(els) == 0 {
			buf.WriteString("{}")
			return
		}
		buf.WriteString("{ ")
		for i, e := range els {
			if i > 0 {
				buf.WriteString(", ")
			}
			buf.WriteString(e.Key())
			buf.WriteString(": ")
			formatKeyValue(buf, e.Value())
		}
		buf.WriteString(" }")
	case bson.TypeArray:
		vals, _ := v.Array().Values()
		buf.WriteString("[ ")
		for i, e := range vals {
			if i > 0 {
				buf.WriteString(", ")
			}
			formatKeyValue(buf, e)
		}
		buf.WriteString(" ]")
	case bson.TypeMinKey:
		buf.WriteString("MinKey")
	case bson.TypeMaxKey:
		buf.WriteString("MaxKey")
	default:
		buf.WriteString(v.String())
	}
}
