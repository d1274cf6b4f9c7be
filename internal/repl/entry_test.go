package repl

import (
	"bytes"
	"errors"
	"testing"
)

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []entry{
		{op: opBatch, db: "app", wallMs: 1_700_000_000_000, repr: []byte("batch bytes")},
		{op: opBatch, db: "a", catalog: true, wallMs: 1, repr: []byte{0}},
		{op: opDrop, db: "gone", wallMs: 5},
		{op: opTxn, db: "app", wallMs: 7, parts: []txnPart{{db: "app", repr: []byte("one")}, {db: "other", catalog: true, repr: []byte{}}}},
	} {
		got, err := decodeEntry(e.encode())
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if got.op != e.op || got.db != e.db || got.catalog != e.catalog || got.wallMs != e.wallMs || !bytes.Equal(got.repr, e.repr) || !sameParts(got.parts, e.parts) {
			t.Fatalf("round trip: got %+v, want %+v", got, e)
		}
	}
}

func TestEntryRefusesDamage(t *testing.T) {
	good := entry{op: opBatch, db: "app", wallMs: 7, repr: []byte("x")}.encode()
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         good[:3],
		"version":       append([]byte{9}, good[1:]...),
		"operation":     append([]byte{good[0], 7}, good[2:]...),
		"name too long": append(append([]byte{}, good[:11]...), 0xff, 0x01),
		"no name":       append(append([]byte{}, good[:11]...), 0),
		"no wall time":  entry{op: opBatch, db: "app", repr: []byte("x")}.encode(),
		"short header":  good[:8],
		"drop payload":  nil,
	} {
		if name == "drop payload" {
			b = append(entry{op: opDrop, db: "d", wallMs: 1}.encode(), 'x')
		}
		if _, err := decodeEntry(b); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: err = %v, want errBadEntry", name, err)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(entry{op: opBatch, db: "app", wallMs: 1, repr: []byte("x")}.encode())
	f.Add(entry{op: opDrop, db: "d", wallMs: 2}.encode())
	f.Add([]byte("\x01\x01\x00\x03app"))
	f.Add(entry{op: opTxn, db: "a", wallMs: 3, parts: []txnPart{{db: "a", repr: []byte("x")}, {db: "b", repr: []byte("yz")}}}.encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		if e.wallMs == 0 { // a version 1 entry is re-encoded as version 2
			e.wallMs = 1
		}
		again, err := decodeEntry(e.encode())
		if err != nil || again.db != e.db || again.op != e.op || again.wallMs != e.wallMs || !bytes.Equal(again.repr, e.repr) || !sameParts(again.parts, e.parts) {
			t.Fatalf("re-encode of %x: %+v %v", b, again, err)
		}
	})
}

// Entries written by a build before version 2 stay readable: a member
// upgraded with a log still holding them applies them.
func TestEntryReadsVersion1(t *testing.T) {
	v1 := append([]byte{entryVersionV1, byte(opBatch), flagCatalog, 3}, "app"...)
	v1 = append(v1, "repr"...)
	e, err := decodeEntry(v1)
	if err != nil {
		t.Fatal(err)
	}
	if e.op != opBatch || e.db != "app" || !e.catalog || e.wallMs != 0 || string(e.repr) != "repr" {
		t.Fatalf("decoded %+v", e)
	}
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
	good := entry{op: opTxn, wallMs: 1, db: "a", parts: []txnPart{{db: "a", repr: []byte("x")}, {db: "b", repr: []byte("yz")}}}.encode()
	if _, err := decodeEntry(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"no parts":      entry{op: opTxn, wallMs: 1, db: "a"}.encode(),
		"header":        entry{op: opTxn, wallMs: 1, db: "b", parts: []txnPart{{db: "a"}}}.encode(),
		"repeated":      entry{op: opTxn, wallMs: 1, db: "a", parts: []txnPart{{db: "a"}, {db: "a"}}}.encode(),
		"flags":         append(entry{op: opTxn, wallMs: 1, db: "a", parts: []txnPart{{db: "a"}}}.encode()[:16], 0x80, 0),
		"empty db name": append(entry{op: opTxn, wallMs: 1, db: "a"}.encode()[:13], 1, 0, 0, 0),
	} {
		if _, err := decodeEntry(b); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: err = %v, want errBadEntry", name, err)
		}
	}
}
