package encfs

import (
	"bytes"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestReadWhileAnotherHandleAppends reads a file through one handle while
// another keeps appending and syncing (as a Pebble checkpoint copies a live
// WAL): every read of the range the reader knew returns exactly the bytes
// written there, although the tail chunk is rewritten longer under it —
// never an integrity error, never unauthenticated bytes.
func TestReadWhileAnotherHandleAppends(t *testing.T) {
	fs := New(vfs.Default, "db-1", newTestKeys())
	name := filepath.Join(t.TempDir(), "000001.log")
	w, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	write := func(n int) {
		b := bytes.Repeat([]byte{byte(len(all) % 251)}, n)
		for i := range b {
			b[i] = byte((len(all) + i) % 251)
		}
		if _, err := w.Write(b); err != nil {
			t.Error(err)
		}
		if err := w.Sync(); err != nil {
			t.Error(err)
		}
		all = append(all, b...)
	}
	write(3000) // a partial first chunk
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			write(7 + i%300)
		}
	}()
	for i := 0; i < 300; i++ {
		r, err := fs.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		st, err := r.Stat()
		if err != nil {
			t.Fatal(err)
		}
		known := st.Size()
		got := make([]byte, known)
		if _, err := io.ReadFull(io.NewSectionReader(r, 0, known), got); err != nil {
			t.Fatalf("read %d bytes of a file being appended to: %v", known, err)
		}
		r.Close()
		for j := range got {
			if got[j] != byte(j%251) {
				t.Fatalf("byte %d of %d is %d, want %d", j, known, got[j], j%251)
			}
		}
	}
	close(stop)
	wg.Wait()
	w.Close()
}
