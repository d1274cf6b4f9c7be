package handlers

import (
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// args reads a command document's fields with MongoDB's type rules.
type args struct {
	cmd  bson.Raw
	name string
}

func newArgs(cmd bson.Raw) args {
	a := args{cmd: cmd}
	if e, err := cmd.IndexErr(0); err == nil {
		a.name = e.Key()
	}
	return a
}

func (a args) has(key string) bool {
	_, err := a.cmd.LookupErr(key)
	return err == nil
}

func (a args) value(key string) (bson.RawValue, bool) {
	v, err := a.cmd.LookupErr(key)
	return v, err == nil
}

// collection is the command's target collection: the string value of the
// command-name field.
func (a args) collection() (string, error) {
	v, ok := a.value(a.name)
	if !ok {
		return "", mongoerr.New(mongoerr.InvalidNamespace, "missing collection name")
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", mongoerr.New(mongoerr.InvalidNamespace, "collection name has invalid type %s", v.Type)
	}
	return s, nil
}

func (a args) doc(key string) (bson.Raw, error) {
	v, ok := a.value(key)
	if !ok || v.Type == bson.TypeNull {
		return nil, nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'object'", a.name, key, typeName(v.Type))
	}
	return d, nil
}

func (a args) array(key string) ([]bson.RawValue, error) {
	v, ok := a.value(key)
	if !ok {
		return nil, nil
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'array'", a.name, key, typeName(v.Type))
	}
	return arr.Values()
}

func (a args) int64(key string, def int64) (int64, error) {
	v, ok := a.value(key)
	if !ok || v.Type == bson.TypeNull {
		return def, nil
	}
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := v.AsInt64OK()
		return n, nil
	case bson.TypeDouble:
		f := v.Double()
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, mongoerr.New(mongoerr.BadValue, "BSON field '%s' value must be an integer", key)
		}
		return int64(f), nil
	}
	return 0, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected types '[long, int, decimal, double]'", a.name, key, typeName(v.Type))
}

func (a args) bool(key string, def bool) (bool, error) {
	v, ok := a.value(key)
	if !ok || v.Type == bson.TypeNull {
		return def, nil
	}
	switch v.Type {
	case bson.TypeBoolean:
		return v.Boolean(), nil
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		n := v.AsFloat64()
		return n != 0, nil
	}
	return false, mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'bool'", a.name, key, typeName(v.Type))
}

func (a args) string(key string) (string, error) {
	v, ok := a.value(key)
	if !ok {
		return "", nil
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'string'", a.name, key, typeName(v.Type))
	}
	return s, nil
}

func typeName(t bson.Type) string { return query.TypeName(t) }

// marshal renders a reply document.
func marshal(d bson.D) (bson.Raw, error) {
	return bson.Marshal(d)
}
