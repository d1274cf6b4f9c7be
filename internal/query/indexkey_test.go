package query

import (
	"bytes"

	"math"
	"math/rand"
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// randValue generates values biased toward the cases that are hard to
// order: mixed numeric types near float64 precision limits, decimals,
// strings with NUL bytes, nested documents and arrays.
func randValue(r *rand.Rand, depth int) bson.RawValue {
	switch k := r.Intn(22); {
	case k < 2:
		return rvInt32(int32(r.Intn(21) - 10))
	case k < 4:
		edges := []int64{1 << 53, 1<<53 + 1, 1<<53 - 1, -(1 << 53) - 1, math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, 1<<62 + 1, 5, -5, 0}
		if r.Intn(2) == 0 {
			return rvInt64(edges[r.Intn(len(edges))])
		}
		return rvInt64(r.Int63n(1<<60) - 1<<59)
	case k < 6:
		specials := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1), 0.1, 5, -5, 1 << 53, 1<<53 + 2, 9223372036854775808.0, -9223372036854775808.0, math.MaxFloat64, math.SmallestNonzeroFloat64, 2.5, 0.3}
		if r.Intn(2) == 0 {
			return rvDouble(specials[r.Intn(len(specials))])
		}
		return rvDouble((r.Float64() - 0.5) * math.Pow(10, float64(r.Intn(40)-20)))
	case k < 8:
		strs := []string{"NaN", "Infinity", "-Infinity", "0", "-0", "0.1", "5", "5.00", "-5", "2.5", "9007199254740993", "9223372036854775807", "1E+400", "-1E+400", "1E-400", "0.30000000000000004", "1.7976931348623157E+308"}
		s := strs[r.Intn(len(strs))]
		if r.Intn(2) == 0 {
			s = strconv.Itoa(r.Intn(2000)-1000) + "E" + strconv.Itoa(r.Intn(60)-30)
		}
		d, err := bson.ParseDecimal128(s)
		if err != nil {
			panic(err)
		}
		return rvDecimal(d)
	case k < 10:
		alphabet := []string{"", "a", "b", "\x00", "ab", "\xff", "a\x00b"}
		s := ""
		for i := r.Intn(3); i > 0; i-- {
			s += alphabet[r.Intn(len(alphabet))]
		}
		if r.Intn(5) == 0 {
			return bson.RawValue{Type: bson.TypeSymbol, Value: bsoncore.AppendString(nil, s)}
		}
		return rvString(s)
	case k < 12 && depth < 3:
		idx, dst := bsoncore.AppendDocumentStart(nil)
		for i := r.Intn(3); i > 0; i-- {
			dst = appendRawElement(dst, []string{"a", "b", "", "a\x01"}[r.Intn(4)], randValue(r, depth+1))
		}
		dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
		return rvDoc(dst)
	case k < 14 && depth < 3:
		var vals []bson.RawValue
		for i := r.Intn(3); i > 0; i-- {
			vals = append(vals, randValue(r, depth+1))
		}
		return rvArray(buildArray(vals))
	case k == 14:
		data := make([]byte, r.Intn(3))
		r.Read(data)
		return bson.RawValue{Type: bson.TypeBinary, Value: bsoncore.AppendBinary(nil, byte(r.Intn(3)), data)}
	case k == 15:
		var oid [12]byte
		oid[11] = byte(r.Intn(3))
		oid[0] = byte(r.Intn(2) * 255)
		return bson.RawValue{Type: bson.TypeObjectID, Value: oid[:]}
	case k == 16:
		return rvBool(r.Intn(2) == 0)
	case k == 17:
		return rvDate(int64(r.Intn(5)-2) * int64(r.Intn(1<<40)))
	case k == 18:
		return rvTimestamp(uint32(r.Intn(3))*0xF0000000, uint32(r.Intn(3)))
	case k == 19:
		return bson.RawValue{Type: bson.TypeRegex, Value: bsoncore.AppendRegex(nil, []string{"a", "ab", ""}[r.Intn(3)], []string{"", "i"}[r.Intn(2)])}
	case k == 20:
		return []bson.RawValue{rvNull, rvUndefined, {Type: bson.TypeMinKey}, {Type: bson.TypeMaxKey}}[r.Intn(4)]
	}
	return bson.RawValue{Type: bson.TypeJavaScript, Value: bsoncore.AppendJavaScript(nil, []string{"x", "y"}[r.Intn(2)])}
}

func sign(x int) int { return cmpInt(x, 0) }

func TestEncodeIndexKeyPreservesOrder(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	vals := make([]bson.RawValue, 600)
	for i := range vals {
		vals[i] = randValue(r, 0)
	}
	for i := range vals {
		for j := range vals {
			a, b := vals[i], vals[j]
			want := Compare(a, b)
			got := sign(bytes.Compare(EncodeIndexKey([]bson.RawValue{a}, nil), EncodeIndexKey([]bson.RawValue{b}, nil)))
			if got != want {
				t.Fatalf("order mismatch: Compare(%s, %s) = %d but encoded compare = %d", a, b, want, got)
			}
			gotDesc := sign(bytes.Compare(EncodeIndexKey([]bson.RawValue{a}, []int{-1}), EncodeIndexKey([]bson.RawValue{b}, []int{-1})))
			if gotDesc != -want {
				t.Fatalf("descending mismatch for %s, %s", a, b)
			}
		}
	}
}

func TestEncodeCompoundKey(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	dirs := []int{1, -1, 1}
	for n := 0; n < 20000; n++ {
		a := []bson.RawValue{randValue(r, 1), randValue(r, 1), randValue(r, 1)}
		b := []bson.RawValue{randValue(r, 1), randValue(r, 1), randValue(r, 1)}
		if r.Intn(2) == 0 {
			b[0] = a[0]
			if r.Intn(2) == 0 {
				b[1] = a[1]
			}
		}
		want := 0
		for i := range a {
			c := Compare(a[i], b[i]) * dirs[i]
			if c != 0 {
				want = c
				break
			}
		}
		got := sign(bytes.Compare(EncodeIndexKey(a, dirs), EncodeIndexKey(b, dirs)))
		if got != want {
			t.Fatalf("compound mismatch %v vs %v: want %d got %d", a, b, want, got)
		}
	}
}

// TestCompareIsTotalOrder checks antisymmetry and transitivity on samples,
// which sort algorithms and the encoding both rely on.
func TestCompareIsTotalOrder(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for n := 0; n < 20000; n++ {
		a, b, c := randValue(r, 0), randValue(r, 0), randValue(r, 0)
		if Compare(a, b) != -Compare(b, a) {
			t.Fatalf("antisymmetry: %s %s", a, b)
		}
		if Compare(a, b) <= 0 && Compare(b, c) <= 0 && Compare(a, c) > 0 {
			t.Fatalf("transitivity: %s %s %s", a, b, c)
		}
	}
}

func TestIndexKeys(t *testing.T) {
	kp, err := ParseKeyPattern(D(t, `{"a": 1, "b": -1}`))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kp.IndexKeys(D(t, `{"a": [1, 2, 1.0], "b": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("want 2 multikey entries, got %d", len(keys))
	}
	want := EncodeIndexKey([]bson.RawValue{rvInt32(1), rvString("x")}, []int{1, -1})
	if !bytes.Equal(keys[0], want) {
		t.Errorf("first key mismatch")
	}
	// Missing fields index as null; empty arrays as undefined.
	keys, _ = kp.IndexKeys(D(t, `{"b": []}`))
	want = EncodeIndexKey([]bson.RawValue{rvNull, rvUndefined}, []int{1, -1})
	if len(keys) != 1 || !bytes.Equal(keys[0], want) {
		t.Errorf("missing/empty array keys wrong")
	}
	_, err = kp.IndexKeys(D(t, `{"a": [1], "b": [2]}`))
	if err == nil {
		t.Error("expected parallel arrays error")
	}
}
