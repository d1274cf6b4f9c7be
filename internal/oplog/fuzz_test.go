package oplog

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// FuzzParseDoc: any bytes either parse as an entry or are errBadEntry,
// never a panic; what parses renders back to a document that parses the
// same.
func FuzzParseDoc(f *testing.F) {
	for _, e := range sampleEntries(f) {
		doc, err := e.Doc()
		if err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(doc))
		f.Add([]byte(doc[:len(doc)/2]))
	}
	f.Add([]byte{5, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseDoc(bson.Raw(b))
		if err != nil {
			if !errors.Is(err, errBadEntry) {
				t.Fatalf("parseDoc: %v is not errBadEntry", err)
			}
			return
		}
		doc, err := e.Doc()
		if err != nil {
			// Doc refuses what it cannot write (an op string with NUL
			// bytes, say); it must not have been produced by Doc then.
			return
		}
		back, err := parseDoc(doc)
		if err != nil {
			t.Fatalf("re-rendered entry does not parse: %v", err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("round trip: %+v, then %+v", e, back)
		}
	})
}

// FuzzDecodeValue: a stored value decodes or is errBadEntry; a value
// encoded from what decoded decodes the same.
func FuzzDecodeValue(f *testing.F) {
	doc, _ := sampleEntries(f)["insert"].Doc()
	f.Add(encodeValue(1, doc))
	f.Add(encodeValue(1<<40, doc))
	f.Add([]byte{0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		idx, raw, err := decodeValue(v)
		if err != nil {
			if !errors.Is(err, errBadEntry) {
				t.Fatalf("decodeValue: %v is not errBadEntry", err)
			}
			return
		}
		idx2, raw2, err := decodeValue(encodeValue(idx, raw))
		if err != nil || idx2 != idx || !bytes.Equal(raw2, raw) {
			t.Fatalf("re-encoded (%d, %x) decodes as (%d, %x), %v", idx, raw, idx2, raw2, err)
		}
	})
}

// FuzzDescribe: any update o is described or refused with errBadDiff.
func FuzzDescribe(f *testing.F) {
	o, _ := UpdateO(mustRaw(f, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 1}}}, {Key: "c", Value: 1}}),
		mustRaw(f, bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: 2}}}, {Key: "d", Value: 1}}))
	f.Add([]byte(o))
	f.Add([]byte(mustRaw(f, bson.D{{Key: "$v", Value: 2}, {Key: "diff", Value: bson.D{{Key: "sa", Value: bson.D{{Key: "a", Value: true}}}}}})))
	f.Fuzz(func(t *testing.T, b []byte) {
		if validate(b) != nil {
			return // an entry's o was validated with the entry (parseDoc)
		}
		if _, _, err := Describe(bson.Raw(b)); err != nil && !errors.Is(err, errBadDiff) {
			t.Fatalf("Describe: %v is not errBadDiff", err)
		}
	})
}

// FuzzUpdateO: the diff of any two documents (or an error, never a
// panic) is described, and each
// top-level field it reports set has the value the after document holds.
func FuzzUpdateO(f *testing.F) {
	f.Add([]byte(mustRaw(f, bson.D{{Key: "a", Value: 1}, {Key: "s", Value: bson.D{{Key: "x", Value: 1}}}})),
		[]byte(mustRaw(f, bson.D{{Key: "a", Value: 2}, {Key: "s", Value: bson.D{{Key: "y", Value: 1}}}})))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		if validate(before) != nil || validate(after) != nil || duplicateKeys(after) {
			return // stored documents are valid, their field names unique
		}
		o, err := UpdateO(before, after)
		if err != nil {
			// The driver's Validate does not look inside embedded
			// documents: one damaged inside is an error here, as it
			// should be.
			return
		}
		if !IsDiff(o) {
			t.Fatalf("UpdateO = %v is not a diff", o)
		}
		updated, _, err := Describe(o)
		if err != nil {
			// Field names starting with "s" are sub-diffs only when the
			// diff builds them; a top-level key named like a section
			// cannot appear, as keys live inside sections.
			t.Fatalf("Describe(UpdateO) = %v", err)
		}
		for _, e := range updated {
			if strings.Contains(e.Key, ".") {
				continue // nested, or a key with a dot in it
			}
			want, err := bson.Raw(after).LookupErr(e.Key)
			if err != nil {
				t.Fatalf("updated %q, absent from after", e.Key)
			}
			got, ok := e.Value.(bson.RawValue)
			if !ok || got.Type != want.Type || !bytes.Equal(got.Value, want.Value) {
				t.Fatalf("updated %q = %v, after holds %v", e.Key, e.Value, want)
			}
		}
	})
}

func duplicateKeys(doc bson.Raw) bool {
	els, _ := doc.Elements()
	seen := map[string]bool{}
	for _, e := range els {
		if seen[e.Key()] {
			return true
		}
		seen[e.Key()] = true
	}
	return false
}
