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
		{op: opTxn, db: "app", parts: []txnPart{{db: "app", repr: []byte("one")}, {db: "other", catalog: true, repr: []byte{}}}},
	} {
		got, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.op != e.op || got.db != e.db || got.catalog != e.catalog || !bytes.Equal(got.repr, e.repr) || !sameParts(got.parts, e.parts) {
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
	f.Add(entry{op: opTxn, db: "a", parts: []txnPart{{db: "a", repr: []byte("x")}, {db: "b", repr: []byte("yz")}}}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		again, err := decodeEntry(e.encode())
		if err != nil || again.db != e.db || again.op != e.op || !bytes.Equal(again.repr, e.repr) || !sameParts(again.parts, e.parts) {
			t.Fatalf("re-encode of %x: %+v %v", b, again, err)
		}
	})
}

func sameParts(a, b []txnPart) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].db != b[i].db || a[i].catalog != b[i].catalog || !bytes.Equal(a[i].repr, b[i].repr) {
			return false
		}
	}
	return true
}

func TestTxnEntryRefusesDamage(t *testing.T) {
	good := entry{op: opTxn, db: "a", parts: []txnPart{{db: "a", repr: []byte("x")}, {db: "b", repr: []byte("yz")}}}.encode()
	if _, err := decodeEntry(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"no parts":      entry{op: opTxn, db: "a"}.encode(),
		"header":        entry{op: opTxn, db: "b", parts: []txnPart{{db: "a"}}}.encode(),
		"repeated":      entry{op: opTxn, db: "a", parts: []txnPart{{db: "a"}, {db: "a"}}}.encode(),
		"flags":         append(entry{op: opTxn, db: "a", parts: []txnPart{{db: "a"}}}.encode()[:8], 0x80, 0),
		"empty db name": append(entry{op: opTxn, db: "a"}.encode()[:5], 1, 0, 0, 0),
	} {
		if _, err := decodeEntry(b); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: err = %v, want errBadEntry", name, err)
		}
	}
}
