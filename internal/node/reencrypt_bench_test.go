package node

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
)

// BenchmarkReencryptInPlace measures an in-place re-encryption of a node
// holding 64 MiB of documents (1 KiB each, no writes meanwhile): MB/s is
// the documents' size over the whole re-encryption (new keystore, copy,
// switch, old files deleted).
func BenchmarkReencryptInPlace(b *testing.B) {
	const docs, size = 65536, 1024
	l := Layout{Dir: b.TempDir()}
	n, err := openNodeForChild(l)
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	eng, _, release, err := n.Acquire()
	if err != nil {
		b.Fatal(err)
	}
	db, err := eng.CreateDatabase("app")
	if err != nil {
		b.Fatal(err)
	}
	s, err := docstore.Open(db, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := s.EnsureCollection("c")
	if err != nil {
		b.Fatal(err)
	}
	pad := make([]byte, size-40)
	for i := 0; i < docs; i += 1024 {
		if err := s.Write(context.Background(), func(w *docstore.Writer) error {
			for j := i; j < i+1024; j++ {
				raw, _ := bson.Marshal(bson.D{{Key: "_id", Value: fmt.Sprintf("%08d", j)}, {Key: "pad", Value: pad}})
				if err := w.Insert(c, raw); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	release()
	b.SetBytes(docs * size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := n.Reencrypt(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
}
