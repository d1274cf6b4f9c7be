package fts

import (
	"math"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestTerms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		lang Language
		want []string
	}{
		{"The quick brown foxes jumped over the lazy dogs", English, []string{"quick", "brown", "fox", "jump", "lazi", "dog"}},
		{"The quick brown foxes", None, []string{"the", "quick", "brown", "foxes"}},
		{"Cafés-au-lait, CRÈME brûlée!", English, []string{"cafe", "au", "lait", "creme", "brulee"}},
		{"snake_case words", English, []string{"snake_cas", "word"}},
		{"don't stop the dog's bone", English, []string{"stop", "dog", "bone"}},
		{"don't", None, []string{"don", "t"}},
		{"x1 42 über", English, []string{"x1", "42", "uber"}},
		{"Сырники", English, []string{"сырники"}},
	} {
		if got := Terms(tc.in, tc.lang); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Terms(%q, %s) = %q, want %q", tc.in, tc.lang, got, tc.want)
		}
	}
}

func TestParseQuery(t *testing.T) {
	spec, err := NewSpec([]string{"a"}, bson.RawValue{}, bson.RawValue{}, bson.RawValue{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		search                  string
		terms, negated          []string
		phrases, negatedPhrases []string
	}{
		{"coffee shops", []string{"coffe", "shop"}, nil, nil, nil},
		{`"coffee shop" -decaf`, []string{"coffe", "shop"}, []string{"decaf"}, []string{"coffee shop"}, nil},
		{`tea -"green tea" pre-market`, []string{"market", "pre", "tea"}, nil, nil, []string{"green tea"}},
		{"the and a", nil, nil, nil, nil},
		{`"unterminated phrase`, []string{"phrase", "untermin"}, nil, nil, nil},
		{"-foo-bar baz - qux", []string{"baz", "qux"}, []string{"foo", "bar"}, nil, nil},
		{`-"a b"-"c d" e`, []string{"e"}, nil, nil, []string{"a b", "c d"}},
		{`- "green tea"`, []string{"green", "tea"}, nil, []string{"green tea"}, nil},
		{"dog's", []string{"dog", "s"}, nil, nil, nil},
	} {
		v := bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: mustMarshal(t, bson.D{{Key: "$search", Value: tc.search}})}
		q, err := ParseQuery(v)
		if err != nil {
			t.Fatal(err)
		}
		q.Bind(spec)
		if !reflect.DeepEqual(q.Terms, tc.terms) || !reflect.DeepEqual(q.Negated, tc.negated) ||
			!reflect.DeepEqual(q.Phrases, tc.phrases) || !reflect.DeepEqual(q.NegatedPhrases, tc.negatedPhrases) {
			t.Errorf("%q: terms %q negated %q phrases %q negated phrases %q", tc.search, q.Terms, q.Negated, q.Phrases, q.NegatedPhrases)
		}
	}
}

func mustMarshal(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScores(t *testing.T) {
	weights := bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: mustMarshal(t, bson.D{{Key: "title", Value: 3}})}
	spec, err := NewSpec([]string{"title", "body"}, weights, bson.RawValue{}, bson.RawValue{})
	if err != nil {
		t.Fatal(err)
	}
	doc := mustMarshal(t, bson.D{
		{Key: "title", Value: "cake"},
		{Key: "body", Value: "cake cake cake and cookies"},
		{Key: "tags", Value: "cake"}, // not indexed
	})
	got, err := spec.Scores(doc)
	if err != nil {
		t.Fatal(err)
	}
	// title: the whole string is the term: 3 × 1 × 1 × 1.1.
	// body: 4 tokens; cake thrice: freq 1+1/2+1/4, coeff 0.5×3/4+0.5;
	// cooki once: coeff 0.5×1/4+0.5.
	want := map[string]float64{"cake": 3*1.1 + 1.75*0.875, "cooki": 0.625}
	if len(got) != len(want) {
		t.Fatalf("scores %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Errorf("score[%s] = %v, want %v", k, got[k], v)
		}
	}
}
