package oplog

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func TestTimestampCompare(t *testing.T) {
	cases := []struct {
		a, b Timestamp
		want int
	}{
		{Timestamp{}, Timestamp{}, 0},
		{Timestamp{1, 1}, Timestamp{1, 1}, 0},
		{Timestamp{1, 2}, Timestamp{1, 1}, 1},
		{Timestamp{1, 1}, Timestamp{1, 2}, -1},
		{Timestamp{2, 0}, Timestamp{1, math.MaxUint32}, 1}, // seconds first
		{Timestamp{1, math.MaxUint32}, Timestamp{2, 0}, -1},
		{Timestamp{math.MaxUint32, 0}, Timestamp{0, math.MaxUint32}, 1},
	}
	for _, c := range cases {
		if got := c.a.Compare(c.b); got != c.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", c.a, c.b, got, c.want)
		}
		// Storage keys sort as timestamps do: the oplog's order on disk.
		ka, kb := c.a.key(), c.b.key()
		if got := bytes.Compare(ka[:], kb[:]); got != c.want {
			t.Errorf("key order of %v, %v = %d, want %d", c.a, c.b, got, c.want)
		}
		if back := timestampFromKey(ka[:]); back != c.a {
			t.Errorf("timestampFromKey(key(%v)) = %v", c.a, back)
		}
	}
	if !(Timestamp{}).IsZero() || (Timestamp{0, 1}).IsZero() || (Timestamp{1, 0}).IsZero() {
		t.Error("IsZero")
	}
}

func TestNext(t *testing.T) {
	sec := func(s int64) time.Time { return time.Unix(s, 0) }
	cases := []struct {
		name string
		prev Timestamp
		wall time.Time
		want Timestamp
	}{
		{"first change", Timestamp{}, sec(100), Timestamp{100, 1}},
		{"same second", Timestamp{100, 1}, sec(100), Timestamp{100, 2}},
		{"within the second", Timestamp{100, 1}, time.Unix(100, 999_999_999), Timestamp{100, 2}},
		{"next second", Timestamp{100, 7}, sec(101), Timestamp{101, 1}},
		{"clock jumps ahead", Timestamp{100, 7}, sec(5000), Timestamp{5000, 1}},
		{"clock went back", Timestamp{100, 7}, sec(90), Timestamp{100, 8}},
		{"wall before 1970", Timestamp{100, 7}, sec(-5), Timestamp{100, 8}},
		{"wall before 1970, no prev", Timestamp{}, sec(-5), Timestamp{0, 1}},
		{"increment overflows", Timestamp{100, math.MaxUint32}, sec(100), Timestamp{101, 1}},
		{"increment overflows, clock behind", Timestamp{100, math.MaxUint32}, sec(3), Timestamp{101, 1}},
		{"wall past 2106", Timestamp{}, sec(1 << 40), Timestamp{math.MaxUint32, 1}},
	}
	for _, c := range cases {
		got := Next(c.prev, c.wall)
		if got != c.want {
			t.Errorf("%s: Next(%v, %d) = %v, want %v", c.name, c.prev, c.wall.Unix(), got, c.want)
		}
		if got.Compare(c.prev) <= 0 {
			t.Errorf("%s: Next(%v) = %v does not follow it", c.name, c.prev, got)
		}
	}
}

// TestNextMonotonic walks a clock that goes forward, repeats and goes
// back: every timestamp follows the one before, and the same walk gives
// the same timestamps (every member computes them from the log alone).
func TestNextMonotonic(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		walk := func() []Timestamp {
			r := rand.New(rand.NewPCG(seed, 1))
			wall := int64(1_700_000_000)
			var prev Timestamp
			var out []Timestamp
			for range 2000 {
				switch r.IntN(4) {
				case 0: // repeats
				case 1:
					wall += r.Int64N(3)
				case 2:
					wall -= r.Int64N(100) // a clock stepped back, a primary behind
				case 3:
					wall += r.Int64N(10_000)
				}
				next := Next(prev, time.Unix(wall, 0))
				if next.Compare(prev) <= 0 {
					t.Fatalf("seed %d: Next(%v, %d) = %v", seed, prev, wall, next)
				}
				if next.T < uint32(wall) {
					t.Fatalf("seed %d: Next(%v, %d) = %v is behind the wall clock", seed, prev, wall, next)
				}
				out = append(out, next)
				prev = next
			}
			return out
		}
		a, b := walk(), walk()
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("seed %d: the same walk gave %v and %v at %d", seed, a[i], b[i], i)
			}
		}
	}
}
