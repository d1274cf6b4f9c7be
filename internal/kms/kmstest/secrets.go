package kmstest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Canary returns n random bytes to use as a key or payload whose leaks are
// then searched for. Random bytes, not a recognisable string, because real
// keys are random and a leak check must find them in every encoding.
func Canary(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// windowLen is the shortest run of secret bytes reported as a leak: long
// enough that random text cannot contain it by chance, short enough to catch
// a secret that was truncated or split before being printed.
const windowLen = 8

// SecretForms returns the texts in which secret would show if it leaked:
// raw, hex, base64 (all alphabets), Go's %v, %q and %#v of the slice, and hex
// of every windowLen-byte run of it.
func SecretForms(secret []byte) []string {
	if len(secret) == 0 {
		return nil
	}
	forms := []string{
		string(secret),
		hex.EncodeToString(secret),
		strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret),
		base64.URLEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		fmt.Sprint(secret),
		fmt.Sprintf("%q", secret),
		fmt.Sprintf("%#v", secret),
	}
	for i := 0; i+windowLen <= len(secret); i++ {
		w := secret[i : i+windowLen]
		forms = append(forms, string(w), hex.EncodeToString(w), strings.ToUpper(hex.EncodeToString(w)))
	}
	return forms
}

// AssertNoSecret fails t if text contains any form of any secret. where
// names the text in the failure message; the secret itself is never printed.
func AssertNoSecret(t testing.TB, where, text string, secrets ...[]byte) {
	t.Helper()
	for i, s := range secrets {
		for _, f := range SecretForms(s) {
			if strings.Contains(text, f) {
				t.Errorf("%s contains secret #%d (%d bytes) in some encoding", where, i, len(s))
				return
			}
		}
	}
}

// AssertErrorHidesSecrets checks err, printed every way a log line might
// print it and along its whole Unwrap chain, for secrets.
func AssertErrorHidesSecrets(t testing.TB, where string, err error, secrets ...[]byte) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range errorTexts(err) {
		AssertNoSecret(t, where, text, secrets...)
	}
}

func errorTexts(err error) []string {
	var out []string
	var walk func(error, int)
	walk = func(e error, depth int) {
		if e == nil || depth > 32 {
			return
		}
		out = append(out, e.Error(), fmt.Sprintf("%v", e), fmt.Sprintf("%+v", e), fmt.Sprintf("%#v", e))
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c, depth+1)
			}
		default:
			walk(errors.Unwrap(e), depth+1)
		}
	}
	walk(err, 0)
	return out
}
