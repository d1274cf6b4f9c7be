package query

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// D parses relaxed extended JSON into a BSON document. Relaxed mode keeps
// small integers as int32, so {"a": 1} is {a: NumberInt(1)} like the shell.
func D(t testing.TB, js string) bson.Raw {
	t.Helper()
	var r bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(js), false, &r); err != nil {
		t.Fatalf("bad test JSON %s: %v", js, err)
	}
	return r
}

// V parses a single value by wrapping it in a document.
func V(t testing.TB, js string) bson.RawValue {
	t.Helper()
	return D(t, `{"v": `+js+`}`).Lookup("v")
}

func assertDocEqual(t *testing.T, got bson.Raw, want bson.Raw) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func assertCode(t *testing.T, err error, code mongoerr.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected error code %d, got nil", code)
	}
	if c := mongoerr.CodeOf(err); c != code {
		t.Fatalf("expected error code %d, got %d (%v)", code, c, err)
	}
}
