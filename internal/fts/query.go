package fts

import (
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// Query is a parsed $text query.
type Query struct {
	// Terms are the positive terms as the index stores them (lowercase,
	// no diacritics, stemmed), distinct and sorted: the index lookups and
	// the terms scored.
	Terms []string
	// Positive, Negated are the terms compared with documents' tokens
	// under the query's case and diacritic sensitivity.
	Positive, Negated       []string
	Phrases, NegatedPhrases []string
	Lang                    Language
	CaseSensitive           bool
	DiacriticSensitive      bool
	langSet                 bool
	search                  string
}

// ParseQuery parses the operand of $text: {$search, $language,
// $caseSensitive, $diacriticSensitive}, with mongod's errors
// (ExtensionsCallback::extractTextMatchExpressionParams).
func ParseQuery(v bson.RawValue) (*Query, error) {
	doc, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.BadValue, "$text expects an object")
	}
	els, err := doc.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "$text: %v", err)
	}
	field := func(name string, t bson.Type) (bson.RawValue, bool, error) {
		x, err := doc.LookupErr(name)
		if err != nil {
			return x, false, nil
		}
		if x.Type != t {
			return x, false, mongoerr.New(mongoerr.TypeMismatch, "\"%s\" had the wrong type. Expected %s, found %s", name, query.TypeName(t), query.TypeName(x.Type))
		}
		return x, true, nil
	}
	q := &Query{}
	search, ok, err := field("$search", bson.TypeString)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mongoerr.New(mongoerr.NoSuchKey, "Missing expected field \"$search\"")
	}
	q.search = search.StringValue()
	want := 1
	lang, ok, err := field("$language", bson.TypeString)
	if err != nil {
		return nil, err
	}
	if ok {
		want++
	}
	cs, ok, err := field("$caseSensitive", bson.TypeBoolean)
	if err != nil {
		return nil, err
	}
	if ok {
		want++
		q.CaseSensitive = cs.Boolean()
	}
	ds, ok, err := field("$diacriticSensitive", bson.TypeBoolean)
	if err != nil {
		return nil, err
	}
	if ok {
		want++
		q.DiacriticSensitive = ds.Boolean()
	}
	if len(els) != want {
		return nil, mongoerr.New(mongoerr.BadValue, "extra fields in $text")
	}
	if lang.Type == bson.TypeString {
		name := lang.StringValue()
		l, err := CheckLanguage(name, mongoerr.BadValue, "unsupported language: \""+name+"\" for text index version 3")
		if err != nil {
			return nil, err
		}
		q.Lang, q.langSet = l, true
	}
	return q, nil
}

// Bind resolves the query against the index spec (its default language
// when $language was not given) and tokenizes the search string.
func (q *Query) Bind(s *Spec) {
	if !q.langSet {
		q.Lang, _ = ParseLanguage(s.DefaultLanguage)
	}
	q.parse(q.search)
}

func (q *Query) addTerm(w string, negated bool) {
	idx, ok := Term(w, q.Lang, false, false)
	if !ok {
		return
	}
	t, _ := Term(w, q.Lang, q.CaseSensitive, q.DiacriticSensitive)
	if negated {
		q.Negated = append(q.Negated, t)
		return
	}
	q.Positive = append(q.Positive, t)
	q.Terms = append(q.Terms, idx)
}

// Query token kinds of mongod's FTSQueryParser.
const (
	qText = iota
	qWhitespace
	qDelimiter
)

func queryCharType(c byte) int {
	switch c {
	case '\n', '\v', '\f', '\r', ' ':
		return qWhitespace
	case '\'', '-', '"':
		return qDelimiter
	}
	return qText
}

// parse splits the search string as mongod's FTSQueryImpl::parse does:
// words are OR'd terms; a '-' after whitespace (or first) negates what
// follows up to the next whitespace; "quoted text" is a phrase whose words
// are terms too, -"quoted text" a negated phrase (its words are not
// terms); an unterminated quote starts no phrase. The collected words
// then go through the language's tokenizer (stop words, stemming).
func (q *Query) parse(s string) {
	var pos, neg strings.Builder
	inNeg, inPhrase := false, false
	quoteOffset := 0
	i := 0
	skipWS := func() bool {
		start := i
		for i < len(s) && queryCharType(s[i]) == qWhitespace {
			i++
		}
		return i > start
	}
	skipWS()
	prevWS := true
	for i < len(s) {
		start := i
		c := s[i]
		typ := queryCharType(c)
		i++
		if typ == qText {
			for i < len(s) && queryCharType(s[i]) == qText {
				i++
			}
		}
		tok := s[start:i]
		ws := prevWS
		prevWS = skipWS()
		if typ == qText {
			if inPhrase && inNeg {
				continue
			}
			if inNeg && ws {
				inNeg = false
			}
			if inNeg {
				neg.WriteString(tok + " ")
			} else {
				pos.WriteString(tok + " ")
			}
			continue
		}
		switch c {
		case '-':
			if !inPhrase && ws {
				inNeg = true
			}
		case '"':
			if inPhrase {
				phrase := s[quoteOffset+1 : start]
				if inNeg {
					q.NegatedPhrases = append(q.NegatedPhrases, phrase)
				} else {
					q.Phrases = append(q.Phrases, phrase)
				}
				inPhrase = false
			} else {
				inPhrase = true
				if inNeg && ws {
					inNeg = false
				}
				quoteOffset = start
			}
		}
	}
	for _, w := range Words(pos.String(), q.Lang) {
		q.addTerm(w, false)
	}
	for _, w := range Words(neg.String(), q.Lang) {
		q.addTerm(w, true)
	}
	slices.Sort(q.Terms)
	q.Terms = slices.Compact(q.Terms)
}

// Match reports whether a document with these texts, read through the
// index for q.Terms, matches: it holds a positive term under the query's
// case and diacritic sensitivity (insensitive, the index lookup found
// one), every phrase and no negated term or phrase. Documents' strings
// are tokenized in their own language, as mongod's FTSMatcher does.
func (q *Query) Match(texts []Text) bool {
	tokens := map[string]struct{}{}
	for _, t := range texts {
		for _, w := range Words(t.Value, t.Lang) {
			if tok, ok := Term(w, t.Lang, q.CaseSensitive, q.DiacriticSensitive); ok {
				tokens[tok] = struct{}{}
			}
		}
	}
	if q.CaseSensitive || q.DiacriticSensitive {
		found := false
		for _, t := range q.Positive {
			if _, ok := tokens[t]; ok {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	for _, t := range q.Negated {
		if _, ok := tokens[t]; ok {
			return false
		}
	}
	for _, p := range q.Phrases {
		if !q.phraseIn(p, texts) {
			return false
		}
	}
	for _, p := range q.NegatedPhrases {
		if q.phraseIn(p, texts) {
			return false
		}
	}
	return true
}

func (q *Query) phraseIn(p string, texts []Text) bool {
	p = Fold(p, q.CaseSensitive, q.DiacriticSensitive)
	for _, t := range texts {
		if strings.Contains(Fold(t.Value, q.CaseSensitive, q.DiacriticSensitive), p) {
			return true
		}
	}
	return false
}

// Score is a matching document's text score: the sum of its scores for
// the query's terms.
func (q *Query) Score(scores map[string]float64) float64 {
	total := 0.0
	for _, t := range q.Terms {
		total += scores[t]
	}
	return total
}
