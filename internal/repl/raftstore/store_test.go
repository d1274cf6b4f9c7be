package raftstore

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func sampleLogs() []*raft.Log {
	return []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: []byte("conf")},
		{Index: 2, Term: 1, Type: raft.LogNoop},
		{Index: 3, Term: 2, Type: raft.LogCommand, Data: []byte("hello"), Extensions: []byte("ext"),
			AppendedAt: time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)},
		{Index: 4, Term: 2, Type: raft.LogBarrier, AppendedAt: time.Unix(0, 0)},
		{Index: 5, Term: math.MaxUint64, Type: raft.LogCommand, Data: bytes.Repeat([]byte{0xAB}, 1<<20),
			AppendedAt: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{Index: 6, Term: 3, Type: raft.LogType(200), Data: []byte{}, Extensions: []byte{0}},
		{Index: 7, Term: 3, Type: raft.LogCommand, AppendedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
}

func sameLog(t *testing.T, got, want *raft.Log) {
	t.Helper()
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) ||
		!got.AppendedAt.Equal(want.AppendedAt) || got.AppendedAt.IsZero() != want.AppendedAt.IsZero() {
		t.Fatalf("log %d: got %+v, want %+v", want.Index, got, want)
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, l := range sampleLogs() {
		b, err := encodeLog(l)
		if err != nil {
			t.Fatal(err)
		}
		var got raft.Log
		if err := decodeLog(l.Index, b, &got); err != nil {
			t.Fatalf("log %d: %v", l.Index, err)
		}
		sameLog(t, &got, l)
		again, _ := encodeLog(&got)
		if !bytes.Equal(again, b) {
			t.Fatalf("log %d: encoding not canonical", l.Index)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := encodeLog(&raft.Log{Index: 9, Term: 2, Type: raft.LogCommand, Data: []byte("abc"),
		Extensions: []byte("x"), AppendedAt: time.Unix(100, 5)})
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, good...)) }
	cases := []struct {
		name   string
		index  uint64
		value  []byte
		reason string
	}{
		{"empty", 9, nil, "shorter than"},
		{"short header", 9, good[:10], "shorter than"},
		{"unknown version", 9, mut(func(b []byte) []byte { b[0] = 2; return b }), "unknown format version 2"},
		{"unknown flags", 9, mut(func(b []byte) []byte { b[1] |= 0x80; return b }), "unknown flags"},
		{"index mismatch", 8, good, "records index 9"},
		{"truncated time", 9, good[:fixedHeader+5], "append time"},
		{"bad nanoseconds", 9, mut(func(b []byte) []byte { copy(b[fixedHeader+8:], []byte{0xff, 0xff, 0xff, 0xff}); return b }), "nanoseconds"},
		{"zero time flagged", 9, mut(func(b []byte) []byte {
			sec := time.Time{}.Unix()
			for i := range 8 {
				b[fixedHeader+i] = byte(uint64(sec) >> (56 - 8*i))
			}
			copy(b[fixedHeader+8:], []byte{0, 0, 0, 0})
			return b
		}), "flagged but zero"},
		{"data length over", 9, mut(func(b []byte) []byte { b[fixedHeader+12+3] = 200; return b }), "data length 200"},
		{"huge data length", 9, mut(func(b []byte) []byte { copy(b[fixedHeader+12:], []byte{0xff, 0xff, 0xff, 0xff}); return b }), "data length"},
		{"missing extensions", 9, good[:fixedHeader+12+4+3], "length of extensions"},
		{"extensions truncated", 9, good[:len(good)-1], "extensions length 1"},
		{"trailing bytes", 9, append(append([]byte{}, good...), 0), "1 trailing bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var l raft.Log
			err := decodeLog(c.index, c.value, &l)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrCorruptLog) {
				t.Fatalf("got %v, want a DecodeError", err)
			}
			if de.Index != c.index || !strings.Contains(err.Error(), c.reason) ||
				!strings.Contains(err.Error(), "log entry "+strconv.FormatUint(c.index, 10)) {
				t.Fatalf("got %q (index %d), want index %d and %q", err, de.Index, c.index, c.reason)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(nil, []byte("p")); err == nil {
		t.Fatal("nil db accepted")
	}
	db := openDB(t, vfs.NewMem(), "db")
	defer db.Close()
	if _, err := New(db, nil); err == nil {
		t.Fatal("empty prefix accepted")
	}
}

func TestLogStore(t *testing.T) {
	db := openDB(t, encFS(t), t.TempDir())
	defer db.Close()
	s := newStore(t, db, "raft/")

	for _, f := range []func() (uint64, error){s.FirstIndex, s.LastIndex} {
		if i, err := f(); err != nil || i != 0 {
			t.Fatalf("empty log: %d, %v", i, err)
		}
	}
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("missing log: %v", err)
	}

	logs := sampleLogs()
	if err := s.StoreLog(logs[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs[1:]); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range logs {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		sameLog(t, &got, want)
	}
	checkRange(t, s, 1, 7)

	// An oversized entry is refused and nothing of its batch is written.
	defer func(n int) { maxFieldLen = n }(maxFieldLen)
	maxFieldLen = 16
	big := &raft.Log{Index: 8, Data: make([]byte, 17)}
	if err := s.StoreLogs([]*raft.Log{{Index: 8}, big}); err == nil {
		t.Fatal("oversized entry stored")
	}
	checkRange(t, s, 1, 7)
	maxFieldLen = MaxFieldLen

	// A stored value that does not decode is an error naming its index.
	if err := db.Set(s.logKey(3), []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	var de *DecodeError
	if err := s.GetLog(3, &l); !errors.As(err, &de) || de.Index != 3 {
		t.Fatalf("corrupt entry: %v", err)
	}
}

func checkRange(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("range [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func TestDeleteRange(t *testing.T) {
	cases := []struct {
		name        string
		min, max    uint64
		first, last uint64 // 0, 0: empty
		kept        []uint64
	}{
		{"head", 1, 3, 4, 10, []uint64{4, 10}},
		{"tail", 8, 10, 1, 7, []uint64{1, 7}},
		{"middle", 4, 6, 1, 10, []uint64{1, 3, 7, 10}},
		{"single", 5, 5, 1, 10, []uint64{4, 6}},
		{"all", 1, 10, 0, 0, nil},
		{"beyond", 0, math.MaxUint64, 0, 0, nil},
		{"past the end", 11, 20, 1, 10, []uint64{10}},
		{"inverted", 6, 4, 1, 10, []uint64{4, 5, 6}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			db := openDB(t, vfs.NewMem(), "db")
			defer db.Close()
			s := newStore(t, db, "r")
			var logs []*raft.Log
			for i := uint64(1); i <= 10; i++ {
				logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte{byte(i)}})
			}
			if err := s.StoreLogs(logs); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(c.min, c.max); err != nil {
				t.Fatal(err)
			}
			checkRange(t, s, c.first, c.last)
			for i := uint64(1); i <= 10; i++ {
				var l raft.Log
				err := s.GetLog(i, &l)
				deleted := c.min <= i && i <= c.max
				if deleted && !errors.Is(err, raft.ErrLogNotFound) || !deleted && err != nil {
					t.Fatalf("index %d: %v (deleted: %v)", i, err, deleted)
				}
			}
			for _, i := range c.kept {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil || l.Data[0] != byte(i) {
					t.Fatalf("index %d: %v", i, err)
				}
			}
		})
	}
}

func TestStableStore(t *testing.T) {
	db := openDB(t, encFS(t), t.TempDir())
	defer db.Close()
	s := newStore(t, db, "raft/")

	if v, err := s.Get([]byte("CurrentTerm")); err == nil || err.Error() != "not found" || v != nil {
		t.Fatalf("missing key: %q, %v", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" || v != 0 {
		t.Fatalf("missing uint64: %d, %v", v, err)
	}
	if !errors.Is(func() error { _, err := s.Get([]byte("x")); return err }(), ErrKeyNotFound) {
		t.Fatal("missing key is not ErrKeyNotFound")
	}

	cases := []struct {
		key, val string
	}{
		{"LastVoteCand", "node-1"},
		{"", "empty key"},
		{"empty value", ""},
		{"binary\x00key", "\x00\xff"},
	}
	for _, c := range cases {
		if err := s.Set([]byte(c.key), []byte(c.val)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cases {
		v, err := s.Get([]byte(c.key))
		if err != nil || string(v) != c.val {
			t.Fatalf("Get(%q) = %q, %v; want %q", c.key, v, err, c.val)
		}
	}
	for _, u := range []uint64{0, 1, 42, math.MaxUint64} {
		if err := s.SetUint64([]byte("CurrentTerm"), u); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != u {
			t.Fatalf("GetUint64 = %d, %v; want %d", got, err, u)
		}
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); err == nil || err.Error() == "not found" {
		t.Fatalf("non-uint64 value: %v", err)
	}
	// Stable keys and log entries do not collide.
	if err := s.Set([]byte("\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	checkRange(t, s, 0, 0)
}

// TestPrefixIsolation fills the database around the prefix and checks
// that nothing the Store does reads or changes those keys.
func TestPrefixIsolation(t *testing.T) {
	db := openDB(t, vfs.NewMem(), "db")
	defer db.Close()
	others := map[string]string{
		"a":                                      "before",
		"raft":                                   "the prefix minus its last byte",
		"raft0l\x00\x00\x00\x00\x00\x00\x00\x05": "next prefix",
		"raft.":                                  "previous prefix",
		"zzz":                                    "after",
	}
	for k, v := range others {
		if err := db.Set([]byte(k), []byte(v), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	s := newStore(t, db, "raft/")
	other := newStore(t, db, "raft2/")
	checkRange(t, s, 0, 0)
	for _, st := range []*Store{s, other} {
		if err := st.StoreLogs([]*raft.Log{{Index: 5, Term: 1}, {Index: 6, Term: 1}}); err != nil {
			t.Fatal(err)
		}
		if err := st.SetUint64([]byte("CurrentTerm"), 7); err != nil {
			t.Fatal(err)
		}
	}
	checkRange(t, s, 5, 6)
	if err := s.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	checkRange(t, s, 0, 0)
	checkRange(t, other, 5, 6)
	if v, err := other.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("other store's stable value: %d, %v", v, err)
	}
	if _, err := s.Get([]byte("")); err == nil {
		// "raft/s" was never set: the tag byte alone must not read another key
		t.Fatal("found a value never set")
	}

	// Every key in the database is either one of the others, untouched,
	// or under one of the two prefixes.
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	seen := map[string]bool{}
	for it.First(); it.Valid(); it.Next() {
		k := string(it.Key())
		if v, ok := others[k]; ok {
			if string(it.Value()) != v {
				t.Fatalf("key %q changed to %q", k, it.Value())
			}
			seen[k] = true
			continue
		}
		if !strings.HasPrefix(k, "raft/") && !strings.HasPrefix(k, "raft2/") {
			t.Fatalf("unexpected key %q", k)
		}
	}
	if len(seen) != len(others) {
		t.Fatalf("%d of %d other keys left", len(seen), len(others))
	}
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	fs := encFS(t)
	db := openDB(t, fs, dir)
	s := newStore(t, db, "raft/")
	logs := sampleLogs()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 12); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, fs, dir)
	defer db.Close()
	s = newStore(t, db, "raft/")
	checkRange(t, s, 3, 7)
	for _, want := range logs[2:] {
		var got raft.Log
		if err := s.GetLog(want.Index, &got); err != nil {
			t.Fatal(err)
		}
		sameLog(t, &got, want)
	}
	var l raft.Log
	if err := s.GetLog(2, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("deleted entry after reopen: %v", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 12 {
		t.Fatalf("CurrentTerm after reopen: %d, %v", v, err)
	}
	if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("LastVoteCand after reopen: %q, %v", v, err)
	}
}

func FuzzDecodeLog(f *testing.F) {
	for _, l := range sampleLogs()[:4] {
		b, err := encodeLog(l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(l.Index, b)
	}
	f.Add(uint64(0), []byte{})
	f.Add(uint64(1), []byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, index uint64, b []byte) {
		var l raft.Log
		err := decodeLog(index, b, &l)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Index != index {
				t.Fatalf("error %v is not a DecodeError for index %d", err, index)
			}
			return
		}
		// Whatever decodes encodes back to the same bytes.
		again, err := encodeLog(&l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", l, again, b)
		}
	})
}
