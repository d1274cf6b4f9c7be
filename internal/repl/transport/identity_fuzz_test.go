package transport

import "testing"

// FuzzParseIdentity: a certificate's common name either parses to an
// identity that names it exactly, or is refused.
func FuzzParseIdentity(f *testing.F) {
	f.Add("cmkdb-member/p/rs0/m0")
	f.Add("cmkdb-member/p//m0")
	f.Add("cmkdb-member/a/b/c/d")
	f.Fuzz(func(t *testing.T, cn string) {
		id, err := ParseIdentity(cn)
		if err != nil {
			return
		}
		if id.CommonName() != cn {
			t.Fatalf("%q parsed to %+v, which names %q", cn, id, id.CommonName())
		}
	})
}
