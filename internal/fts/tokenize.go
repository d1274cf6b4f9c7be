// Package fts is text search as mongod's text indexes (textIndexVersion 3)
// do it: Unicode tokenizing, case and diacritic folding, stop words and
// stemming per language, term scores and $text query parsing.
package fts

import (
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// Language is a text index language: "english" (stop words and stemming)
// or "none" (neither).
type Language string

// The languages cmkdb's text search supports.
const (
	English Language = "english"
	None    Language = "none"
)

// ParseLanguage maps a language name (or mongod's two-letter code) to a
// supported language.
func ParseLanguage(name string) (Language, bool) {
	switch strings.ToLower(name) {
	case "english", "en":
		return English, true
	case "none":
		return None, true
	}
	return "", false
}

// Fold lowercases s and, unless diacriticSensitive, strips diacritics
// (NFD, dropping nonspacing marks). caseSensitive keeps the case.
func Fold(s string, caseSensitive, diacriticSensitive bool) string {
	if !diacriticSensitive {
		d := norm.NFD.String(s)
		var b strings.Builder
		b.Grow(len(d))
		for _, r := range d {
			if unicode.Is(unicode.Mn, r) {
				continue
			}
			b.WriteRune(r)
		}
		s = norm.NFC.String(b.String())
	}
	if !caseSensitive {
		s = strings.ToLower(s)
	}
	return s
}

// isDelimiter reports whether r separates tokens in lang: anything but a
// letter, a digit, a combining mark or '_'; English keeps apostrophes
// inside words ("don't", "dog's"), as mongod's tokenizer does.
func isDelimiter(r rune, lang Language) bool {
	if (r == '\'' && lang == English) || r == '_' {
		return false
	}
	return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r)
}

// Words splits s into raw tokens at lang's delimiters, unfolded.
func Words(s string, lang Language) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return isDelimiter(r, lang) })
}

// Terms returns the index terms of s in lang: tokens folded (lowercase,
// no diacritics), stop words dropped, stemmed. Each occurrence is
// returned, in order.
func Terms(s string, lang Language) []string {
	var out []string
	for _, w := range Words(s, lang) {
		if t, ok := Term(w, lang, false, false); ok {
			out = append(out, t)
		}
	}
	return out
}

// Term normalizes one raw token as mongod's Unicode tokenizer does:
// dropped (false) if its lowercase form is a stop word of lang; else the
// word (lowercased unless caseSensitive) is stemmed, then its diacritics
// are stripped unless diacriticSensitive.
func Term(w string, lang Language, caseSensitive, diacriticSensitive bool) (string, bool) {
	lower := strings.ToLower(w)
	if lang == English {
		if _, stop := englishStopWords[lower]; stop {
			return "", false
		}
	}
	t := lower
	if caseSensitive {
		t = w
	}
	if lang == English {
		t = StemEnglish(t)
	}
	if !diacriticSensitive {
		t = Fold(t, true, false)
	}
	return t, true
}
