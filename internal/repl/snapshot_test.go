package repl

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// snapStream builds a snapshot stream by hand: dbs maps a database name to
// its key/value pairs (in order).
func snapStream(dbs []string, kvs map[string][][2]string) []byte {
	var b bytes.Buffer
	b.WriteString(snapMagic)
	put := func(s string) {
		b.Write(binary.AppendUvarint(nil, uint64(len(s))))
		b.WriteString(s)
	}
	for _, name := range dbs {
		b.WriteByte('D')
		put(name)
		for _, kv := range kvs[name] {
			b.WriteByte('K')
			put(kv[0])
			put(kv[1])
		}
		b.WriteByte('E')
	}
	b.WriteByte('Z')
	return b.Bytes()
}

type recorded struct{ events []string }

func (r *recorded) visitor() snapshotVisitor {
	return snapshotVisitor{
		db:  func(name string) error { r.events = append(r.events, "D "+name); return nil },
		kv:  func(k, v []byte) error { r.events = append(r.events, "K "+string(k)+"="+string(v)); return nil },
		end: func() error { r.events = append(r.events, "E"); return nil },
	}
}

func TestReadSnapshot(t *testing.T) {
	good := snapStream([]string{"app", "admin"}, map[string][][2]string{"app": {{"\x01a", "1"}, {"\x02b", ""}}})
	var r recorded
	seen, err := readSnapshot(bufio.NewReader(bytes.NewReader(good)), r.visitor())
	if err != nil || len(seen) != 2 || !seen["app"] || !seen["admin"] {
		t.Fatalf("seen %v, err %v", seen, err)
	}
	want := "D app|K \x01a=1|K \x02b=|E|D admin|E"
	if got := joinEvents(r.events); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	for name, b := range map[string][]byte{
		"empty":            nil,
		"bad magic":        append([]byte("cmkdb-rs-snap\x02"), good[len(snapMagic):]...),
		"truncated":        good[:len(good)-1],
		"unknown record":   append(append([]byte{}, good[:len(good)-1]...), 'Q'),
		"local database":   snapStream([]string{"local"}, nil),
		"database twice":   snapStream([]string{"a", "a"}, nil),
		"empty key":        snapStream([]string{"a"}, map[string][][2]string{"a": {{"", "v"}}}),
		"key past the end": snapStream([]string{"a"}, map[string][][2]string{"a": {{"\xff", "v"}}}),
		"huge length":      append([]byte(snapMagic+"D"), binary.AppendUvarint(nil, 1<<40)...),
	} {
		var r recorded
		if _, err := readSnapshot(bufio.NewReader(bytes.NewReader(b)), r.visitor()); !errors.Is(err, errBadSnapshot) {
			t.Errorf("%s: err = %v, want errBadSnapshot", name, err)
		}
	}
}

func joinEvents(ev []string) string {
	var b bytes.Buffer
	for i, e := range ev {
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString(e)
	}
	return b.String()
}

func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapStream([]string{"app"}, map[string][][2]string{"app": {{"\x01k", "v"}}}))
	f.Add(snapStream(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r recorded
		seen, err := readSnapshot(bufio.NewReader(bytes.NewReader(b)), r.visitor())
		if err != nil {
			if !errors.Is(err, errBadSnapshot) {
				t.Fatalf("error not errBadSnapshot: %v", err)
			}
			return
		}
		if seen["local"] {
			t.Fatal("a snapshot restored the local database")
		}
	})
}
