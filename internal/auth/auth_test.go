package auth

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

func marshal(t testing.TB, v any) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newConn() *wire.ConnState {
	return wire.NewConnState(1, &net.TCPAddr{}, &net.TCPAddr{}, nil)
}

// scramClient builds a client the way the Go driver does for mech.
func scramClient(t testing.TB, mech Mechanism, user, password string) *scram.ClientConversation {
	t.Helper()
	var c *scram.Client
	var err error
	switch mech {
	case SCRAMSHA256:
		prepped, perr := stringprep.SASLprep.Prepare(password)
		if perr != nil {
			t.Fatal(perr)
		}
		c, err = scram.SHA256.NewClientUnprepped(user, prepped, "")
	case SCRAMSHA1:
		c, err = scram.SHA1.NewClientUnprepped(user, mongoPasswordDigest(user, password), "")
	}
	if err != nil {
		t.Fatal(err)
	}
	return c.NewConversation()
}

func saslStartCmd(t testing.TB, mech Mechanism, payload []byte, skip bool) bson.Raw {
	return marshal(t, bson.D{
		{Key: "saslStart", Value: 1},
		{Key: "mechanism", Value: string(mech)},
		{Key: "payload", Value: bson.Binary{Data: payload}},
		{Key: "autoAuthorize", Value: 1},
		{Key: "options", Value: bson.D{{Key: "skipEmptyExchange", Value: skip}}},
	})
}

func saslContinueCmd(t testing.TB, payload []byte) bson.Raw {
	return marshal(t, bson.D{
		{Key: "saslContinue", Value: 1},
		{Key: "conversationId", Value: int32(1)},
		{Key: "payload", Value: bson.Binary{Data: payload}},
	})
}

func request(db string, cmd bson.Raw) *wire.Request {
	name := ""
	if e, err := cmd.IndexErr(0); err == nil {
		name = e.Key()
	}
	return &wire.Request{DB: db, Name: name, Command: cmd}
}

// converse runs a whole SCRAM conversation through the command handlers,
// the way a driver does, and returns the number of saslContinue round trips.
func converse(t *testing.T, a *Authenticator, c *wire.ConnState, db string, mech Mechanism, user, password string, skip bool) (int, error) {
	t.Helper()
	ctx := context.Background()
	cc := scramClient(t, mech, user, password)
	first, err := cc.Step("")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := a.SaslStart(ctx, c, request(db, saslStartCmd(t, mech, []byte(first), skip)))
	if err != nil {
		return 0, err
	}
	rounds := 0
	for {
		if id := reply.Lookup("conversationId").Int32(); id != 1 {
			t.Fatalf("conversationId = %d", id)
		}
		_, payload := reply.Lookup("payload").Binary()
		done := reply.Lookup("done").Boolean()
		if done && cc.Done() {
			if !cc.Valid() {
				t.Fatal("server finished but client did not verify the server signature")
			}
			return rounds, nil
		}
		next, err := cc.Step(string(payload))
		if err != nil {
			t.Fatalf("client step: %v", err)
		}
		if done {
			if !cc.Valid() {
				t.Fatal("client could not verify the server")
			}
			return rounds, nil
		}
		rounds++
		if rounds > 3 {
			t.Fatal("conversation does not end")
		}
		reply, err = a.SaslContinue(ctx, c, request(db, saslContinueCmd(t, []byte(next))))
		if err != nil {
			return rounds, err
		}
	}
}

func isAuthFailed(err error) bool {
	var me *mongoerr.Error
	return errors.As(err, &me) && me.Code == mongoerr.AuthenticationFailed && me.Msg == "Authentication failed."
}

func TestConversation(t *testing.T) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil"); err != nil {
		t.Fatal(err)
	}
	if err := store.AddUser("app", "bob", "I\u00ADX", SCRAMSHA256); err != nil { // soft hyphen: SASLprep maps it away
		t.Fatal(err)
	}
	if err := store.AddUser("app", "carol", "ünïcødé", SCRAMSHA1); err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(store)

	tests := []struct {
		name     string
		db       string
		mech     Mechanism
		user     string
		password string
		skip     bool
		ok       bool
		rounds   int
	}{
		{"sha256 skip empty exchange", "admin", SCRAMSHA256, "alice", "pencil", true, true, 1},
		{"sha256 with empty exchange", "admin", SCRAMSHA256, "alice", "pencil", false, true, 2},
		{"sha1", "admin", SCRAMSHA1, "alice", "pencil", true, true, 1},
		{"sha1 with empty exchange", "admin", SCRAMSHA1, "alice", "pencil", false, true, 2},
		{"saslprep equivalent password", "app", SCRAMSHA256, "bob", "IX", true, true, 1},
		{"sha1 non-ascii password", "app", SCRAMSHA1, "carol", "ünïcødé", true, true, 1},
		{"wrong password", "admin", SCRAMSHA256, "alice", "pen", true, false, 1},
		{"wrong password sha1", "admin", SCRAMSHA1, "alice", "pen", true, false, 1},
		{"unknown user", "admin", SCRAMSHA256, "mallory", "pencil", true, false, 1},
		{"user in another db", "app", SCRAMSHA256, "alice", "pencil", true, false, 1},
		{"mechanism without credentials", "app", SCRAMSHA1, "bob", "IX", true, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newConn()
			rounds, err := converse(t, a, c, tt.db, tt.mech, tt.user, tt.password, tt.skip)
			p, authed := c.Authenticated()
			if tt.ok {
				if err != nil {
					t.Fatalf("auth failed: %v", err)
				}
				if !authed || p != (wire.Principal{DB: tt.db, User: tt.user}) {
					t.Errorf("principal = %+v, %v", p, authed)
				}
			} else {
				if !isAuthFailed(err) {
					t.Fatalf("err = %#v, want AuthenticationFailed", err)
				}
				if authed {
					t.Error("connection authenticated after a failure")
				}
			}
			if rounds != tt.rounds {
				t.Errorf("%d saslContinue round trips, want %d", rounds, tt.rounds)
			}
			if c.SASL() != nil {
				t.Error("finished conversation left in the connection state")
			}
		})
	}
}

// TestUnknownUserIndistinguishable checks that an unknown user gets a
// server-first message of the same shape, with a salt stable across
// attempts, like a real user's.
func TestUnknownUserIndistinguishable(t *testing.T) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil"); err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(store)
	serverFirst := func(user string) (salt, iters string) {
		cc := scramClient(t, SCRAMSHA256, user, "x")
		first, _ := cc.Step("")
		_, reply, err := a.Start(context.Background(), "admin", saslStartCmd(t, SCRAMSHA256, []byte(first), true))
		if err != nil {
			t.Fatalf("saslStart for %s: %v", user, err)
		}
		_, p := reply.Lookup("payload").Binary()
		parts := bytes.Split(p, []byte(","))
		if len(parts) != 3 {
			t.Fatalf("server-first = %q", p)
		}
		return string(parts[1]), string(parts[2])
	}
	realSalt, realIters := serverFirst("alice")
	s1, i1 := serverFirst("mallory")
	s2, _ := serverFirst("mallory")
	if s1 != s2 {
		t.Error("unknown user's salt changes between attempts")
	}
	if len(s1) != len(realSalt) || i1 != realIters {
		t.Errorf("unknown user's server-first %q,%q differs in shape from %q,%q", s1, i1, realSalt, realIters)
	}
}

func TestConversationProtocolErrors(t *testing.T) {
	store := NewMemoryStore()
	if err := store.AddUser("admin", "alice", "pencil", SCRAMSHA256); err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(store)
	ctx := context.Background()

	// start begins a conversation for alice and returns the client side
	// and the server-first payload.
	start := func(t *testing.T, c *wire.ConnState) (*scram.ClientConversation, string) {
		cc := scramClient(t, SCRAMSHA256, "alice", "pencil")
		first, _ := cc.Step("")
		reply, err := a.SaslStart(ctx, c, request("admin", saslStartCmd(t, SCRAMSHA256, []byte(first), true)))
		if err != nil {
			t.Fatal(err)
		}
		_, p := reply.Lookup("payload").Binary()
		return cc, string(p)
	}

	t.Run("garbled client-first", func(t *testing.T) {
		_, err := a.SaslStart(ctx, newConn(), request("admin", saslStartCmd(t, SCRAMSHA256, []byte("\x00garbage=,,"), true)))
		if !isAuthFailed(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("empty client-first", func(t *testing.T) {
		_, err := a.SaslStart(ctx, newConn(), request("admin", saslStartCmd(t, SCRAMSHA256, nil, true)))
		if !isAuthFailed(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unsupported mechanism", func(t *testing.T) {
		_, err := a.SaslStart(ctx, newConn(), request("admin", saslStartCmd(t, "PLAIN", []byte("x"), true)))
		if mongoerr.CodeOf(err) != mongoerr.MechanismUnavailable {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing payload", func(t *testing.T) {
		cmd := marshal(t, bson.D{{Key: "saslStart", Value: 1}, {Key: "mechanism", Value: "SCRAM-SHA-256"}})
		if _, err := a.SaslStart(ctx, newConn(), request("admin", cmd)); mongoerr.CodeOf(err) != mongoerr.BadValue {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("garbled client-final", func(t *testing.T) {
		c := newConn()
		start(t, c)
		_, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte("c=biws,r=nope,p=AAAA"))))
		if !isAuthFailed(err) {
			t.Fatalf("err = %v", err)
		}
		if _, ok := c.Authenticated(); ok {
			t.Fatal("authenticated")
		}
	})
	t.Run("client-first replayed as client-final", func(t *testing.T) {
		c := newConn()
		cc := scramClient(t, SCRAMSHA256, "alice", "pencil")
		first, _ := cc.Step("")
		if _, err := a.SaslStart(ctx, c, request("admin", saslStartCmd(t, SCRAMSHA256, []byte(first), true))); err != nil {
			t.Fatal(err)
		}
		if _, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte(first)))); !isAuthFailed(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("client-final replayed on a new conversation", func(t *testing.T) {
		c := newConn()
		cc, serverFirst := start(t, c)
		final, err := cc.Step(serverFirst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte(final)))); err != nil {
			t.Fatalf("genuine exchange failed: %v", err)
		}
		// An eavesdropper replays the same client-final after starting
		// its own conversation: the server nonce differs, so it fails.
		c2 := newConn()
		start(t, c2)
		if _, err := a.SaslContinue(ctx, c2, request("admin", saslContinueCmd(t, []byte(final)))); !isAuthFailed(err) {
			t.Fatalf("replay accepted: %v", err)
		}
		if _, ok := c2.Authenticated(); ok {
			t.Fatal("replay authenticated")
		}
	})
	t.Run("continue after done", func(t *testing.T) {
		c := newConn()
		if _, err := converse(t, a, c, "admin", SCRAMSHA256, "alice", "pencil", true); err != nil {
			t.Fatal(err)
		}
		_, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, nil)))
		if mongoerr.CodeOf(err) != mongoerr.ProtocolError {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("continue without start", func(t *testing.T) {
		_, err := a.SaslContinue(ctx, newConn(), request("admin", saslContinueCmd(t, []byte("x"))))
		if mongoerr.CodeOf(err) != mongoerr.ProtocolError {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("continue on another db", func(t *testing.T) {
		c := newConn()
		start(t, c)
		_, err := a.SaslContinue(ctx, c, request("test", saslContinueCmd(t, []byte("x"))))
		if mongoerr.CodeOf(err) != mongoerr.ProtocolError {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong conversation id", func(t *testing.T) {
		c := newConn()
		start(t, c)
		cmd := marshal(t, bson.D{{Key: "saslContinue", Value: 1}, {Key: "conversationId", Value: 7}, {Key: "payload", Value: bson.Binary{}}})
		if _, err := a.SaslContinue(ctx, c, request("admin", cmd)); mongoerr.CodeOf(err) != mongoerr.BadValue {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("non-empty final exchange", func(t *testing.T) {
		c := newConn()
		cc := scramClient(t, SCRAMSHA256, "alice", "pencil")
		first, _ := cc.Step("")
		reply, err := a.SaslStart(ctx, c, request("admin", saslStartCmd(t, SCRAMSHA256, []byte(first), false)))
		if err != nil {
			t.Fatal(err)
		}
		_, p := reply.Lookup("payload").Binary()
		final, _ := cc.Step(string(p))
		if reply, err = a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte(final)))); err != nil || reply.Lookup("done").Boolean() {
			t.Fatalf("proof step: %v %s", err, reply)
		}
		if _, ok := c.Authenticated(); ok {
			t.Fatal("authenticated before the final exchange")
		}
		if _, err := a.SaslContinue(ctx, c, request("admin", saslContinueCmd(t, []byte("junk")))); !isAuthFailed(err) {
			t.Fatalf("err = %v", err)
		}
		if _, ok := c.Authenticated(); ok {
			t.Fatal("authenticated")
		}
	})
}

type failingStore struct{}

func (failingStore) Credentials(context.Context, string, string) (Credentials, error) {
	return Credentials{}, errors.New("disk on fire")
}

func TestStoreFailureIsNotAuthFailure(t *testing.T) {
	a := NewAuthenticator(failingStore{})
	cc := scramClient(t, SCRAMSHA256, "alice", "pencil")
	first, _ := cc.Step("")
	_, _, err := a.Start(context.Background(), "admin", saslStartCmd(t, SCRAMSHA256, []byte(first), true))
	if err == nil || mongoerr.CodeOf(err) != mongoerr.InternalError {
		t.Fatalf("err = %v", err)
	}
}
