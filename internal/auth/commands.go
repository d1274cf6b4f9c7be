package auth

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Register adds the saslStart and saslContinue commands to r.
func (a *Authenticator) Register(r *wire.Registry) error {
	if err := r.Register("saslStart", a.SaslStart); err != nil {
		return err
	}
	return r.Register("saslContinue", a.SaslContinue)
}

// SaslStart is the saslStart command. The conversation is kept in the
// connection's state; a new saslStart abandons any previous one.
func (a *Authenticator) SaslStart(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	c.SetSASL(nil)
	conv, reply, err := a.StartFrom(ctx, c.RemoteAddr(), req.DB, req.Command)
	if err != nil {
		return nil, err
	}
	c.SetSASL(conv)
	return reply, nil
}

// SaslContinue is the saslContinue command. When the conversation
// succeeds the connection becomes authenticated.
func (a *Authenticator) SaslContinue(_ context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	conv, _ := c.SASL().(*Conversation)
	if conv == nil || conv.db != req.DB {
		return nil, mongoerr.New(mongoerr.ProtocolError, "No SASL session state found")
	}
	reply, err := conv.Continue(req.Command)
	if conv.Done() {
		c.SetSASL(nil)
	}
	if err != nil {
		return nil, err
	}
	if p, ok := conv.Principal(); ok {
		c.SetAuthenticated(p)
	}
	return reply, nil
}

// HelloFields returns what a hello/isMaster reply adds for authentication:
//
//   - saslSupportedMechs, when the command asks for "<db>.<user>"'s
//     mechanisms (drivers use it to pick SCRAM-SHA-256 over SHA-1). An
//     unknown user gets the default list, not an absent field, so the
//     answer does not reveal whether the user exists.
//   - speculativeAuthenticate, when the command carries a saslStart for
//     SCRAM: the conversation starts now, saving a round trip. If it
//     cannot start the field is omitted and the driver falls back to
//     saslStart, which reports the failure.
func (a *Authenticator) HelloFields(ctx context.Context, c *wire.ConnState, req *wire.Request) bson.D {
	var out bson.D
	if ns, ok := req.Command.Lookup("saslSupportedMechs").StringValueOK(); ok {
		if db, user, ok := strings.Cut(ns, "."); ok {
			mechs := DefaultMechanisms()
			if creds, err := a.store.Credentials(ctx, db, user); err == nil {
				mechs = creds.Mechanisms()
			}
			names := make(bson.A, len(mechs))
			for i, m := range mechs {
				names[i] = string(m)
			}
			out = append(out, bson.E{Key: "saslSupportedMechs", Value: names})
		}
	}
	if spec, ok := req.Command.Lookup("speculativeAuthenticate").DocumentOK(); ok {
		db, _ := spec.Lookup("db").StringValueOK()
		if db != "" {
			if conv, reply, err := a.StartFrom(ctx, c.RemoteAddr(), db, spec); err == nil {
				c.SetSASL(conv)
				out = append(out, bson.E{Key: "speculativeAuthenticate", Value: reply})
			}
		}
	}
	return out
}
