package fts

import "testing"

// Examples from the Snowball English stemmer's published vocabulary and
// algorithm description.
func TestStemEnglish(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"consign", "consign"}, {"consigned", "consign"}, {"consigning", "consign"}, {"consignment", "consign"},
		{"consist", "consist"}, {"consisted", "consist"}, {"consistency", "consist"}, {"consistent", "consist"},
		{"consistently", "consist"}, {"consisting", "consist"}, {"consists", "consist"},
		{"consolation", "consol"}, {"consolations", "consol"}, {"consolatory", "consolatori"},
		{"console", "consol"}, {"consoled", "consol"}, {"consoles", "consol"}, {"consolidate", "consolid"},
		{"consolidated", "consolid"}, {"consolidating", "consolid"}, {"consoling", "consol"},
		{"consolingly", "consol"}, {"consols", "consol"}, {"consonant", "conson"}, {"consort", "consort"},
		{"consorted", "consort"}, {"consorting", "consort"}, {"conspicuous", "conspicu"},
		{"conspicuously", "conspicu"}, {"conspiracy", "conspiraci"}, {"conspirator", "conspir"},
		{"conspirators", "conspir"}, {"conspire", "conspir"}, {"conspired", "conspir"},
		{"conspiring", "conspir"}, {"constable", "constabl"}, {"constables", "constabl"},
		{"constance", "constanc"}, {"constancy", "constanc"}, {"constant", "constant"},
		{"knack", "knack"}, {"knackeries", "knackeri"}, {"knacks", "knack"}, {"knag", "knag"},
		{"knave", "knave"}, {"knaves", "knave"}, {"knavish", "knavish"}, {"kneaded", "knead"},
		{"kneading", "knead"}, {"knee", "knee"}, {"kneel", "kneel"}, {"kneeled", "kneel"},
		{"kneeling", "kneel"}, {"kneels", "kneel"}, {"knees", "knee"}, {"knell", "knell"},
		{"knelt", "knelt"}, {"knew", "knew"}, {"knick", "knick"}, {"knif", "knif"}, {"knife", "knife"},
		{"knight", "knight"}, {"knightly", "knight"}, {"knights", "knight"}, {"knit", "knit"},
		{"knits", "knit"}, {"knitted", "knit"}, {"knitting", "knit"}, {"knives", "knive"},
		{"knob", "knob"}, {"knobs", "knob"}, {"knock", "knock"}, {"knocked", "knock"},
		{"knocker", "knocker"}, {"knockers", "knocker"}, {"knocking", "knock"}, {"knocks", "knock"},
		{"knopp", "knopp"}, {"knot", "knot"}, {"knots", "knot"},
		{"abandon", "abandon"}, {"abandoned", "abandon"}, {"abase", "abas"}, {"abash", "abash"}, {"abate", "abat"}, {"abated", "abat"}, {"abatement", "abat"}, {"abbey", "abbey"}, {"abbot", "abbot"}, {"abbreviated", "abbrevi"}, {"abdication", "abdic"}, {"abide", "abid"}, {"abilities", "abil"}, {"ability", "abil"}, {"able", "abl"}, {"abode", "abod"}, {"abominable", "abomin"}, {"abound", "abound"}, {"above", "abov"}, {"abroad", "abroad"}, {"abrupt", "abrupt"}, {"absence", "absenc"}, {"absent", "absent"}, {"absolute", "absolut"}, {"absolutely", "absolut"}, {"absorbed", "absorb"}, {"abstract", "abstract"}, {"absurd", "absurd"}, {"abundance", "abund"}, {"abundant", "abund"}, {"abuse", "abus"}, {"accept", "accept"}, {"acceptable", "accept"}, {"acceptance", "accept"}, {"accepted", "accept"}, {"access", "access"}, {"accident", "accid"}, {"accidental", "accident"}, {"accidentally", "accident"}, {"accommodation", "accommod"}, {"accompanied", "accompani"}, {"accompany", "accompani"}, {"accomplished", "accomplish"}, {"accord", "accord"}, {"according", "accord"}, {"accordingly", "accord"}, {"account", "account"}, {"accurate", "accur"}, {"accustomed", "accustom"}, {"ache", "ach"}, {"achieve", "achiev"}, {"acquaintance", "acquaint"}, {"acquainted", "acquaint"}, {"act", "act"}, {"action", "action"}, {"active", "activ"}, {"activity", "activ"}, {"actual", "actual"}, {"actually", "actual"},
		// Step examples from the algorithm's description.
		{"caresses", "caress"}, {"ponies", "poni"}, {"ties", "tie"}, {"cries", "cri"}, {"gas", "gas"},
		{"this", "this"}, {"gaps", "gap"}, {"kiwis", "kiwi"}, {"running", "run"}, {"hoping", "hope"},
		{"luxuriated", "luxuri"}, {"generously", "generous"}, {"generate", "generat"}, {"communism", "communism"},
		{"skies", "sky"}, {"dying", "die"}, {"news", "news"}, {"proceed", "proceed"}, {"succeeding", "succeed"},
		{"cry", "cri"}, {"by", "by"}, {"say", "say"}, {"happily", "happili"}, {"dogs", "dog"}, {"a", "a"},
	} {
		if got := StemEnglish(tc.in); got != tc.want {
			t.Errorf("StemEnglish(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
