package query

import (
	"regexp"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// compileRegex translates a MongoDB (PCRE) pattern and option string into a
// Go regexp. Go's RE2 engine lacks backreferences and lookaround; patterns
// using them are rejected with BadValue rather than silently mismatching.
func compileRegex(pattern, options string) (*regexp.Regexp, error) {
	var flags strings.Builder
	extended := false
	for _, c := range options {
		switch c {
		case 'i', 'm', 's':
			flags.WriteRune(c)
		case 'x':
			extended = true
		case 'u', 'l':
			// u (unicode) is always on in RE2; l (locale) is a no-op here.
		default:
			return nil, mongoerr.New(mongoerr.BadValue, "invalid flag in regex options: %c", c)
		}
	}
	if extended {
		pattern = stripExtended(pattern)
	}
	if flags.Len() > 0 {
		pattern = "(?" + flags.String() + ")" + pattern
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "Regular expression is invalid: %v", err)
	}
	return re, nil
}

// stripExtended implements PCRE's x flag: unescaped whitespace outside
// character classes is ignored and # starts a comment to end of line.
func stripExtended(p string) string {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			b.WriteByte(c)
			b.WriteByte(p[i+1])
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
			b.WriteByte(c)
		case c == '[':
			inClass = true
			b.WriteByte(c)
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		case c == '#':
			for i < len(p) && p[i] != '\n' {
				i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// regexPred matches strings and symbols against re, and a stored regex
// value if it is identical to the query's (MongoDB's RegexMatchExpression).
type regexPred struct {
	re      *regexp.Regexp
	pattern string
	options string
}

func (r *regexPred) match(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeString, bson.TypeSymbol:
		return r.re.MatchString(stringish(v))
	case bson.TypeRegex:
		p, o, _ := v.RegexOK()
		return p == r.pattern && o == r.options
	}
	return false
}

func newRegexPred(pattern, options string) (*regexPred, error) {
	re, err := compileRegex(pattern, options)
	if err != nil {
		return nil, err
	}
	return &regexPred{re: re, pattern: pattern, options: options}, nil
}
