package apiauth

import (
	"errors"
	"strings"
)

// Limits on what the parser accepts; a digest header from a real client is a
// few hundred bytes with about ten parameters.
const (
	maxHeaderLen = 4 << 10
	maxParams    = 32
)

var (
	errTooLong        = errors.New("header too long")
	errTooManyParams  = errors.New("too many parameters")
	errNoScheme       = errors.New("missing auth scheme")
	errNoSeparator    = errors.New("missing space after auth scheme")
	errBadParamName   = errors.New("invalid parameter name")
	errNoEquals       = errors.New("parameter without '='")
	errEmptyValue     = errors.New("empty parameter value")
	errUnterminated   = errors.New("unterminated quoted string")
	errControlChar    = errors.New("control character in quoted string")
	errDuplicateParam = errors.New("duplicate parameter")
	errNoComma        = errors.New("parameters not separated by ','")
)

// parseAuthorization splits an Authorization header of the form
//
//	scheme key=token, key="quoted \"string\"", ...
//
// (RFC 9110 §11.4 credentials with auth-params) into its scheme and its
// parameters. Parameter names are lower-cased because they are
// case-insensitive. Duplicate names are rejected rather than resolved: if the
// verifier and a proxy picked different copies, a signature over one could
// be used to smuggle the other.
func parseAuthorization(h string) (scheme string, params map[string]string, err error) {
	if len(h) > maxHeaderLen {
		return "", nil, errTooLong
	}
	p := &headerParser{s: h}
	p.skipOWS()
	scheme = p.token()
	if scheme == "" {
		return "", nil, errNoScheme
	}
	params = make(map[string]string)
	if p.done() {
		return scheme, params, nil
	}
	if !p.skipOWS() {
		return "", nil, errNoSeparator
	}
	for {
		// Empty list elements (",,") are allowed by the list syntax.
		for p.skipOWS() || p.skip(',') {
		}
		if p.done() {
			return scheme, params, nil
		}
		name := p.token()
		if name == "" {
			return "", nil, errBadParamName
		}
		p.skipOWS()
		if !p.skip('=') {
			return "", nil, errNoEquals
		}
		p.skipOWS()
		var value string
		if p.peek() == '"' {
			if value, err = p.quoted(); err != nil {
				return "", nil, err
			}
		} else if value = p.token(); value == "" {
			return "", nil, errEmptyValue
		}
		name = strings.ToLower(name)
		if _, dup := params[name]; dup {
			return "", nil, errDuplicateParam
		}
		if len(params) == maxParams {
			return "", nil, errTooManyParams
		}
		params[name] = value
		p.skipOWS()
		if !p.done() && p.peek() != ',' {
			return "", nil, errNoComma
		}
	}
}

// authScheme returns the leading token of an Authorization header.
func authScheme(h string) string {
	p := &headerParser{s: h}
	p.skipOWS()
	return p.token()
}

type headerParser struct {
	s string
	i int
}

func (p *headerParser) done() bool { return p.i >= len(p.s) }

func (p *headerParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *headerParser) skip(c byte) bool {
	if !p.done() && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// skipOWS skips optional whitespace and reports whether any was skipped.
func (p *headerParser) skipOWS() bool {
	start := p.i
	for !p.done() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
	return p.i > start
}

func (p *headerParser) token() string {
	start := p.i
	for !p.done() && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string starting at the opening quote and returns it
// unescaped.
func (p *headerParser) quoted() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for !p.done() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '"':
			return b.String(), nil
		case c == '\\':
			if p.done() {
				return "", errUnterminated
			}
			c = p.s[p.i]
			p.i++
			if isCTL(c) {
				return "", errControlChar
			}
		case isCTL(c):
			return "", errControlChar
		}
		b.WriteByte(c)
	}
	return "", errUnterminated
}

func isCTL(c byte) bool { return (c < 0x20 && c != '\t') || c == 0x7f }

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quoteString renders s as an RFC 9110 quoted-string.
func quoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}
