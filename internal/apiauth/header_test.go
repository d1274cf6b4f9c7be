package apiauth

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in         string
		wantScheme string
		want       map[string]string
		wantErr    bool
	}{
		{in: `Digest username="a", qop=auth, nc=00000001`, wantScheme: "Digest",
			want: map[string]string{"username": "a", "qop": "auth", "nc": "00000001"}},
		{in: "  digest\tUserName = \"a b\" ,, ,realm=\"x\\\"y\\\\z\"  ", wantScheme: "digest",
			want: map[string]string{"username": "a b", "realm": `x"y\z`}},
		{in: `Digest uri="/p?a=1,b=2", cnonce=""`, wantScheme: "Digest",
			want: map[string]string{"uri": "/p?a=1,b=2", "cnonce": ""}},
		{in: "Digest", wantScheme: "Digest", want: map[string]string{}},
		{in: "", wantErr: true},
		{in: `Digest=x`, wantErr: true},
		{in: `Digest a`, wantErr: true},
		{in: `Digest a=`, wantErr: true},
		{in: `Digest a="unterminated`, wantErr: true},
		{in: `Digest a="ends in escape\`, wantErr: true},
		{in: "Digest a=\"ctl\x01\"", wantErr: true},
		{in: `Digest a=b c=d`, wantErr: true},
		{in: `Digest a=b, A=c`, wantErr: true},
		{in: `Digest =b`, wantErr: true},
		{in: "Digest a=b\x00", wantErr: true},
		{in: "Digest " + strings.Repeat("a=b,", maxParams) + "z=y", wantErr: true},
		{in: "Digest x=\"" + strings.Repeat("a", maxHeaderLen) + "\"", wantErr: true},
	}
	for _, tt := range tests {
		scheme, got, err := parseAuthorization(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parse(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && (scheme != tt.wantScheme || !maps.Equal(got, tt.want)) {
			t.Errorf("parse(%q) = %q %v, want %q %v", tt.in, scheme, got, tt.wantScheme, tt.want)
		}
	}
}

// FuzzParseAuthorization checks that arbitrary headers never panic the parser
// or Authenticate, and that anything accepted survives a render/parse round
// trip unchanged (so the parser has one reading of every header it accepts).
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`Digest username="pubkeyA", realm="MMS Public API", nonce="AAAA", uri="/api/atlas/v1.0/groups?x=1", response="0123456789abcdef0123456789abcdef", algorithm="MD5", qop=auth, nc=00000001, cnonce="0a4f113b"`,
		`Digest realm="MMS Public API", nonce="n", algorithm=MD5, qop="auth", stale=false`,
		`Basic dXNlcjpwYXNz`,
		`Digest a="\"\\", b=c,,,`,
		"Digest a=\"\t\x80\xff\"",
		`Digest a="`,
		``,
	} {
		f.Add(s)
	}
	a := New(Realm, func(_ context.Context, pk string) ([]byte, bool) { return []byte("secret"), pk == "pubkeyA" })
	f.Fuzz(func(t *testing.T, h string) {
		scheme, params, err := parseAuthorization(h)
		if err == nil {
			if scheme == "" {
				t.Fatalf("accepted %q with empty scheme", h)
			}
			keys := slices.Sorted(maps.Keys(params))
			parts := make([]string, 0, len(keys))
			for _, k := range keys {
				parts = append(parts, k+"="+quoteString(params[k]))
			}
			rendered := scheme + " " + strings.Join(parts, ", ")
			scheme2, params2, err := parseAuthorization(rendered)
			if err != nil || scheme2 != scheme || !maps.Equal(params, params2) {
				t.Fatalf("round trip of %q via %q: %q %v %v", h, rendered, scheme2, params2, err)
			}
		}
		r, _ := http.NewRequest(http.MethodGet, "http://x/api", nil)
		r.Header.Set("Authorization", h)
		if pk, err := a.Authenticate(r); err == nil {
			t.Fatalf("fuzzed header %q authenticated as %q", h, pk)
		}
	})
}
