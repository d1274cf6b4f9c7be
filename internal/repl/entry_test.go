package repl

import (
	"bytes"
	"errors"
	"testing"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []entry{
		{op: opBatch, db: "app", repr: []byte("batch bytes")},
		{op: opBatch, db: "a", catalog: true, repr: []byte{0}},
		{op: opDrop, db: "gone"},
	} {
		got, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.op != e.op || got.db != e.db || got.catalog != e.catalog || !bytes.Equal(got.repr, e.repr) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
	}
}

func TestEntryRefusesDamage(t *testing.T) {
	good := entry{op: opBatch, db: "app", repr: []byte("x")}.encode()
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         good[:3],
		"version":       append([]byte{9}, good[1:]...),
		"operation":     append([]byte{good[0], 7}, good[2:]...),
		"name too long": append(append([]byte{}, good[:3]...), 0xff, 0x01),
		"no name":       append(append([]byte{}, good[:3]...), 0),
		"drop payload":  entry{op: opDrop, db: "d"}.encode()[:0:0],
	} {
		if name == "drop payload" {
			b = append(entry{op: opDrop, db: "d"}.encode(), 'x')
		}
		if _, err := decodeEntry(b); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: err = %v, want errBadEntry", name, err)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(entry{op: opBatch, db: "app", repr: []byte("x")}.encode())
	f.Add(entry{op: opDrop, db: "d"}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(e.encode())
		if err != nil || again.db != e.db || again.op != e.op || !bytes.Equal(again.repr, e.repr) {
			t.Fatalf("re-encode of %x: %+v %v", b, again, err)
		}
	})
}
