package fts

import (
	"math"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Wildcard is the weights key of a text index over every string field.
const Wildcard = "$**"

// maxWeight bounds a field weight (exclusive), as mongod's
// MAX_WORD_WEIGHT.
const maxWeight = 100000

// Spec is a text index's definition, kept with the index in the catalog.
type Spec struct {
	// Weights are the indexed fields (or Wildcard) by path, sorted.
	Weights          []FieldWeight `bson:"weights"`
	DefaultLanguage  string        `bson:"defaultLanguage"`
	LanguageOverride string        `bson:"languageOverride"`
}

// FieldWeight is one indexed field and its weight.
type FieldWeight struct {
	Path   string `bson:"path"`
	Weight int32  `bson:"weight"`
}

// mongodLanguages are the languages (and codes) mongod's text indexes
// know; cmkdb stems and filters only English and "none".
var mongodLanguages = map[string]struct{}{
	"danish": {}, "dutch": {}, "english": {}, "finnish": {}, "french": {}, "german": {}, "hungarian": {},
	"italian": {}, "norwegian": {}, "portuguese": {}, "romanian": {}, "russian": {}, "spanish": {},
	"swedish": {}, "turkish": {}, "none": {}, "da": {}, "nl": {}, "en": {}, "fi": {}, "fr": {}, "de": {},
	"hu": {}, "it": {}, "nb": {}, "pt": {}, "ro": {}, "ru": {}, "es": {}, "sv": {}, "tr": {},
}

// CheckLanguage validates a language name as mongod does: an unknown name
// fails with code (its message msg); a language mongod knows but cmkdb
// does not tokenize is refused with NotImplemented.
func CheckLanguage(name string, code mongoerr.Code, msg string) (Language, error) {
	if l, ok := ParseLanguage(name); ok {
		return l, nil
	}
	if _, ok := mongodLanguages[strings.ToLower(name)]; ok {
		return "", mongoerr.New(mongoerr.NotImplemented, "text search language %q is not supported; supported: english, none", name)
	}
	return "", mongoerr.New(code, "%s", msg)
}

// NewSpec builds a text index spec from its key pattern's text fields
// (in order) and the createIndexes options (weights, default_language,
// language_override; Type 0 when absent), validating them as mongod's
// FTSSpec::fixSpec does.
func NewSpec(textFields []string, weights, defaultLanguage, languageOverride bson.RawValue) (*Spec, error) {
	m := map[string]int32{}
	for _, f := range textFields {
		m[f] = 1
	}
	switch weights.Type {
	case 0:
	case bson.TypeEmbeddedDocument:
		els, err := weights.Document().Elements()
		if err != nil {
			return nil, mongoerr.New(mongoerr.BadValue, "invalid weights: %v", err)
		}
		for _, e := range els {
			v := e.Value()
			switch v.Type {
			case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
			default:
				return nil, mongoerr.New(mongoerr.CannotCreateIndex, "weight for text index needs numeric type")
			}
			f := v.AsFloat64()
			if v.Type == bson.TypeDecimal128 {
				f = 1
			}
			m[e.Key()] = int32(math.Max(math.Min(math.Trunc(f), math.MaxInt32), math.MinInt32))
		}
	case bson.TypeString:
		if weights.StringValue() != Wildcard {
			return nil, mongoerr.New(mongoerr.CannotCreateIndex, "text index option 'weights' must be an object")
		}
		m[Wildcard] = 1
	default:
		return nil, mongoerr.New(mongoerr.CannotCreateIndex, "text index option 'weights' must be an object")
	}
	if len(m) == 0 {
		return nil, mongoerr.New(mongoerr.CannotCreateIndex, "text index option 'weights' must specify fields or the wildcard")
	}
	s := &Spec{DefaultLanguage: string(English), LanguageOverride: "language"}
	for path, w := range m {
		if w <= 0 || w >= maxWeight {
			return nil, mongoerr.New(mongoerr.CannotCreateIndex, "text index weight must be in the exclusive interval (0,%d) but found: %d", maxWeight, w)
		}
		if path != Wildcard {
			if path == "" {
				return nil, mongoerr.New(mongoerr.CannotCreateIndex, "weight cannot be on an empty field")
			}
			for _, part := range strings.Split(path, ".") {
				if part == "" {
					return nil, mongoerr.New(mongoerr.CannotCreateIndex, "weight cannot have empty path component")
				}
				if strings.HasPrefix(part, "$") {
					return nil, mongoerr.New(mongoerr.CannotCreateIndex, "weight cannot have path component with $ prefix")
				}
			}
		}
		s.Weights = append(s.Weights, FieldWeight{Path: path, Weight: w})
	}
	sort.Slice(s.Weights, func(i, j int) bool { return s.Weights[i].Path < s.Weights[j].Path })
	switch defaultLanguage.Type {
	case 0:
	case bson.TypeString:
		name := defaultLanguage.StringValue()
		if _, err := CheckLanguage(name, mongoerr.CannotCreateIndex, "default_language is not valid"); err != nil {
			return nil, err
		}
		s.DefaultLanguage = name
	default:
		return nil, mongoerr.New(mongoerr.CannotCreateIndex, "default_language needs a string type")
	}
	switch languageOverride.Type {
	case 0:
	case bson.TypeString:
		o := languageOverride.StringValue()
		if o == "" || strings.HasPrefix(o, "$") || strings.Contains(o, ".") {
			return nil, mongoerr.New(mongoerr.CannotCreateIndex, "language_override is not valid")
		}
		s.LanguageOverride = o
	default:
		return nil, mongoerr.New(mongoerr.CannotCreateIndex, "language_override must be a string")
	}
	return s, nil
}

// Equal reports whether two specs index the same way.
func (s *Spec) Equal(o *Spec) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.DefaultLanguage != o.DefaultLanguage || s.LanguageOverride != o.LanguageOverride || len(s.Weights) != len(o.Weights) {
		return false
	}
	for i := range s.Weights {
		if s.Weights[i] != o.Weights[i] {
			return false
		}
	}
	return true
}

// WeightsDoc is the weights document listIndexes shows.
func (s *Spec) WeightsDoc() bson.D {
	d := make(bson.D, 0, len(s.Weights))
	for _, w := range s.Weights {
		d = append(d, bson.E{Key: w.Path, Value: w.Weight})
	}
	return d
}

func (s *Spec) wildcard() bool {
	for _, w := range s.Weights {
		if w.Path == Wildcard {
			return true
		}
	}
	return false
}

func (s *Spec) weightOf(path string) (float64, bool) {
	for _, w := range s.Weights {
		if w.Path == path {
			return float64(w.Weight), true
		}
	}
	if s.wildcard() {
		return 1, true
	}
	return 0, false
}
