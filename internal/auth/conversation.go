package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"

	"github.com/xdg-go/scram"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// conversationID is the id mongod gives every SASL conversation: a
// connection has at most one at a time.
const conversationID = 1

// ErrAuthFailed is the only failure clients see, whatever went wrong (no
// such user, wrong password, garbled payload), so a client cannot tell
// whether a user exists.
func ErrAuthFailed() *mongoerr.Error {
	return mongoerr.New(mongoerr.AuthenticationFailed, "Authentication failed.")
}

// Authenticator runs SASL conversations against a CredentialStore. It is
// safe for concurrent use.
type Authenticator struct {
	store CredentialStore
	// decoyKey derives stable fake salts for unknown users: answering them
	// with a conversation indistinguishable from a real one (same salt on
	// every attempt, same failure at the same step) keeps user names from
	// being probed.
	decoyKey []byte
	throttle *Throttle
}

// NewAuthenticator returns an Authenticator over store, throttling failed
// logins with the default bounds.
func NewAuthenticator(store CredentialStore) *Authenticator {
	return NewAuthenticatorThrottled(store, NewThrottle(ThrottleConfig{}))
}

// NewAuthenticatorThrottled returns an Authenticator over store that
// throttles failed logins with t.
func NewAuthenticatorThrottled(store CredentialStore, t *Throttle) *Authenticator {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails
	return &Authenticator{store: store, decoyKey: key, throttle: t}
}

type convState int

const (
	awaitingProof convState = iota // after saslStart: client-final expected
	awaitingEmpty                  // proof verified: empty final exchange expected
	authenticated
	failed
)

// Conversation is one SCRAM exchange on one connection.
type Conversation struct {
	db    string
	mech  Mechanism
	scram *scram.ServerConversation
	skip  bool // options.skipEmptyExchange
	decoy bool // unknown user, or a throttled one: must fail
	state convState
	// throttle and key record the outcome; throttled marks an attempt
	// refused without being checked (it is not counted again).
	throttle  *Throttle
	key       throttleKey
	throttled bool
}

// Start begins a conversation for a saslStart command (or the
// speculativeAuthenticate document of a hello) against database db. It
// returns the conversation and the reply; on failure the error is a
// *mongoerr.Error.
func (a *Authenticator) Start(ctx context.Context, db string, cmd bson.Raw) (*Conversation, bson.Raw, error) {
	return a.StartFrom(ctx, nil, db, cmd)
}

// StartFrom is Start for a client at source, whose failed attempts are
// throttled (see throttle.go).
func (a *Authenticator) StartFrom(ctx context.Context, source net.Addr, db string, cmd bson.Raw) (*Conversation, bson.Raw, error) {
	mv, err := cmd.LookupErr("mechanism")
	if err != nil {
		return nil, nil, mongoerr.New(mongoerr.BadValue, "saslStart requires a mechanism")
	}
	name, ok := mv.StringValueOK()
	if !ok {
		return nil, nil, mongoerr.New(mongoerr.TypeMismatch, "mechanism must be a string")
	}
	mech := Mechanism(name)
	hashGen, ok := hashFor(mech)
	if !ok {
		return nil, nil, mongoerr.New(mongoerr.MechanismUnavailable, "Received authentication for mechanism %s which is unknown or not enabled", name)
	}
	payload, err := payloadOf(cmd)
	if err != nil {
		return nil, nil, err
	}
	conv := &Conversation{db: db, mech: mech, throttle: a.throttle}
	if skip, ok := cmd.Lookup("options", "skipEmptyExchange").BooleanOK(); ok {
		conv.skip = skip
	}
	var lookupErr error
	srv, err := hashGen.NewServer(func(user string) (scram.StoredCredentials, error) {
		conv.key = throttleKey{source: sourceOf(source), db: db, user: user}
		if a.throttle != nil && !a.throttle.allowed(conv.key) {
			// Locked out: the conversation goes on exactly as for an
			// unknown user and fails at the proof, right password or not.
			conv.decoy, conv.throttled = true, true
			return a.decoyCredentials(mech, db, user), nil
		}
		creds, err := a.store.Credentials(ctx, db, user)
		if err == nil {
			if sc, ok := creds.For(mech); ok {
				return sc, nil
			}
		} else if !errors.Is(err, ErrUserNotFound) {
			lookupErr = err
			return scram.StoredCredentials{}, err
		}
		conv.decoy = true
		return a.decoyCredentials(mech, db, user), nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("auth: scram server: %w", err)
	}
	conv.scram = srv.NewConversation()
	out, err := conv.scram.Step(string(payload))
	if lookupErr != nil {
		return nil, nil, fmt.Errorf("auth: looking up user: %w", lookupErr)
	}
	if err != nil {
		return nil, nil, ErrAuthFailed()
	}
	return conv, saslReply(false, []byte(out)), nil
}

// Continue advances the conversation with a saslContinue command. After an
// error the conversation is over.
func (c *Conversation) Continue(cmd bson.Raw) (bson.Raw, error) {
	if id, ok := cmd.Lookup("conversationId").AsInt64OK(); !ok || id != conversationID {
		c.state = failed
		return nil, mongoerr.New(mongoerr.BadValue, "Mismatched SASL conversation id")
	}
	payload, err := payloadOf(cmd)
	if err != nil {
		c.state = failed
		return nil, err
	}
	switch c.state {
	case awaitingProof:
		out, err := c.scram.Step(string(payload))
		if err != nil || !c.scram.Valid() || c.decoy {
			c.state = failed
			if c.throttle != nil && !c.throttled {
				c.throttle.failed(c.key)
			}
			return nil, ErrAuthFailed()
		}
		if c.throttle != nil {
			c.throttle.succeeded(c.key)
		}
		if c.skip {
			c.state = authenticated
			return saslReply(true, []byte(out)), nil
		}
		c.state = awaitingEmpty
		return saslReply(false, []byte(out)), nil
	case awaitingEmpty:
		if len(payload) != 0 {
			c.state = failed
			return nil, ErrAuthFailed()
		}
		c.state = authenticated
		return saslReply(true, nil), nil
	default:
		return nil, mongoerr.New(mongoerr.ProtocolError, "No SASL session state found")
	}
}

// Done reports whether the conversation is over, successfully or not.
func (c *Conversation) Done() bool { return c.state == authenticated || c.state == failed }

// Principal returns who authenticated, once the conversation succeeded.
func (c *Conversation) Principal() (wire.Principal, bool) {
	if c.state != authenticated {
		return wire.Principal{}, false
	}
	return wire.Principal{DB: c.db, User: c.scram.Username()}, true
}

// Mechanism returns the conversation's mechanism.
func (c *Conversation) Mechanism() Mechanism { return c.mech }

// decoyCredentials are stable, unusable credentials for an unknown user.
func (a *Authenticator) decoyCredentials(m Mechanism, db, user string) scram.StoredCredentials {
	mac := hmac.New(sha256.New, a.decoyKey)
	fmt.Fprintf(mac, "%s\x00%s\x00%s", m, db, user)
	sum := mac.Sum(nil) // 32 bytes, more than any salt length
	salt := sum[:saltLen(m)]
	key := make([]byte, len(sum))
	_, _ = rand.Read(key)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(salt), Iters: iterations(m)},
		StoredKey:  key,
		ServerKey:  key,
	}
}

func hashFor(m Mechanism) (scram.HashGeneratorFcn, bool) {
	switch m {
	case SCRAMSHA256:
		return scram.SHA256, true
	case SCRAMSHA1:
		return scram.SHA1, true
	}
	return nil, false
}

// payloadOf returns the payload field, which drivers send as generic
// binary and the legacy shell as a string.
func payloadOf(cmd bson.Raw) ([]byte, error) {
	v, err := cmd.LookupErr("payload")
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "SASL command requires a payload")
	}
	if _, data, ok := v.BinaryOK(); ok {
		return data, nil
	}
	if s, ok := v.StringValueOK(); ok {
		return []byte(s), nil
	}
	return nil, mongoerr.New(mongoerr.TypeMismatch, "SASL payload must be binary or a string")
}

// saslReply is mongod's reply to saslStart/saslContinue (ok is added by the
// wire layer).
func saslReply(done bool, payload []byte) bson.Raw {
	if payload == nil {
		payload = []byte{}
	}
	b, _ := bson.Marshal(bson.D{
		{Key: "conversationId", Value: int32(conversationID)},
		{Key: "done", Value: done},
		{Key: "payload", Value: bson.Binary{Subtype: 0, Data: payload}},
	})
	return b
}
