package fts

import (
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Text is one indexed string of a document.
type Text struct {
	Value  string
	Weight float64
	Lang   Language
}

// Texts returns the strings of doc that s indexes, with their weights and
// languages (the language override field of the enclosing document, else
// the index's default language).
func (s *Spec) Texts(doc bson.Raw) ([]Text, error) {
	lang, _ := ParseLanguage(s.DefaultLanguage)
	var out []Text
	err := s.walk(doc, "", lang, &out)
	return out, err
}

func (s *Spec) languageOf(doc bson.Raw, def Language) (Language, error) {
	v, err := doc.LookupErr(s.LanguageOverride)
	if err != nil {
		return def, nil
	}
	name, ok := v.StringValueOK()
	if !ok {
		return "", mongoerr.New(17261, "found language override field in document with non-string type")
	}
	return CheckLanguage(name, 17262, "language override unsupported: "+name)
}

// wanted reports whether path or a path below it is indexed.
func (s *Spec) wanted(path string) bool {
	for _, w := range s.Weights {
		if w.Path == Wildcard || w.Path == path || strings.HasPrefix(w.Path, path+".") {
			return true
		}
	}
	return false
}

func (s *Spec) walk(doc bson.Raw, prefix string, lang Language, out *[]Text) error {
	lang, err := s.languageOf(doc, lang)
	if err != nil {
		return err
	}
	els, err := doc.Elements()
	if err != nil {
		return err
	}
	for _, e := range els {
		path := prefix + e.Key()
		if !s.wanted(path) {
			continue
		}
		if err := s.value(e.Value(), path, lang, out); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spec) value(v bson.RawValue, path string, lang Language, out *[]Text) error {
	switch v.Type {
	case bson.TypeString:
		if w, ok := s.weightOf(path); ok {
			*out = append(*out, Text{Value: v.StringValue(), Weight: w, Lang: lang})
		}
	case bson.TypeEmbeddedDocument:
		return s.walk(v.Document(), path+".", lang, out)
	case bson.TypeArray:
		vals, err := v.Array().Values()
		if err != nil {
			return err
		}
		for _, x := range vals {
			if err := s.value(x, path, lang, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// Scores returns doc's score per index term, as mongod's
// FTSSpec::scoreDocument computes it: for each string, each term scores
// weight × freq × (0.5 × count/numTokens + 0.5), where the i-th
// occurrence of a term adds 1/2^(i-1) to freq, numTokens counts the
// string's non-stop-word tokens, and a term equal to the whole string
// gets 10% more.
func (s *Spec) Scores(doc bson.Raw) (map[string]float64, error) {
	texts, err := s.Texts(doc)
	if err != nil {
		return nil, err
	}
	scores := map[string]float64{}
	for _, t := range texts {
		scoreString(t, scores)
	}
	return scores, nil
}

func scoreString(t Text, scores map[string]float64) {
	type helper struct{ freq, count, exp float64 }
	terms := map[string]*helper{}
	var order []string
	n := 0
	for _, term := range Terms(t.Value, t.Lang) {
		h := terms[term]
		if h == nil {
			h = &helper{}
			terms[term] = h
			order = append(order, term)
		}
		if h.exp == 0 {
			h.exp = 1
		} else {
			h.exp *= 2
		}
		h.count++
		h.freq += 1 / h.exp
		n++
	}
	for _, term := range order {
		h := terms[term]
		coeff := 0.5*h.count/float64(n) + 0.5
		adj := 1.0
		if len(t.Value) == len(term) && strings.EqualFold(t.Value, term) {
			adj += 0.1
		}
		scores[term] += t.Weight * h.freq * coeff * adj
	}
}
