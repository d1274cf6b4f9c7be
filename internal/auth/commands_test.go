package auth

import (
	"context"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestHelloFieldsSupportedMechs(t *testing.T) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "both", "x"); err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser("admin", "new", "x", SCRAMSHA256); err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(store)
	tests := []struct {
		name string
		ns   any
		want []string // nil: field absent
	}{
		{"both mechanisms", "admin.both", []string{"SCRAM-SHA-1", "SCRAM-SHA-256"}},
		{"sha256 only", "admin.new", []string{"SCRAM-SHA-256"}},
		{"unknown user looks like a default user", "admin.nobody", []string{"SCRAM-SHA-1", "SCRAM-SHA-256"}},
		{"user name with dots", "admin.a.b", []string{"SCRAM-SHA-1", "SCRAM-SHA-256"}},
		{"no dot", "admin", nil},
		{"not a string", 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := marshal(t, bson.D{{Key: "hello", Value: 1}, {Key: "saslSupportedMechs", Value: tt.ns}})
			fields := a.HelloFields(context.Background(), newConn(), request("admin", cmd))
			var got []string
			for _, e := range fields {
				if e.Key == "saslSupportedMechs" {
					got = []string{}
					for _, m := range e.Value.(bson.A) {
						got = append(got, m.(string))
					}
				}
			}
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("saslSupportedMechs = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHelloFieldsSpeculative(t *testing.T) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil"); err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(store)
	ctx := context.Background()
	cc := scramClient(t, SCRAMSHA256, "alice", "pencil")
	first, _ := cc.Step("")
	spec := bson.D{
		{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"},
		{Key: "payload", Value: bson.Binary{Data: []byte(first)}}, {Key: "db", Value: "admin"},
		{Key: "options", Value: bson.D{{Key: "skipEmptyExchange", Value: true}}},
	}
	c := newConn()
	fields := a.HelloFields(ctx, c, request("admin", marshal(t, bson.D{{Key: "hello", Value: 1}, {Key: "speculativeAuthenticate", Value: spec}})))
	if len(fields) != 1 || fields[0].Key != "speculativeAuthenticate" {
		t.Fatalf("fields = %v", fields)
	}
	_, serverFirst := fields[0].Value.(bson.Raw).Lookup("payload").Binary()
	final, err := cc.Step(string(serverFirst))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte(final))))
	if err != nil {
		t.Fatal(err)
	}
	if !reply.Lookup("done").Boolean() {
		t.Errorf("reply = %s", reply)
	}
	if p, ok := c.Authenticated(); !ok || p.User != "alice" {
		t.Errorf("principal = %+v %v", p, ok)
	}

	// Unusable speculative documents are ignored, not errors.
	for _, bad := range []bson.D{
		{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "MONGODB-X509"}, {Key: "db", Value: "$external"}},
		{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"}, {Key: "payload", Value: bson.Binary{Data: []byte(first)}}},
	} {
		c := newConn()
		if f := a.HelloFields(ctx, c, request("admin", marshal(t, bson.D{{Key: "hello", Value: 1}, {Key: "speculativeAuthenticate", Value: bad}}))); len(f) != 0 || c.SASL() != nil {
			t.Errorf("fields = %v for %v", f, bad)
		}
	}
}
