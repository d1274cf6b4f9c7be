package oplog

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/storage/storagetest"
)

// newLog opens an oplog in a database of a real encrypted engine, as a
// member keeps it in its local database.
func newLog(t *testing.T, limits Limits) (*Log, *pebble.DB) {
	t.Helper()
	db := storagetest.NewDB(t, "local").DB
	l, err := Open(db, limits)
	if err != nil {
		t.Fatal(err)
	}
	return l, db
}

// base is the wall time of the test entries: their timestamps' seconds.
var base = time.Unix(1_700_000_000, 0).UTC()

// entry is an insert of {_id: n} at ts, made at ts's second.
func entry(t testing.TB, ts Timestamp, n int) Entry {
	return Entry{Op: Op{Kind: Insert, NS: "db.c", O: mustRaw(t, bson.D{{Key: "_id", Value: n}})},
		TS: ts, Term: 1, Wall: time.Unix(int64(ts.T), 0).UTC()}
}

func ts(sec, inc uint32) Timestamp { return Timestamp{T: 1_700_000_000 + sec, I: inc} }

func appendAt(t *testing.T, l *Log, index uint64, now time.Time, tss ...Timestamp) {
	t.Helper()
	es := make([]Entry, len(tss))
	for i, x := range tss {
		es[i] = entry(t, x, int(index)*100+i)
	}
	if err := l.Append(index, es, now); err != nil {
		t.Fatal(err)
	}
}

func scanAll(t *testing.T, l *Log, after Timestamp) []Timestamp {
	t.Helper()
	var out []Timestamp
	err := l.Scan(context.Background(), after, func(s Stored) (bool, error) {
		out = append(out, s.TS)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scanBack(t *testing.T, l *Log, before Timestamp) []Timestamp {
	t.Helper()
	var out []Timestamp
	err := l.ScanBackward(context.Background(), before, func(s Stored) (bool, error) {
		out = append(out, s.TS)
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendScan(t *testing.T) {
	l, _ := newLog(t, Limits{})
	if !l.Last().IsZero() || len(scanAll(t, l, Timestamp{})) != 0 {
		t.Fatal("a new oplog is not empty")
	}
	all := []Timestamp{ts(0, 1), ts(0, 2), ts(1, 1), ts(5, 1), ts(5, 2)}
	appendAt(t, l, 1, base, all[0])
	appendAt(t, l, 2, base, all[1], all[2]) // one log entry, two changes
	appendAt(t, l, 3, base, all[3:]...)
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, all) {
		t.Fatalf("Scan = %v, want %v", got, all)
	}
	if got := scanAll(t, l, all[1]); !slices.Equal(got, all[2:]) {
		t.Fatalf("Scan after %v = %v", all[1], got)
	}
	if got := scanAll(t, l, ts(3, 0)); !slices.Equal(got, all[3:]) { // between entries
		t.Fatalf("Scan after ts(3,0) = %v", got)
	}
	if got := scanBack(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{all[4], all[3], all[2], all[1], all[0]}) {
		t.Fatalf("ScanBackward = %v", got)
	}
	if got := scanBack(t, l, all[2]); !slices.Equal(got, []Timestamp{all[1], all[0]}) {
		t.Fatalf("ScanBackward before %v = %v", all[2], got)
	}
	// fn stops a scan.
	n := 0
	if err := l.Scan(context.Background(), Timestamp{}, func(Stored) (bool, error) { n++; return n < 2, nil }); err != nil || n != 2 {
		t.Fatalf("stopped scan: %d entries, %v", n, err)
	}
	// Stored carries the entry, its raft index and MongoDB document.
	var got []Stored
	_ = l.Scan(context.Background(), all[0], func(s Stored) (bool, error) { got = append(got, s); return len(got) < 2, nil })
	if got[0].Index != 2 || got[1].Index != 2 || got[0].Raw.Lookup("o", "_id").AsInt64() != 200 || got[1].Kind != Insert {
		t.Fatalf("stored %+v", got)
	}
	bytes, count, first, err := l.Stats()
	if err != nil || count != 5 || first != all[0] || bytes <= 0 {
		t.Fatalf("Stats = %d, %d, %v, %v", bytes, count, first, err)
	}
	if l.Last() != all[4] {
		t.Fatalf("Last = %v", l.Last())
	}
	// A cancelled scan ends with the cause.
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	cancel(stop)
	if err := l.Scan(ctx, Timestamp{}, func(Stored) (bool, error) { return true, nil }); !errors.Is(err, stop) {
		t.Fatalf("cancelled scan: %v", err)
	}
}

func TestAppendOutOfOrder(t *testing.T) {
	l, _ := newLog(t, Limits{})
	appendAt(t, l, 1, base, ts(1, 1), ts(1, 2))
	for _, bad := range [][]Timestamp{{ts(1, 2)}, {ts(0, 5)}, {ts(2, 1), ts(2, 1)}, {ts(3, 1), ts(2, 9)}} {
		es := make([]Entry, len(bad))
		for i, x := range bad {
			es[i] = entry(t, x, i)
		}
		if err := l.Append(2, es, base); err == nil {
			t.Fatalf("Append %v after %v was accepted", bad, l.Last())
		}
	}
	// A refused batch writes nothing.
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(1, 1), ts(1, 2)}) || l.Last() != ts(1, 2) {
		t.Fatalf("after refused appends: %v, last %v", got, l.Last())
	}
	if _, count, _, _ := l.Stats(); count != 2 {
		t.Fatalf("count %d", count)
	}
}

// valueSize is what one test entry counts toward the size cap.
func valueSize(t *testing.T, index uint64, e Entry) int64 {
	doc, err := e.Doc()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(encodeValue(index, doc)))
}

func TestSizeCap(t *testing.T) {
	one := valueSize(t, 1, entry(t, ts(0, 1), 100))
	l, _ := newLog(t, Limits{MaxBytes: 3 * one, Retention: time.Hour})
	var want []Timestamp
	for i := uint32(1); i <= 10; i++ {
		x := ts(0, i)
		appendAt(t, l, uint64(i), base, x)
		want = append(want, x)
		if len(want) > 3 {
			want = want[1:] // the oldest goes
		}
		if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, want) {
			t.Fatalf("after %d appends: %v, want %v", i, got, want)
		}
		bytes, count, first, err := l.Stats()
		if err != nil || bytes > 3*one || count != int64(len(want)) || first != want[0] {
			t.Fatalf("after %d appends: Stats %d bytes (cap %d), %d, %v, %v", i, bytes, 3*one, count, first, err)
		}
	}
	if l.Last() != ts(0, 10) {
		t.Fatalf("Last = %v", l.Last())
	}
}

// TestCapKeepsNewest: an entry larger than the whole cap, and entries all
// older than the retention, still leave the newest.
func TestCapKeepsNewest(t *testing.T) {
	l, _ := newLog(t, Limits{MaxBytes: 10, Retention: time.Hour})
	appendAt(t, l, 1, base, ts(0, 1), ts(0, 2))
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(0, 2)}) {
		t.Fatalf("size cap below one entry: %v", got)
	}
	l2, _ := newLog(t, Limits{Retention: time.Hour})
	appendAt(t, l2, 1, base.Add(48*time.Hour), ts(0, 1), ts(0, 2)) // replayed two days late
	if got := scanAll(t, l2, Timestamp{}); !slices.Equal(got, []Timestamp{ts(0, 2)}) {
		t.Fatalf("all entries past retention: %v", got)
	}
	if _, count, first, _ := l2.Stats(); count != 1 || first != ts(0, 2) {
		t.Fatalf("Stats count %d first %v", count, first)
	}
}

func TestRetentionCap(t *testing.T) {
	l, _ := newLog(t, Limits{Retention: time.Hour})
	appendAt(t, l, 1, base, ts(0, 1))
	appendAt(t, l, 2, base.Add(30*time.Minute), ts(1800, 1))
	appendAt(t, l, 3, base.Add(time.Hour-time.Second), ts(3599, 1))
	if got := scanAll(t, l, Timestamp{}); len(got) != 3 {
		t.Fatalf("within retention: %v", got)
	}
	// An hour and a half after the first: it is past the retention, the
	// second (an hour old) is not yet.
	appendAt(t, l, 4, base.Add(90*time.Minute), ts(5400, 1))
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(1800, 1), ts(3599, 1), ts(5400, 1)}) {
		t.Fatalf("after 90 minutes: %v", got)
	}
	// The size cap still holds alongside: the larger removal wins.
	if _, count, first, _ := l.Stats(); count != 3 || first != ts(1800, 1) {
		t.Fatalf("Stats count %d first %v", count, first)
	}
}

// TestTrimFrom: a restarted member cuts back what its replay re-appends,
// and continues after the entry before it.
func TestTrimFrom(t *testing.T) {
	l, _ := newLog(t, Limits{})
	appendAt(t, l, 1, base, ts(0, 1))
	appendAt(t, l, 2, base, ts(0, 2), ts(1, 1))
	appendAt(t, l, 4, base, ts(2, 1)) // index 3 had no changes
	bytes1, _, _, _ := l.Stats()
	prev, err := l.TrimFrom(5) // nothing to cut
	if err != nil || prev != ts(2, 1) || len(scanAll(t, l, Timestamp{})) != 4 {
		t.Fatalf("TrimFrom(5) = %v, %v", prev, err)
	}
	prev, err = l.TrimFrom(2)
	if err != nil || prev != ts(0, 1) {
		t.Fatalf("TrimFrom(2) = %v, %v; want %v", prev, err, ts(0, 1))
	}
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(0, 1)}) || l.Last() != ts(0, 1) {
		t.Fatalf("after TrimFrom(2): %v, last %v", got, l.Last())
	}
	bytes, count, _, _ := l.Stats()
	if count != 1 || bytes != valueSize(t, 1, entry(t, ts(0, 1), 100)) || bytes >= bytes1 {
		t.Fatalf("after TrimFrom(2): Stats %d bytes, %d entries", bytes, count)
	}
	// The replay re-appends with the same timestamps.
	appendAt(t, l, 2, base, Next(prev, base), ts(1, 1))
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(0, 1), ts(0, 2), ts(1, 1)}) {
		t.Fatalf("after the replay: %v", got)
	}
	// Cutting everything falls back to the floor (zero here).
	prev, err = l.TrimFrom(1)
	if err != nil || !prev.IsZero() || len(scanAll(t, l, Timestamp{})) != 0 {
		t.Fatalf("TrimFrom(1) = %v, %v", prev, err)
	}
	if bytes, count, _, _ := l.Stats(); bytes != 0 || count != 0 {
		t.Fatalf("empty: Stats %d, %d", bytes, count)
	}
}

// TestTrimFromFloor: once the cap removed the entries before the cut,
// the next timestamp follows the floor, not zero.
func TestTrimFromFloor(t *testing.T) {
	one := valueSize(t, 1, entry(t, ts(0, 1), 100))
	l, _ := newLog(t, Limits{MaxBytes: one, Retention: time.Hour})
	appendAt(t, l, 1, base, ts(0, 1))
	appendAt(t, l, 2, base, ts(0, 2)) // the cap removes ts(0,1): the floor
	prev, err := l.TrimFrom(2)
	if err != nil || prev != ts(0, 1) {
		t.Fatalf("TrimFrom(2) = %v, %v; want the floor %v", prev, err, ts(0, 1))
	}
}

func TestReset(t *testing.T) {
	l, _ := newLog(t, Limits{})
	appendAt(t, l, 1, base, ts(0, 1), ts(0, 2))
	changed := l.Changed()
	floor := ts(100, 3)
	if err := l.Reset(floor); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Reset did not signal Changed")
	}
	if l.Last() != floor || len(scanAll(t, l, Timestamp{})) != 0 {
		t.Fatalf("after Reset: last %v", l.Last())
	}
	if bytes, count, first, _ := l.Stats(); bytes != 0 || count != 0 || !first.IsZero() {
		t.Fatalf("after Reset: Stats %d %d %v", bytes, count, first)
	}
	if err := l.Append(2, []Entry{entry(t, ts(100, 3), 0)}, base); err == nil {
		t.Fatal("an entry at the floor was accepted")
	}
	appendAt(t, l, 2, base, ts(100, 4))
	if prev, err := l.TrimFrom(2); err != nil || prev != floor {
		t.Fatalf("TrimFrom after Reset = %v, %v; want the floor", prev, err)
	}
}

func TestChanged(t *testing.T) {
	l, _ := newLog(t, Limits{})
	ch := l.Changed()
	if ch != l.Changed() {
		t.Fatal("two waiters before an append wait on different channels")
	}
	select {
	case <-ch:
		t.Fatal("Changed closed before any append")
	default:
	}
	if err := l.Append(1, nil, base); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Fatal("an empty append signalled Changed")
	default:
	}
	appendAt(t, l, 1, base, ts(0, 1))
	select {
	case <-ch:
	default:
		t.Fatal("Append did not close Changed")
	}
	next := l.Changed()
	select {
	case <-next:
		t.Fatal("the next Changed is already closed")
	default:
	}
}

// TestReopen: closing and reopening the database keeps the entries, the
// counts and the floor.
func TestReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "local")
	open := func() *pebble.DB {
		db, err := pebble.Open(dir, &pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	one := valueSize(t, 1, entry(t, ts(0, 1), 100))
	limits := Limits{MaxBytes: 2 * one, Retention: time.Hour}
	l, err := Open(db, limits)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint32(1); i <= 4; i++ {
		appendAt(t, l, uint64(i), base, ts(0, i))
	}
	wantBytes, wantCount, wantFirst, _ := l.Stats()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	l, err = Open(db, limits)
	if err != nil {
		t.Fatal(err)
	}
	bytes, count, first, err := l.Stats()
	if err != nil || bytes != wantBytes || count != wantCount || first != wantFirst || l.Last() != ts(0, 4) {
		t.Fatalf("reopened: Stats %d %d %v %v, last %v; want %d %d %v", bytes, count, first, err, l.Last(), wantBytes, wantCount, wantFirst)
	}
	if got := scanAll(t, l, Timestamp{}); !slices.Equal(got, []Timestamp{ts(0, 3), ts(0, 4)}) {
		t.Fatalf("reopened: %v", got)
	}
	// The floor survives too: the cap removed ts(0,2) last.
	if prev, err := l.TrimFrom(3); err != nil || prev != ts(0, 2) {
		t.Fatalf("reopened TrimFrom(3) = %v, %v; want the floor %v", prev, err, ts(0, 2))
	}
	if err := l.Reset(ts(9, 9)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer db.Close()
	if l, err = Open(db, limits); err != nil || l.Last() != ts(9, 9) {
		t.Fatalf("reopened after Reset: last %v, %v", l.Last(), err)
	}
}

// TestDamaged: a stored value that does not decode is an error naming the
// entry, in every reader, never skipped.
func TestDamaged(t *testing.T) {
	cases := map[string][]byte{
		"no index":         {},
		"truncated index":  {0x80},
		"not BSON":         {0x01, 0xde, 0xad},
		"entry elsewhere":  nil, // filled below: a valid entry with another ts
		"missing op field": nil,
	}
	other, _ := entry(t, ts(7, 7), 1).Doc()
	cases["entry elsewhere"] = encodeValue(2, other)
	cases["missing op field"] = encodeValue(2, mustRaw(t, bson.D{{Key: "ns", Value: "db.c"}}))
	for name, v := range cases {
		t.Run(name, func(t *testing.T) {
			l, db := newLog(t, Limits{})
			appendAt(t, l, 1, base, ts(0, 1))
			appendAt(t, l, 2, base, ts(0, 2))
			appendAt(t, l, 3, base, ts(0, 3))
			if err := db.Set(entryKey(ts(0, 2)), v, pebble.Sync); err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, errBadEntry) || !strings.Contains(err.Error(), ts(0, 2).String()) {
					t.Fatalf("%s: %v, want errBadEntry naming %v", what, err, ts(0, 2))
				}
			}
			var seen []Timestamp
			check("Scan", l.Scan(context.Background(), Timestamp{}, func(s Stored) (bool, error) { seen = append(seen, s.TS); return true, nil }))
			if !slices.Equal(seen, []Timestamp{ts(0, 1)}) {
				t.Fatalf("Scan went on past the damaged entry: %v", seen)
			}
			check("ScanBackward", l.ScanBackward(context.Background(), Timestamp{}, func(Stored) (bool, error) { return true, nil }))
			if name == "no index" || name == "truncated index" {
				_, err := l.TrimFrom(1)
				check("TrimFrom", err)
			}
		})
	}
	// A damaged meta record fails Open.
	l, db := newLog(t, Limits{})
	appendAt(t, l, 1, base, ts(0, 1))
	if err := db.Set([]byte{keyMeta}, []byte{1, 2, 3}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(db, Limits{}); !errors.Is(err, errBadEntry) {
		t.Fatalf("Open with a damaged meta record: %v", err)
	}
}
