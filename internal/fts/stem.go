package fts

import "strings"

// StemEnglish stems a word with the Snowball English (Porter2)
// algorithm, as mongod's text indexes do for language "english". It is
// written from the algorithm's published description
// (snowballstem.org/algorithms/english/stemmer.html). Like Snowball's
// UTF-8 stemmer, it treats every character but a, e, i, o, u, y as a
// non-vowel (uppercase and accented letters included).
func StemEnglish(word string) string {
	if len(word) <= 2 {
		return word
	}
	if s, ok := stemExceptions1[word]; ok {
		return s
	}
	w := []byte(word)
	if w[0] == '\'' {
		w = w[1:]
	}
	// Mark consonant y: initial y, or y after a vowel.
	for i := range w {
		if w[i] == 'y' && (i == 0 || isVowel(w[i-1])) {
			w[i] = 'Y'
		}
	}
	r1, r2 := regions(w)
	st := &stemmer{w: w, r1: r1, r2: r2}
	st.step0()
	st.step1a()
	if _, ok := stemExceptions2[string(st.w)]; ok {
		return strings.ReplaceAll(string(st.w), "Y", "y")
	}
	st.step1b()
	st.step1c()
	st.step2()
	st.step3()
	st.step4()
	st.step5()
	return strings.ReplaceAll(string(st.w), "Y", "y")
}

var stemExceptions1 = map[string]string{
	"skis": "ski", "skies": "sky", "dying": "die", "lying": "lie", "tying": "tie",
	"idly": "idl", "gently": "gentl", "ugly": "ugli", "early": "earli", "only": "onli", "singly": "singl",
	"sky": "sky", "news": "news", "howe": "howe", "atlas": "atlas", "cosmos": "cosmos", "bias": "bias", "andes": "andes",
}

var stemExceptions2 = map[string]struct{}{
	"inning": {}, "outing": {}, "canning": {}, "herring": {}, "earring": {}, "proceed": {}, "exceed": {}, "succeed": {},
}

func isVowel(c byte) bool {
	switch c {
	case 'a', 'e', 'i', 'o', 'u', 'y':
		return true
	}
	return false
}

// regions returns the starts of R1 and R2.
func regions(w []byte) (int, int) {
	s := string(w)
	r1 := -1
	for _, p := range []string{"gener", "commun", "arsen"} {
		if strings.HasPrefix(s, p) {
			r1 = len(p)
		}
	}
	if r1 < 0 {
		r1 = afterVC(w, 0)
	}
	return r1, afterVC(w, r1)
}

// afterVC is the position after the first non-vowel following a vowel at
// or after from, or len(w).
func afterVC(w []byte, from int) int {
	for i := from + 1; i < len(w); i++ {
		if !isVowel(w[i]) && isVowel(w[i-1]) {
			return i + 1
		}
	}
	return len(w)
}

type stemmer struct {
	w      []byte
	r1, r2 int
}

func (s *stemmer) has(suf string) bool { return strings.HasSuffix(string(s.w), suf) }

// longest returns the longest of sufs that w ends with, or "".
func (s *stemmer) longest(sufs ...string) string {
	best := ""
	for _, x := range sufs {
		if len(x) > len(best) && s.has(x) {
			best = x
		}
	}
	return best
}

func (s *stemmer) replace(suf, with string) {
	s.w = append(s.w[:len(s.w)-len(suf)], with...)
}

func (s *stemmer) inR1(suf string) bool { return len(s.w)-len(suf) >= s.r1 }
func (s *stemmer) inR2(suf string) bool { return len(s.w)-len(suf) >= s.r2 }

func hasVowel(w []byte) bool {
	for _, c := range w {
		if isVowel(c) {
			return true
		}
	}
	return false
}

// shortSyllableEnd reports whether w ends in a short syllable.
func shortSyllableEnd(w []byte) bool {
	n := len(w)
	if n == 2 {
		return isVowel(w[0]) && !isVowel(w[1])
	}
	if n < 3 {
		return false
	}
	c := w[n-1]
	return !isVowel(w[n-3]) && isVowel(w[n-2]) && !isVowel(c) && c != 'w' && c != 'x' && c != 'Y'
}

func (s *stemmer) isShort() bool { return s.r1 >= len(s.w) && shortSyllableEnd(s.w) }

func (s *stemmer) step0() {
	if suf := s.longest("'s'", "'s", "'"); suf != "" {
		s.replace(suf, "")
	}
}

func (s *stemmer) step1a() {
	switch suf := s.longest("sses", "ied", "ies", "s", "us", "ss"); suf {
	case "sses":
		s.replace(suf, "ss")
	case "ied", "ies":
		if len(s.w)-len(suf) > 1 {
			s.replace(suf, "i")
		} else {
			s.replace(suf, "ie")
		}
	case "s":
		// Delete if the part before the s holds a vowel not just before it.
		if len(s.w) >= 3 && hasVowel(s.w[:len(s.w)-2]) {
			s.replace(suf, "")
		}
	}
}

func (s *stemmer) step1b() {
	suf := s.longest("eed", "eedly", "ed", "edly", "ing", "ingly")
	switch suf {
	case "":
		return
	case "eed", "eedly":
		if s.inR1(suf) {
			s.replace(suf, "ee")
		}
		return
	}
	if !hasVowel(s.w[:len(s.w)-len(suf)]) {
		return
	}
	s.replace(suf, "")
	switch {
	case s.has("at"), s.has("bl"), s.has("iz"):
		s.w = append(s.w, 'e')
	case s.longest("bb", "dd", "ff", "gg", "mm", "nn", "pp", "rr", "tt") != "":
		s.w = s.w[:len(s.w)-1]
	case s.isShort():
		s.w = append(s.w, 'e')
	}
}

func (s *stemmer) step1c() {
	n := len(s.w)
	if n > 2 && (s.w[n-1] == 'y' || s.w[n-1] == 'Y') && !isVowel(s.w[n-2]) {
		s.w[n-1] = 'i'
	}
}

var step2Rules = map[string]string{
	"tional": "tion", "enci": "ence", "anci": "ance", "abli": "able", "entli": "ent",
	"izer": "ize", "ization": "ize", "ational": "ate", "ation": "ate", "ator": "ate",
	"alism": "al", "aliti": "al", "alli": "al", "fulness": "ful", "ousli": "ous", "ousness": "ous",
	"iveness": "ive", "iviti": "ive", "biliti": "ble", "bli": "ble", "ogi": "og", "fulli": "ful",
	"lessli": "less", "li": "",
}

func (s *stemmer) longestOf(rules map[string]string) string {
	best := ""
	for suf := range rules {
		if len(suf) > len(best) && s.has(suf) {
			best = suf
		}
	}
	return best
}

func (s *stemmer) step2() {
	suf := s.longestOf(step2Rules)
	if suf == "" || !s.inR1(suf) {
		return
	}
	pre := s.w[:len(s.w)-len(suf)]
	switch suf {
	case "ogi":
		if len(pre) == 0 || pre[len(pre)-1] != 'l' {
			return
		}
	case "li":
		if len(pre) == 0 || !strings.ContainsRune("cdeghkmnrt", rune(pre[len(pre)-1])) {
			return
		}
	}
	s.replace(suf, step2Rules[suf])
}

var step3Rules = map[string]string{
	"tional": "tion", "ational": "ate", "alize": "al", "icate": "ic", "iciti": "ic", "ical": "ic",
	"ful": "", "ness": "", "ative": "",
}

func (s *stemmer) step3() {
	suf := s.longestOf(step3Rules)
	if suf == "" || !s.inR1(suf) {
		return
	}
	if suf == "ative" && !s.inR2(suf) {
		return
	}
	s.replace(suf, step3Rules[suf])
}

var step4Suffixes = map[string]string{
	"al": "", "ance": "", "ence": "", "er": "", "ic": "", "able": "", "ible": "", "ant": "", "ement": "",
	"ment": "", "ent": "", "ism": "", "ate": "", "iti": "", "ous": "", "ive": "", "ize": "", "ion": "",
}

func (s *stemmer) step4() {
	suf := s.longestOf(step4Suffixes)
	if suf == "" || !s.inR2(suf) {
		return
	}
	if suf == "ion" {
		pre := s.w[:len(s.w)-3]
		if len(pre) == 0 || (pre[len(pre)-1] != 's' && pre[len(pre)-1] != 't') {
			return
		}
	}
	s.replace(suf, "")
}

func (s *stemmer) step5() {
	switch {
	case s.has("e"):
		if s.inR2("e") || (s.inR1("e") && !shortSyllableEnd(s.w[:len(s.w)-1])) {
			s.replace("e", "")
		}
	case s.has("l"):
		if s.inR2("l") && len(s.w) >= 2 && s.w[len(s.w)-2] == 'l' {
			s.replace("l", "")
		}
	}
}
