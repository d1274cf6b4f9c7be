package auth

import (
	"context"
	"testing"
)

// FuzzSASLPayloads drives a conversation with arbitrary client messages:
// it must never panic, and never authenticate.
func FuzzSASLPayloads(f *testing.F) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil", SCRAMSHA256); err != nil {
		f.Fatal(err)
	}
	a := NewAuthenticator(store)
	f.Add([]byte("n,,n=alice,r=abc"), []byte("c=biws,r=abc,p=AAAA"), []byte(""))
	f.Add([]byte("p=tls-unique,,n=alice,r=x"), []byte("c=,r=,p="), []byte("x"))
	f.Add([]byte("n,a=bob,n=mallory,r=q"), []byte(""), []byte("v=AAAA"))
	f.Fuzz(func(t *testing.T, first, final, extra []byte) {
		ctx := context.Background()
		c := newConn()
		if _, err := a.SaslStart(ctx, c, request("admin", saslStartCmd(t, SCRAMSHA256, first, false))); err != nil {
			return
		}
		for _, p := range [][]byte{final, extra, nil} {
			if _, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, p))); err != nil {
				break
			}
		}
		if _, ok := c.Authenticated(); ok {
			t.Fatalf("authenticated with forged messages %q %q %q", first, final, extra)
		}
	})
}
