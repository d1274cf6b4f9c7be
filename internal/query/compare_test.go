package query

import (
	"testing"
)

func TestCompareTypeOrder(t *testing.T) {
	// Ascending per MongoDB's documented comparison order.
	ordered := []string{
		`{"$minKey": 1}`,
		`{"$undefined": true}`,
		`null`,
		`{"$numberDouble": "NaN"}`,
		`{"$numberDouble": "-Infinity"}`,
		`-5`,
		`{"$numberLong": "-1"}`,
		`0`,
		`1.5`,
		`{"$numberDecimal": "1.75"}`,
		`2`,
		`{"$numberLong": "9007199254740993"}`,
		`{"$numberDouble": "Infinity"}`,
		`""`,
		`"a"`,
		`"ab"`,
		`"b"`,
		`{}`,
		`{"a": 1}`,
		`{"a": 1, "b": 1}`,
		`{"a": "x"}`,
		`{"b": "y"}`,
		`[]`,
		`[1]`,
		`[1, 2]`,
		`[2]`,
		`{"$binary": {"base64": "AA==", "subType": "01"}}`,
		`{"$binary": {"base64": "AAA=", "subType": "00"}}`,
		`{"$oid": "000000000000000000000000"}`,
		`{"$oid": "ffffffffffffffffffffffff"}`,
		`false`,
		`true`,
		`{"$date": {"$numberLong": "-1000"}}`,
		`{"$date": {"$numberLong": "5"}}`,
		`{"$timestamp": {"t": 1, "i": 5}}`,
		`{"$timestamp": {"t": 2, "i": 0}}`,
		`{"$regularExpression": {"pattern": "a", "options": ""}}`,
		`{"$regularExpression": {"pattern": "a", "options": "i"}}`,
		`{"$regularExpression": {"pattern": "b", "options": ""}}`,
		`{"$maxKey": 1}`,
	}
	for i := range ordered {
		for j := range ordered {
			a, b := V(t, ordered[i]), V(t, ordered[j])
			want := cmpInt(i, j)
			if got := Compare(a, b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func TestCompareNumbersEqualAcrossTypes(t *testing.T) {
	eq := [][2]string{
		{`1`, `1.0`},
		{`1`, `{"$numberLong": "1"}`},
		{`1`, `{"$numberDecimal": "1.000"}`},
		{`{"$numberDouble": "-0.0"}`, `0`},
		{`{"$numberDouble": "NaN"}`, `{"$numberDecimal": "NaN"}`},
		{`{"$numberDouble": "Infinity"}`, `{"$numberDecimal": "Infinity"}`},
		{`{"$numberLong": "9007199254740992"}`, `9007199254740992.0`},
		{`"a"`, `{"$symbol": "a"}`},
	}
	for _, p := range eq {
		if c := Compare(V(t, p[0]), V(t, p[1])); c != 0 {
			t.Errorf("Compare(%s, %s) = %d, want 0", p[0], p[1], c)
		}
	}
	lt := [][2]string{
		{`{"$numberLong": "9007199254740992"}`, `{"$numberLong": "9007199254740993"}`},
		{`9007199254740992.0`, `{"$numberLong": "9007199254740993"}`},
		{`{"$numberLong": "9223372036854775807"}`, `9223372036854775807.0`}, // the double is 2^63
		{`{"$numberDecimal": "0.1"}`, `0.1`},                                // 0.1 as double is slightly above 0.1
		{`{"$numberDecimal": "1E+400"}`, `{"$numberDouble": "Infinity"}`},
		{`{"$numberDouble": "1.7976931348623157E308"}`, `{"$numberDecimal": "1E+400"}`},
	}
	for _, p := range lt {
		if c := Compare(V(t, p[0]), V(t, p[1])); c != -1 {
			t.Errorf("Compare(%s, %s) = %d, want -1", p[0], p[1], c)
		}
		if c := Compare(V(t, p[1]), V(t, p[0])); c != 1 {
			t.Errorf("Compare(%s, %s) = %d, want 1", p[1], p[0], c)
		}
	}
}
