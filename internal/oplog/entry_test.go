package oplog

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func mustRaw(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sampleEntries(t testing.TB) map[string]Entry {
	ui := bson.Binary{Subtype: 4, Data: bytes.Repeat([]byte{7}, 16)}
	wall := time.UnixMilli(1_700_000_000_123).UTC()
	return map[string]Entry{
		"insert": {Op: Op{Kind: Insert, NS: "db.c", UI: &ui, O: mustRaw(t, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "y"}})},
			TS: Timestamp{1_700_000_000, 1}, Term: 3, Wall: wall},
		"update": {Op: Op{Kind: Update, NS: "db.c", UI: &ui, O: mustRaw(t, bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: bson.D{}}}),
			O2: mustRaw(t, bson.D{{Key: "_id", Value: 1}})}, TS: Timestamp{1_700_000_000, 2}, Term: 3, Wall: wall},
		"command": {Op: Op{Kind: Command, NS: "db.$cmd", O: mustRaw(t, bson.D{{Key: "dropDatabase", Value: 1}})},
			TS: Timestamp{1_700_000_001, 1}, Term: 4, Wall: wall},
	}
}

// TestDocRoundTrip: an entry reads back as it was written, in MongoDB's
// field order ({op, ns, ui, o, o2, ts, t, v, wall}).
func TestDocRoundTrip(t *testing.T) {
	for name, e := range sampleEntries(t) {
		doc, err := e.Doc()
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseDoc(doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(back, e) {
			t.Fatalf("%s: read back %+v, wrote %+v", name, back, e)
		}
		els, _ := doc.Elements()
		var keys []string
		for _, el := range els {
			keys = append(keys, el.Key())
		}
		want := []string{"op", "ns"}
		if e.UI != nil {
			want = append(want, "ui")
		}
		want = append(want, "o")
		if e.O2 != nil {
			want = append(want, "o2")
		}
		want = append(want, "ts", "t", "v", "wall")
		if e.LSID != nil {
			want = append(want, "lsid", "txnNumber")
		}
		if !reflect.DeepEqual(keys, want) {
			t.Fatalf("%s: fields %v, want MongoDB's %v", name, keys, want)
		}
		if v, ok := doc.Lookup("v").Int64OK(); !ok || v != 2 {
			t.Fatalf("%s: v = %v", name, doc.Lookup("v"))
		}
	}
}

func TestParseDocRefuses(t *testing.T) {
	good := bson.D{{Key: "op", Value: "i"}, {Key: "ns", Value: "db.c"}, {Key: "o", Value: bson.D{}},
		{Key: "ts", Value: bson.Timestamp{T: 1, I: 1}}, {Key: "t", Value: int64(1)}, {Key: "wall", Value: bson.DateTime(1)}}
	without := func(k string) bson.D {
		var d bson.D
		for _, e := range good {
			if e.Key != k {
				d = append(d, e)
			}
		}
		return d
	}
	with := func(k string, v any) bson.D { return append(without(k), bson.E{Key: k, Value: v}) }
	if _, err := parseDoc(mustRaw(t, good)); err != nil {
		t.Fatal(err)
	}
	cases := map[string]bson.Raw{
		"not BSON":  bson.Raw{1, 2, 3},
		"truncated": mustRaw(t, good)[:20],
		"no op":     mustRaw(t, without("op")),
		"no ns":     mustRaw(t, without("ns")),
		"no o":      mustRaw(t, without("o")),
		"no ts":     mustRaw(t, without("ts")),
		"no t":      mustRaw(t, without("t")),
		"no wall":   mustRaw(t, without("wall")),
		"op int":    mustRaw(t, with("op", 1)),
		"o string":  mustRaw(t, with("o", "x")),
		"o2 string": mustRaw(t, with("o2", "x")),
		"ui string": mustRaw(t, with("ui", "x")),
		"ts date":   mustRaw(t, with("ts", bson.DateTime(1))),
		"t int32":   mustRaw(t, with("t", int32(1))),
	}
	for name, raw := range cases {
		if _, err := parseDoc(raw); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: %v, want errBadEntry", name, err)
		}
	}
}

func TestValueRoundTrip(t *testing.T) {
	doc := mustRaw(t, bson.D{{Key: "a", Value: 1}})
	for _, idx := range []uint64{0, 1, 127, 128, 1 << 40, ^uint64(0)} {
		gotIdx, gotDoc, err := decodeValue(encodeValue(idx, doc))
		if err != nil || gotIdx != idx || !bytes.Equal(gotDoc, doc) {
			t.Fatalf("index %d: %d %x %v", idx, gotIdx, gotDoc, err)
		}
	}
	for _, bad := range [][]byte{nil, {0x80}, bytes.Repeat([]byte{0xff}, 11)} {
		if _, _, err := decodeValue(bad); !errors.Is(err, errBadEntry) {
			t.Errorf("decodeValue(%x) = %v, want errBadEntry", bad, err)
		}
	}
}

// TestApplyOps: a transaction is one command entry on admin.$cmd,
// {applyOps: [{op, ns, ui, o, o2}, …]}, as MongoDB records it.
func TestApplyOps(t *testing.T) {
	es := sampleEntries(t)
	ops := []Op{es["insert"].Op, es["update"].Op}
	op, err := ApplyOps(ops)
	if err != nil {
		t.Fatal(err)
	}
	if op.Kind != Command || op.NS != "admin.$cmd" || op.UI != nil || op.O2 != nil {
		t.Fatalf("applyOps op %+v", op)
	}
	arr, ok := op.O.Lookup("applyOps").ArrayOK()
	if !ok {
		t.Fatalf("o = %v", op.O)
	}
	vals, _ := arr.Values()
	if len(vals) != len(ops) {
		t.Fatalf("%d changes, want %d", len(vals), len(ops))
	}
	for i, v := range vals {
		d := v.Document()
		want := ops[i]
		if d.Lookup("op").StringValue() != want.Kind || d.Lookup("ns").StringValue() != want.NS ||
			!bytes.Equal(d.Lookup("o").Document(), want.O) {
			t.Fatalf("change %d: %v, want %+v", i, d, want)
		}
		if _, data := d.Lookup("ui").Binary(); !bytes.Equal(data, want.UI.Data) {
			t.Fatalf("change %d: ui %v", i, d.Lookup("ui"))
		}
		o2, err := d.LookupErr("o2")
		if (err == nil) != (want.O2 != nil) || (err == nil && !bytes.Equal(o2.Document(), want.O2)) {
			t.Fatalf("change %d: o2 %v, want %v", i, o2, want.O2)
		}
	}
	if _, err := ApplyOps(nil); err != nil {
		t.Fatal(err)
	}

	// A transaction's session: taken from its changes (or from the marker
	// a commit record in another database leaves), at the top level only.
	lsid, _ := bson.Marshal(bson.D{{Key: "id", Value: bson.Binary{Subtype: bson.TypeBinaryUUID, Data: make([]byte, 16)}}})
	withSession := []Op{es["insert"].Op, SessionMarker(lsid, 7)}
	op, err = ApplyOps(withSession)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(op.LSID, lsid) || op.TxnNumber != 7 {
		t.Fatalf("applyOps session %v %d", op.LSID, op.TxnNumber)
	}
	if vals, _ := op.O.Lookup("applyOps").Array().Values(); len(vals) != 1 {
		t.Fatalf("the session marker became a change: %v", op.O)
	}
	if got := WithoutMarkers(withSession); len(got) != 1 || got[0].Kind != Insert {
		t.Fatalf("WithoutMarkers: %+v", got)
	}
	e := es["insert"]
	e.LSID, e.TxnNumber = lsid, 7
	doc, err := e.Doc()
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseDoc(doc)
	if err != nil || !bytes.Equal(back.LSID, lsid) || back.TxnNumber != 7 {
		t.Fatalf("session round trip: %+v %v", back, err)
	}
}
