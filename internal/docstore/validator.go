package docstore

import (
	"fmt"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// DocumentValidationFailure is mongod's code for a write refused by a
// collection's validator.
const DocumentValidationFailure = mongoerr.DocumentValidationFailure

// ValidationError is a write refused by a collection's validator. It wraps
// a *mongoerr.Error (code 121) and carries mongod's errInfo document.
type ValidationError struct {
	Err  *mongoerr.Error
	Info bson.Raw
}

func (e *ValidationError) Error() string { return e.Err.Error() }
func (e *ValidationError) Unwrap() error { return e.Err }

// notInValidator are the query operators mongod refuses in a validator
// (they need a text or geo index, or run JavaScript).
var notInValidator = map[string]string{
	"$where":      "$where is not allowed inside of a validator",
	"$text":       "$text is not allowed inside of a validator",
	"$near":       "$geoNear, $near, and $nearSphere are not allowed in this context",
	"$nearSphere": "$geoNear, $near, and $nearSphere are not allowed in this context",
	"$geoNear":    "$geoNear, $near, and $nearSphere are not allowed in this context",
}

// compileValidator compiles a validator filter; an empty one is nil.
func compileValidator(v bson.Raw) (*query.Matcher, error) {
	if len(v) <= 5 {
		return nil, nil
	}
	if err := checkValidatorOps(v, 0); err != nil {
		return nil, err
	}
	return query.Compile(v)
}

func checkValidatorOps(doc bson.Raw, depth int) error {
	if depth > 100 {
		return nil // query.Compile refuses the depth itself
	}
	elems, err := doc.Elements()
	if err != nil {
		return mongoerr.New(mongoerr.BadValue, "invalid validator: %v", err)
	}
	for _, e := range elems {
		if msg, ok := notInValidator[e.Key()]; ok {
			return mongoerr.New(mongoerr.BadValue, "%s", msg)
		}
		if e.Key() == "$jsonSchema" || e.Key() == "$expr" {
			continue
		}
		v := e.Value()
		switch v.Type {
		case bson.TypeEmbeddedDocument:
			if err := checkValidatorOps(v.Document(), depth+1); err != nil {
				return err
			}
		case bson.TypeArray:
			vals, _ := v.Array().Values()
			for _, x := range vals {
				if d, ok := x.DocumentOK(); ok {
					if err := checkValidatorOps(d, depth+1); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// compile prepares the collection's validator matcher (after load, create
// or collMod).
func (c *Collection) compile() error {
	m, err := compileValidator(c.Options.Validator)
	if err != nil {
		return err
	}
	c.validator = m
	if len(c.Indexes) > 0 {
		// Each catalog version gets its own copies: a published
		// collection's indexes are never written again.
		c.Indexes = slices.Clone(c.Indexes)
	}
	for i := range c.Indexes {
		if err := c.Indexes[i].compile(); err != nil {
			return fmt.Errorf("index %s: %w", c.Indexes[i].Name, err)
		}
	}
	return nil
}

// validate applies coll's validator to doc, the new version of old (nil for
// an insert), as mongod does: validationLevel "off" skips it, "moderate"
// skips updates of documents that did not match already; a failure is an
// error under validationAction "error" and a logged warning under "warn".
func (w *Writer) validate(coll *Collection, old, doc bson.Raw) error {
	if w.SkipValidation || coll.validator == nil {
		return nil
	}
	switch coll.Options.level() {
	case "off":
		return nil
	case "moderate":
		if old != nil && !coll.validator.Match(old) {
			return nil
		}
	}
	if coll.validator.Match(doc) {
		return nil
	}
	if coll.Options.action() == "warn" {
		if w.s.Logger != nil {
			// Never the document or its _id: they are customer data.
			w.s.Logger.Warn("document would fail validation", "db", w.s.db.Name, "collection", coll.Name)
		}
		return nil
	}
	return &ValidationError{Err: mongoerr.New(DocumentValidationFailure, "Document failed validation"), Info: validationInfo(coll.Options.Validator, doc)}
}

// validationInfo is mongod's errInfo for a failed validation:
// {failingDocumentId, details: {operatorName, ...}}.
func validationInfo(validator, doc bson.Raw) bson.Raw {
	info := bson.D{}
	if id, err := doc.LookupErr("_id"); err == nil {
		info = append(info, bson.E{Key: "failingDocumentId", Value: id})
	}
	elems, _ := validator.Elements()
	var details bson.D
	if len(elems) == 1 {
		details = clauseDetails(elems[0], doc)
	} else {
		var failing bson.A
		for i, e := range elems {
			if clauseMatches(e, doc) {
				continue
			}
			failing = append(failing, bson.D{{Key: "index", Value: int32(i)}, {Key: "details", Value: clauseDetails(e, doc)}})
		}
		details = bson.D{{Key: "operatorName", Value: "$and"}, {Key: "clausesNotSatisfied", Value: failing}}
	}
	info = append(info, bson.E{Key: "details", Value: details})
	raw, err := bson.Marshal(info)
	if err != nil {
		return nil
	}
	return raw
}

func clauseDoc(e bson.RawElement) bson.Raw {
	raw, _ := bson.Marshal(bson.D{{Key: e.Key(), Value: e.Value()}})
	return raw
}

func clauseMatches(e bson.RawElement, doc bson.Raw) bool {
	m, err := query.Compile(clauseDoc(e))
	return err == nil && m.Match(doc)
}

// clauseDetails describes why one top-level clause of a validator failed.
func clauseDetails(e bson.RawElement, doc bson.Raw) bson.D {
	key, val := e.Key(), e.Value()
	specified := bson.D{{Key: key, Value: val}}
	switch {
	case key == "$jsonSchema":
		d := bson.D{{Key: "operatorName", Value: "$jsonSchema"}}
		if sd, ok := val.DocumentOK(); ok {
			if t, ok := sd.Lookup("title").StringValueOK(); ok {
				d = append(d, bson.E{Key: "title", Value: t})
			}
			rules := query.JSONSchemaFailures(sd, doc)
			d = append(d, bson.E{Key: "schemaRulesNotSatisfied", Value: rules})
		}
		return d
	case key == "$expr":
		return bson.D{{Key: "operatorName", Value: "$expr"}, {Key: "specifiedAs", Value: specified},
			{Key: "reason", Value: "expression did not match"}, {Key: "expressionResult", Value: false}}
	case strings.HasPrefix(key, "$"):
		return bson.D{{Key: "operatorName", Value: key}, {Key: "specifiedAs", Value: specified}}
	}
	op := "$eq"
	if d, ok := val.DocumentOK(); ok {
		if first, err := d.IndexErr(0); err == nil && strings.HasPrefix(first.Key(), "$") {
			op = first.Key()
			if _, err := d.IndexErr(1); err == nil {
				op = "$and"
			}
		}
	}
	out := bson.D{{Key: "operatorName", Value: op}, {Key: "specifiedAs", Value: specified}}
	if v, err := doc.LookupErr(strings.Split(key, ".")...); err == nil {
		out = append(out, bson.E{Key: "reason", Value: "comparison failed"}, bson.E{Key: "consideredValue", Value: v})
	} else {
		out = append(out, bson.E{Key: "reason", Value: "field was missing"})
	}
	return out
}
