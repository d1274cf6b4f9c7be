package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/auth"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// authState is a handler's authentication state: its user store and the
// authenticator over it (one per handler: the authenticator's decoy key
// must stay the same across a client's attempts).
type authState struct {
	users *userStore
	authn *auth.Authenticator
}

func authOf(h *Handler) *authState { return h.auth }

func newAuthState(h *Handler) *authState {
	st := &authState{users: newUserStore(h)}
	st.authn = auth.NewAuthenticator(st.users)
	return st
}

// helloAuthFields are hello's saslSupportedMechs and
// speculativeAuthenticate (see auth.Authenticator.HelloFields).
func (h *Handler) helloAuthFields(ctx context.Context, c *wire.ConnState, req *wire.Request) bson.D {
	return authOf(h).authn.HelloFields(ctx, c, req)
}

// rolesForStatus returns the authenticated user's roles for
// connectionStatus.
func (h *Handler) rolesForStatus(p wire.Principal) bson.A {
	out := bson.A{}
	roles, err := authOf(h).users.rolesOf(p)
	if err != nil {
		return out
	}
	for _, r := range roles {
		out = append(out, bson.D{{Key: "role", Value: r.Role}, {Key: "db", Value: r.DB}})
	}
	return out
}

// authenticate is the pre-SASL command (MONGODB-CR, MONGODB-X509). Neither
// mechanism is offered.
func (h *Handler) authenticate(_ context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	mech, _ := req.Command.Lookup("mechanism").StringValueOK()
	return nil, mongoerr.New(mongoerr.MechanismUnavailable, "Received authentication for mechanism %s which is unknown or not enabled", mech)
}

// logout forgets the connection's user if it authenticated on the
// command's database; on another database, or unauthenticated, it changes
// nothing (mongod 7.0, where logout is deprecated but still works so).
func (h *Handler) logout(_ context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if p, ok := c.Authenticated(); ok && p.DB == req.DB {
		c.Logout()
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}
