package handlers

import (
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/fts"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// textIndexSpec turns a parsed index spec whose key has "text" fields
// into a text index (mongod's FTSSpec::fixSpec): the key becomes
// {_fts: "text", _ftsx: 1}, the text fields weights, and the text options
// (weights, default_language, language_override, textIndexVersion) are
// validated. Without text fields, text options are refused as before.
func textIndexSpec(spec docstore.IndexSpec, opts []bson.RawElement) (docstore.IndexSpec, error) {
	var fields []string
	textAt, adjacent := -1, true
	if isFixedTextKey(spec.Key) {
		// The stored form listIndexes shows (mongodump, oplog replay):
		// the fields are the weights.
		return fixedTextIndexSpec(spec, opts)
	}
	for i, e := range spec.Key {
		s, ok := e.Value.(string)
		if !ok || s != "text" {
			if e.Key == "_fts" || e.Key == "_ftsx" {
				return spec, mongoerr.New(mongoerr.CannotCreateIndex, "text index with reserved fields _fts/_ftsx not allowed")
			}
			continue
		}
		if textAt >= 0 && textAt != i-1 {
			adjacent = false
		}
		textAt = i
		fields = append(fields, e.Key)
	}
	if len(fields) == 0 {
		for _, o := range opts {
			return spec, mongoerr.New(mongoerr.NotImplemented, "index option '%s' is not supported", o.Key())
		}
		return spec, nil
	}
	if !adjacent {
		return spec, mongoerr.New(mongoerr.CannotCreateIndex, "'text' fields in index must all be adjacent")
	}
	for _, e := range spec.Key {
		if s, ok := e.Value.(string); ok && s == "text" {
			continue
		}
		if n := keyInt(e.Value); n != 1 && n != -1 {
			return spec, mongoerr.New(mongoerr.CannotCreateIndex, "expected value 1 or -1 for non-text key in compound index")
		}
	}
	if len(fields) != len(spec.Key) {
		return spec, mongoerr.New(mongoerr.NotImplemented, "compound text indexes (text fields with ascending/descending fields) are not supported")
	}
	return finishTextIndexSpec(spec, fields, opts)
}

func isFixedTextKey(key bson.D) bool {
	if len(key) != 2 || key[0].Key != "_fts" || key[0].Value != "text" || key[1].Key != "_ftsx" {
		return false
	}
	switch n := key[1].Value.(type) {
	case int32:
		return n == 1
	case int64:
		return n == 1
	case float64:
		return n == 1
	}
	return false
}

func fixedTextIndexSpec(spec docstore.IndexSpec, opts []bson.RawElement) (docstore.IndexSpec, error) {
	for _, o := range opts {
		if o.Key() == "weights" {
			return finishTextIndexSpec(spec, nil, opts)
		}
	}
	return spec, mongoerr.New(mongoerr.CannotCreateIndex, "text index option 'weights' must specify fields or the wildcard")
}

func finishTextIndexSpec(spec docstore.IndexSpec, fields []string, opts []bson.RawElement) (docstore.IndexSpec, error) {
	if spec.Unique {
		return spec, mongoerr.New(mongoerr.NotImplemented, "unique text indexes are not supported")
	}
	var weights, lang, override bson.RawValue
	for _, o := range opts {
		v := o.Value()
		switch o.Key() {
		case "weights":
			weights = v
		case "default_language":
			lang = v
		case "language_override":
			override = v
		case "textIndexVersion":
			switch v.Type {
			case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
			default:
				return spec, mongoerr.New(mongoerr.CannotCreateIndex, "text index option 'textIndexVersion' must be a number")
			}
			switch n := v.AsFloat64(); int(n) {
			case 3:
			case 1, 2:
				return spec, mongoerr.New(mongoerr.NotImplemented, "textIndexVersion %d is not supported; only version 3", int(n))
			default:
				return spec, mongoerr.New(mongoerr.CannotCreateIndex, "bad textIndexVersion: %d", int(n))
			}
		}
	}
	ts, err := fts.NewSpec(fields, weights, lang, override)
	if err != nil {
		return spec, err
	}
	if spec.Name == "" {
		spec.Name = docstore.DefaultIndexName(spec.Key)
	}
	spec.Key = bson.D{{Key: "_fts", Value: "text"}, {Key: "_ftsx", Value: int32(1)}}
	spec.Text = ts
	return spec, nil
}

// appendTextOptions adds a text index's options to its listIndexes entry.
func appendTextOptions(d bson.D, ix *docstore.Index) bson.D {
	if ix.Text == nil {
		return d
	}
	return append(d,
		bson.E{Key: "weights", Value: ix.Text.WeightsDoc()},
		bson.E{Key: "default_language", Value: ix.Text.DefaultLanguage},
		bson.E{Key: "language_override", Value: ix.Text.LanguageOverride},
		bson.E{Key: "textIndexVersion", Value: int32(3)})
}

// keyInt is a key pattern value as mongod's numberInt reads it (0 for a
// non-number).
func keyInt(v any) int64 {
	switch n := v.(type) {
	case int32:
		return int64(n)
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return 0
}
