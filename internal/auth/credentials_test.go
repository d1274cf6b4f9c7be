package auth

import (
	"bytes"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestNewCredentials(t *testing.T) {
	c1, err := NewCredentials("alice", "pencil")
	if err != nil {
		t.Fatal(err)
	}
	c2, err := NewCredentials("alice", "pencil")
	if err != nil {
		t.Fatal(err)
	}
	if len(c1.Mechanisms()) != 2 {
		t.Fatalf("mechanisms = %v", c1.Mechanisms())
	}
	tests := []struct {
		mech    Mechanism
		iters   int
		saltLen int
		keyLen  int
	}{
		{SCRAMSHA256, 15000, 28, 32},
		{SCRAMSHA1, 10000, 16, 20},
	}
	for _, tt := range tests {
		t.Run(string(tt.mech), func(t *testing.T) {
			a, ok := c1.For(tt.mech)
			b, _ := c2.For(tt.mech)
			if !ok {
				t.Fatal("missing")
			}
			if a.Iters != tt.iters || len(a.Salt) != tt.saltLen || len(a.StoredKey) != tt.keyLen || len(a.ServerKey) != tt.keyLen {
				t.Errorf("iters=%d salt=%d stored=%d server=%d", a.Iters, len(a.Salt), len(a.StoredKey), len(a.ServerKey))
			}
			if a.Salt == b.Salt || bytes.Equal(a.StoredKey, b.StoredKey) {
				t.Error("two credentials for the same password share a salt or key")
			}
		})
	}
	only, err := NewCredentials("bob", "x", SCRAMSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := only.For(SCRAMSHA1); ok {
		t.Error("SHA-1 credentials created though not asked for")
	}
	if _, err := NewCredentials("bob", "x", "PLAIN"); !errors.Is(err, ErrUnsupportedMechanism) {
		t.Errorf("PLAIN: %v", err)
	}
	// SASLprep prohibits control characters.
	if _, err := NewCredentials("bob", "bad\u0007pwd", SCRAMSHA256); !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("prohibited password: %v", err)
	} else if bytes.Contains([]byte(err.Error()), []byte("pwd")) {
		t.Errorf("error quotes the password: %v", err)
	}
}

func TestCredentialsBSONRoundTrip(t *testing.T) {
	c, err := NewCredentials("alice", "pencil")
	if err != nil {
		t.Fatal(err)
	}
	b, err := bson.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	raw := bson.Raw(b)
	if n := raw.Lookup("SCRAM-SHA-256", "iterationCount").Int32(); n != 15000 {
		t.Errorf("iterationCount = %d in %s", n, raw)
	}
	if _, ok := raw.Lookup("SCRAM-SHA-1", "storedKey").StringValueOK(); !ok {
		t.Errorf("storedKey not a string: %s", raw)
	}
	var back Credentials
	if err := bson.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, m := range []Mechanism{SCRAMSHA1, SCRAMSHA256} {
		x, _ := c.For(m)
		y, ok := back.For(m)
		if !ok || x.Salt != y.Salt || x.Iters != y.Iters || !bytes.Equal(x.StoredKey, y.StoredKey) || !bytes.Equal(x.ServerKey, y.ServerKey) {
			t.Errorf("%s did not round-trip", m)
		}
	}

	bad := []bson.D{
		{{Key: "SCRAM-SHA-256", Value: bson.D{{Key: "iterationCount", Value: 1}, {Key: "salt", Value: "!!"}}}},
		{{Key: "SCRAM-SHA-256", Value: bson.D{{Key: "iterationCount", Value: 0}, {Key: "salt", Value: "AA=="}, {Key: "storedKey", Value: "AA=="}, {Key: "serverKey", Value: "AA=="}}}},
		{{Key: "SCRAM-SHA-1", Value: "nope"}},
	}
	for i, d := range bad {
		var c Credentials
		if err := bson.Unmarshal(marshal(t, d), &c); err == nil {
			t.Errorf("bad credentials %d accepted", i)
		}
	}
}
