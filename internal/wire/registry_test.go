package wire

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

func TestRegistry(t *testing.T) {
	r := NewRegistry()
	reply := func(name string) HandlerFunc {
		return func(context.Context, *ConnState, *Request) (bson.Raw, error) {
			return mustMarshal(t, bson.D{{Key: "handled", Value: name}}), nil
		}
	}
	for _, n := range []string{"isMaster", "ping", "find"} {
		if err := r.Register(n, reply(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Register("ismaster", reply("x")); !errors.Is(err, ErrDuplicateCommand) {
		t.Errorf("re-registering the isMaster alias: %v", err)
	}
	if err := r.Register("", reply("x")); err == nil {
		t.Error("empty name accepted")
	}

	tests := []struct {
		name    string
		handled string
		errMsg  string
	}{
		{"isMaster", "isMaster", ""},
		{"ismaster", "isMaster", ""},
		{"ISMASTER", "", "no such command: 'ISMASTER'"},
		{"ping", "ping", ""},
		{"Ping", "", "no such command: 'Ping'"},
		{"foo", "", "no such command: 'foo'"},
		{"", "", "no such command: ''"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Handle(context.Background(), nil, &Request{Name: tt.name})
			if tt.errMsg != "" {
				var me *mongoerr.Error
				if !errors.As(err, &me) || me.Code != mongoerr.CommandNotFound || me.Msg != tt.errMsg {
					t.Fatalf("err = %#v, want CommandNotFound %q", err, tt.errMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h := got.Lookup("handled").StringValue(); h != tt.handled {
				t.Errorf("handled by %q, want %q", h, tt.handled)
			}
		})
	}
	if names := r.Names(); !slices.Equal(names, []string{"find", "isMaster", "ping"}) {
		t.Errorf("Names = %v", names)
	}
}

func TestErrorReply(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     int32
		codeName string
		msg      string
	}{
		{"mongoerr", mongoerr.New(mongoerr.NamespaceNotFound, "ns not found"), 26, "NamespaceNotFound", "ns not found"},
		{"wrapped", errors.Join(errors.New("ctx"), mongoerr.New(mongoerr.BadValue, "bad")), 2, "BadValue", "bad"},
		{"plain", errors.New("disk on fire"), 1, "InternalError", "disk on fire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := ErrorReply(tt.err)
			if ok := doc.Lookup("ok").Double(); ok != 0 {
				t.Errorf("ok = %v", ok)
			}
			if c := doc.Lookup("code").Int32(); c != tt.code {
				t.Errorf("code = %d", c)
			}
			if n := doc.Lookup("codeName").StringValue(); n != tt.codeName {
				t.Errorf("codeName = %q", n)
			}
			if m := doc.Lookup("errmsg").StringValue(); m != tt.msg {
				t.Errorf("errmsg = %q", m)
			}
		})
	}
}

func TestFinishReplyAddsOK(t *testing.T) {
	tests := []struct {
		name string
		in   bson.Raw
		want string
	}{
		{"nil", nil, `{"ok": {"$numberDouble":"1.0"}}`},
		{"payload", mustMarshal(t, bson.D{{Key: "n", Value: int32(1)}}), `{"n": {"$numberInt":"1"},"ok": {"$numberDouble":"1.0"}}`},
		{"has ok", mustMarshal(t, bson.D{{Key: "ok", Value: int32(0)}}), `{"ok": {"$numberInt":"0"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := finishReply(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := finishReply(bson.Raw{1, 2, 3}); err == nil {
		t.Error("invalid reply accepted")
	}
}
