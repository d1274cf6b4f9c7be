package query

import (
	"runtime"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// dotted returns a path of n components.
func dotted(n int) string { return strings.TrimSuffix(strings.Repeat("a.", n), ".") }

// docWithKey builds {key: val} without going through JSON, so that the
// hostile path is used byte for byte.
func docWithKey(key string, val bson.RawValue) bson.Raw {
	idx, d := bsoncore.AppendDocumentStart(nil)
	d = appendRawElement(d, key, val)
	d, _ = bsoncore.AppendDocumentEnd(d, idx)
	return d
}

// wrap returns {outer: inner}.
func wrap(outer string, inner bson.Raw) bson.Raw { return docWithKey(outer, rvDoc(inner)) }

// pathCompilers are the parsers a client path reaches, each with the code
// it refuses an over-long path with and the length it must still accept.
func pathCompilers() []struct {
	name  string
	max   int
	code  mongoerr.Code
	parse func(path string) func() error
} {
	one := rvInt32(1)
	pipeline := func(stage bson.Raw) func() error {
		return func() error {
			_, err := CompilePipeline([]bson.Raw{stage}, nil)
			return err
		}
	}
	return []struct {
		name  string
		max   int
		code  mongoerr.Code
		parse func(path string) func() error
	}{
		{"filter", maxMatchPathParts, codeMatchPathLong, func(p string) func() error {
			in := docWithKey(p, one)
			return func() error { _, err := Compile(in); return err }
		}},
		{"filter in $elemMatch", maxMatchPathParts, codeMatchPathLong, func(p string) func() error {
			in := wrap("x", docWithKey("$elemMatch", rvDoc(docWithKey(p, one))))
			return func() error { _, err := Compile(in); return err }
		}},
		{"$set", maxUpdatePathParts, mongoerr.Overflow, func(p string) func() error {
			in := wrap("$set", docWithKey(p, one))
			return func() error { _, err := CompileUpdate(in); return err }
		}},
		{"$unset", maxUpdatePathParts, mongoerr.Overflow, func(p string) func() error {
			in := wrap("$unset", docWithKey(p, one))
			return func() error { _, err := CompileUpdate(in); return err }
		}},
		{"$rename target", maxUpdatePathParts, mongoerr.Overflow, func(p string) func() error {
			in := wrap("$rename", docWithKey("b", rvString(p)))
			return func() error { _, err := CompileUpdate(in); return err }
		}},
		{"$pull condition", maxMatchPathParts, codeMatchPathLong, func(p string) func() error {
			in := wrap("$pull", docWithKey("b", rvDoc(docWithKey(p, one))))
			return func() error { _, err := CompileUpdate(in); return err }
		}},
		{"projection", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			in := docWithKey(p, one)
			return func() error { _, err := CompileProjection(in); return err }
		}},
		{"projection in a sub-document", maxFieldPathParts - 1, mongoerr.Overflow, func(p string) func() error {
			in := wrap("x", docWithKey(p, one))
			return func() error { _, err := CompileProjection(in); return err }
		}},
		{"sort", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			in := docWithKey(p, one)
			return func() error { _, err := CompileSort(in); return err }
		}},
		{"$expr field path", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			in := docWithKey("$expr", rvString("$"+p))
			return func() error { _, err := Compile(in); return err }
		}},
		{"expression variable path", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			in := rvString("$$ROOT." + p)
			return func() error { _, err := CompileExpression(in); return err }
		}},
		{"index key", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			in := docWithKey(p, one)
			return func() error { _, err := ParseKeyPattern(in); return err }
		}},
		{"$addFields", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			return pipeline(wrap("$addFields", docWithKey(p, one)))
		}},
		{"$group key", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			return pipeline(wrap("$group", docWithKey("_id", rvString("$"+p))))
		}},
		{"$unwind", maxFieldPathParts, mongoerr.Overflow, func(p string) func() error {
			return pipeline(docWithKey("$unwind", rvString("$"+p)))
		}},
	}
}

// TestPathLengthLimits: each parser accepts a path of its maximum length
// and refuses one component more with MongoDB's code.
func TestPathLengthLimits(t *testing.T) {
	for _, c := range pathCompilers() {
		t.Run(c.name, func(t *testing.T) {
			if err := c.parse(dotted(c.max))(); err != nil {
				t.Fatalf("a path of %d components: %v", c.max, err)
			}
			assertCode(t, c.parse(dotted(c.max+1))(), c.code)
		})
	}
}

// TestHostilePathsAreCheap: a 2 MB path of a million components is
// refused with bounded work, measured as bytes allocated (a size bound,
// not a timing one). Parsers copy a field name once or twice, so the
// bound is twice the input plus a little; splitting the path alone used
// to cost 16 bytes per component more than that (a string header each),
// and applying it built a million-level document tree.
func TestHostilePathsAreCheap(t *testing.T) {
	hostile := dotted(1 << 20) // 2 MiB
	budget := uint64(2*len(hostile) + 256<<10)
	for _, c := range pathCompilers() {
		t.Run(c.name, func(t *testing.T) {
			parse := c.parse(hostile)
			var err error
			allocated := bytesAllocated(func() { err = parse() })
			assertCode(t, err, c.code)
			if allocated > budget {
				t.Errorf("refusing a %d-byte path allocated %d bytes, want at most %d", len(hostile), allocated, budget)
			}
		})
	}
}

// TestUpdateNestingLimit: an update may not make a stored document deeper
// than MongoDB's 180 levels.
func TestUpdateNestingLimit(t *testing.T) {
	for _, tc := range []struct {
		depth int
		code  mongoerr.Code // 0: accepted
	}{
		{maxStorageDepth, 0},
		{maxStorageDepth + 1, mongoerr.Overflow},
	} {
		// A path of n components puts its value at level n; an empty
		// document there adds no level, a non-empty one adds one.
		for _, val := range []struct {
			v     bson.RawValue
			extra int
		}{{rvInt32(1), 0}, {rvDoc(emptyDoc()), 0}, {rvDoc(docWithKey("x", rvInt32(1))), 1}} {
			u, err := CompileUpdate(wrap("$set", docWithKey(dotted(tc.depth-val.extra), val.v)))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = u.Apply(emptyDoc(), ApplyOptions{})
			if tc.code == 0 {
				if err != nil {
					t.Errorf("depth %d: %v", tc.depth, err)
				}
				continue
			}
			assertCode(t, err, tc.code)
		}
	}
	// A stored document already deeper than the limit (cmkdb's inserts
	// allow the wire protocol's 200 levels) can still be updated
	// elsewhere.
	deep := docWithKey("d", rvInt32(1))
	for i := 0; i < maxStorageDepth+5; i++ {
		deep = docWithKey("d", rvDoc(deep))
	}
	u, err := CompileUpdate(D(t, `{"$set": {"top": 1}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.Apply(deep, ApplyOptions{}); err != nil {
		t.Errorf("updating a deep stored document: %v", err)
	}
}

// TestManyUpdatePathsConflictCheckIsLinear: the conflict check used to
// compare every pair of paths; 100,000 fields must cost a bounded number
// of allocations per field.
func TestManyUpdatePathsConflictCheckIsLinear(t *testing.T) {
	const n = 100000
	idx, set := bsoncore.AppendDocumentStart(nil)
	for i := 0; i < n; i++ {
		set = appendRawElement(set, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i), rvInt32(1))
	}
	set, _ = bsoncore.AppendDocumentEnd(set, idx)
	upd := wrap("$set", set)
	var u *Update
	var err error
	allocs := testing.AllocsPerRun(1, func() { u, err = CompileUpdate(upd) })
	if err != nil {
		t.Fatal(err)
	}
	if len(u.ops) != n {
		t.Fatalf("compiled %d ops", len(u.ops))
	}
	if perField := allocs / n; perField > 20 {
		t.Errorf("%.1f allocations per field", perField)
	}
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// bytesAllocated reports the heap bytes fn allocates.
func bytesAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
