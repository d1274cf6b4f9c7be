package keyservice_test

import (
	"context"
	"testing"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// BenchmarkUnwrap measures what the key service adds to a node's unwrap (at
// node start, re-enable and every master key rotation): the local key file
// provider called directly, against the same key through the key service
// over mutual TLS (one kept-alive connection, as a node has).
//
//	go test -run='^$' -bench=Unwrap -count=6 ./internal/keyservice | tee u.txt && benchstat -col /via u.txt
func BenchmarkUnwrap(b *testing.B) {
	h := &harness{}
	remote := h.Provider(b)
	direct, err := local.Open(h.keyFile)
	if err != nil {
		b.Fatal(err)
	}
	master := make([]byte, 32)
	for _, tc := range []struct {
		name string
		p    kms.Provider
	}{{"via=direct", direct}, {"via=keyservice", remote}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			w, err := tc.p.Wrap(ctx, master, []byte("aad"))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := tc.p.Unwrap(ctx, w, []byte("aad")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
