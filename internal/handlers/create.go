package handlers

import (
	"context"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Codes of mongod errors create returns.
const (
	// codeEncryptedStandalone is what a standalone mongod answers to
	// encryptedFields (Queryable Encryption needs a replica set).
	codeEncryptedStandalone mongoerr.Code = 6346402
)

// notSupported refuses an option cmkdb recognises but does not implement.
// NotImplemented (238) is the code mongod itself uses for features that
// exist in its API but not in the running deployment; drivers surface it
// as an ordinary command error, never as "retry".
func notSupported(format string, args ...any) error {
	return mongoerr.New(mongoerr.NotImplemented, format, args...)
}

// createOptions parses create's options with mongod 7.0's rules: every
// option is either turned into CollOptions (capped, size, max, validator,
// validationLevel, validationAction), accepted because its value changes
// nothing here, or refused.
func createOptions(a args) (docstore.CollOptions, error) {
	var o docstore.CollOptions
	if err := checkFields(a, "create"); err != nil {
		return o, err
	}
	var err error
	if v, ok := a.value("capped"); ok {
		switch v.Type {
		case bson.TypeBoolean:
			o.Capped = v.Boolean()
		case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			o.Capped = v.AsFloat64() != 0
		case bson.TypeNull:
		default:
			return o, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'create.capped' is the wrong type '%s', expected types '[bool, long, int, decimal, double]'", typeName(v.Type))
		}
	}
	sizeSet, maxSet := false, false
	if v, ok := a.value("size"); ok && v.Type != bson.TypeNull {
		if o.Size, err = createNumber(v, "size"); err != nil {
			return o, err
		}
		sizeSet = true
		if o.Size < 1 {
			return o, mongoerr.New(mongoerr.Location51024, "BSON field 'size' value must be >= 1, actual value '%d'", o.Size)
		}
		if o.Size > docstore.MaxCappedSize {
			return o, mongoerr.New(mongoerr.Location51024, "BSON field 'size' value must be <= %d, actual value '%d'", int64(docstore.MaxCappedSize), o.Size)
		}
	}
	if v, ok := a.value("max"); ok && v.Type != bson.TypeNull {
		if o.Max, err = createNumber(v, "max"); err != nil {
			return o, err
		}
		maxSet = true
		if o.Max >= 1<<31 {
			return o, mongoerr.New(mongoerr.Location51024, "BSON field 'max' value must be < %d, actual value '%d'", int64(1<<31), o.Max)
		}
		if o.Max <= 0 {
			o.Max = math.MaxInt32 // mongod: a non-positive max means no document bound
		}
	}
	if o.Capped && !sizeSet {
		return o, mongoerr.New(mongoerr.InvalidOptions, "the 'size' field is required when 'capped' is true")
	}
	if (sizeSet || maxSet) && !o.Capped {
		return o, mongoerr.New(mongoerr.InvalidOptions, "the 'capped' field needs to be true when either the 'size' or 'max' fields are present")
	}
	if o.Validator, err = a.doc("validator"); err != nil {
		return o, err
	}
	if len(o.Validator) <= 5 {
		o.Validator = nil
	}
	if o.ValidationLevel, err = enumField(a, "validationLevel", "strict", "moderate", "off"); err != nil {
		return o, err
	}
	if o.ValidationAction, err = enumField(a, "validationAction", "error", "warn"); err != nil {
		return o, err
	}
	if err := refuseCreateOptions(a); err != nil {
		return o, err
	}
	// The validator compiles here, before anything (a database) is created.
	return o, o.Check()
}

// refuseCreateOptions refuses the create options cmkdb does not implement
// (or accepts them where the value asks for nothing beyond the default).
func refuseCreateOptions(a args) error {
	viewOn, hasView := a.value("viewOn")
	if _, ok := a.value("pipeline"); ok && !hasView {
		return mongoerr.New(mongoerr.InvalidOptions, "'pipeline' requires 'viewOn' to also be specified")
	}
	if hasView && viewOn.Type != bson.TypeNull {
		return notSupported("views (create with 'viewOn') are not supported")
	}
	if v, ok := a.value("encryptedFields"); ok && v.Type != bson.TypeNull {
		return mongoerr.New(codeEncryptedStandalone, "Encrypted collections are not supported on standalone")
	}
	if v, ok := a.value("timeseries"); ok && v.Type != bson.TypeNull {
		return notSupported("time series collections (create with 'timeseries') are not supported")
	}
	if v, ok := a.value("clusteredIndex"); ok && v.Type != bson.TypeNull {
		return notSupported("clustered collections (create with 'clusteredIndex') are not supported")
	}
	if v, ok := a.value("expireAfterSeconds"); ok && v.Type != bson.TypeNull {
		return mongoerr.New(mongoerr.InvalidOptions, "'expireAfterSeconds' is only supported on time-series collections or when the 'clusteredIndex' option is specified")
	}
	if v, ok := a.value("changeStreamPreAndPostImages"); ok && v.Type != bson.TypeNull {
		d, isDoc := v.DocumentOK()
		if !isDoc {
			return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'create.changeStreamPreAndPostImages' is the wrong type '%s', expected type 'object'", typeName(v.Type))
		}
		if en, _ := d.Lookup("enabled").BooleanOK(); en {
			return notSupported("change streams (changeStreamPreAndPostImages) are not supported")
		}
	}
	if t, err := a.bool("temp", false); err != nil {
		return err
	} else if t {
		return mongoerr.New(mongoerr.InvalidOptions, "the 'temp' field is an invalid option")
	}
	if v, ok := a.value("autoIndexId"); ok && v.Type != bson.TypeNull {
		if b, err := a.bool("autoIndexId", true); err != nil {
			return err
		} else if !b {
			return notSupported("collections without an _id index (autoIndexId: false) are not supported")
		}
	}
	for _, f := range []string{"storageEngine", "indexOptionDefaults"} {
		d, err := a.doc(f)
		if err != nil {
			return err
		}
		if len(d) > 5 {
			return notSupported("the '%s' option is not supported: cmkdb has one storage engine, encrypted Pebble", f)
		}
	}
	idIndex, err := a.doc("idIndex")
	if err != nil {
		return err
	}
	if len(idIndex) > 5 {
		key, _ := idIndex.Lookup("key").DocumentOK()
		elems, _ := key.Elements()
		if len(elems) != 1 || elems[0].Key() != "_id" || elems[0].Value().AsFloat64() != 1 {
			return mongoerr.New(mongoerr.BadValue, "The _id index must have a key pattern of {_id: 1}")
		}
		for _, e := range mustElements(idIndex) {
			switch e.Key() {
			case "key", "name", "v", "ns":
			default:
				return notSupported("idIndex option '%s' is not supported", e.Key())
			}
		}
	}
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return err
		}
	}
	return nil
}

func mustElements(d bson.Raw) []bson.RawElement {
	e, _ := d.Elements()
	return e
}

// createNumber reads create's size or max: any number, truncated.
func createNumber(v bson.RawValue, field string) (int64, error) {
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64:
		n, _ := v.AsInt64OK()
		return n, nil
	case bson.TypeDouble:
		f := v.Double()
		if math.IsNaN(f) {
			return 0, nil
		}
		if f > math.MaxInt64/2 {
			return math.MaxInt64 / 2, nil
		}
		if f < math.MinInt64/2 {
			return math.MinInt64 / 2, nil
		}
		return int64(f), nil
	case bson.TypeDecimal128:
		f := v.AsFloat64()
		return int64(f), nil
	}
	return 0, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'create.%s' is the wrong type '%s', expected types '[long, int, decimal, double]'", field, typeName(v.Type))
}

// enumField reads an optional string option restricted to values.
func enumField(a args, key string, values ...string) (string, error) {
	v, ok := a.value(key)
	if !ok || v.Type == bson.TypeNull {
		return "", nil
	}
	s, ok := v.StringValueOK()
	if !ok {
		return "", mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'string'", a.name, key, typeName(v.Type))
	}
	if !contains(values, s) {
		return "", mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field '%s.%s' is not a valid value.", s, a.name, key)
	}
	return s, nil
}

func (h *Handler) create(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	coll, err := a.collection()
	if err != nil {
		return nil, err
	}
	opts, err := createOptions(a)
	if err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, true)
	if err != nil {
		return nil, err
	}
	defer release()
	if _, err := st.CreateCollectionWithOptions(coll, opts); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}
