package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// dropUser {dropUser: name}: needs userAdmin on the user's database. A
// connection authenticated as the dropped user loses every privilege at
// its next command.
func (h *Handler) dropUser(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	user, err := newArgs(req.Command).string("dropUser")
	if err != nil {
		return nil, err
	}
	if err := validateUserTarget(req.DB, user); err != nil {
		return nil, err
	}
	if err := h.requireAuthenticated(c, req); err != nil {
		return nil, err
	}
	if err := h.authorizeUserAdmin(c, req, nil); err != nil {
		return nil, err
	}
	if _, err := authOf(h).users.drop(req.DB, user); err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// dropAllUsersFromDatabase {dropAllUsersFromDatabase: 1} reports {n}.
func (h *Handler) dropAllUsersFromDatabase(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if err := validateDBName(req.DB); err != nil {
		return nil, err
	}
	if err := h.requireAuthenticated(c, req); err != nil {
		return nil, err
	}
	if err := h.authorizeUserAdmin(c, req, nil); err != nil {
		return nil, err
	}
	n, err := authOf(h).users.drop(req.DB, "")
	if err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "n", Value: int32(n)}, {Key: "ok", Value: 1.0}})
}

func (h *Handler) requireAuthenticated(c *wire.ConnState, req *wire.Request) error {
	if !h.opts.AuthRequired {
		return nil
	}
	if _, ok := c.Authenticated(); !ok {
		return mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
	}
	return nil
}
