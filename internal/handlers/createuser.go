package handlers

import (
	"context"
	"errors"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/auth"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// createUser {createUser: name, pwd, roles: [role | {role, db}], mechanisms?, customData?}.
//
// Who may run it, when Options.AuthRequired is set: a user with userAdmin
// (userAdmin, dbOwner, userAdminAnyDatabase, root) on the command's
// database and on every database a granted role applies to; or — the
// localhost exception, as in mongod — an unauthenticated connection from a
// loopback address, against the admin database, while no user exists at
// all. The exception closes as soon as the first user exists (the check
// and the insert are atomic), so the first user should be an administrator.
func (h *Handler) createUser(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	user, err := a.string("createUser")
	if err != nil {
		return nil, err
	}
	if err := validateUserTarget(req.DB, user); err != nil {
		return nil, err
	}
	pv, ok := a.value("pwd")
	if !ok {
		return nil, mongoerr.New(mongoerr.BadValue, "Must provide a 'pwd' field for all user documents, except those with '$external' as the user's source db")
	}
	pwd, ok := pv.StringValueOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'createUser.pwd' is the wrong type '%s', expected type 'string'", typeName(pv.Type))
	}
	if _, ok := a.value("roles"); !ok {
		return nil, mongoerr.New(40414, "BSON field 'createUser.roles' is missing but a required field")
	}
	roles, err := parseRoles(a, req.DB)
	if err != nil {
		return nil, err
	}
	mechs, err := parseMechanisms(a)
	if err != nil {
		return nil, err
	}
	if err := checkDigestPassword(a); err != nil {
		return nil, err
	}
	custom, err := a.doc("customData")
	if err != nil {
		return nil, err
	}
	var precondition func() error
	if h.opts.AuthRequired {
		if _, ok := c.Authenticated(); ok {
			if err := h.authorizeUserAdmin(c, req, roles); err != nil {
				return nil, err
			}
		} else {
			if !isLoopback(c.RemoteAddr()) || req.DB != usersDB {
				return nil, mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
			}
			users := authOf(h).users
			precondition = func() error {
				exists, err := users.any()
				if err != nil {
					return err
				}
				if exists {
					return mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
				}
				return nil
			}
		}
	}
	creds, err := newCredentials(user, pwd, mechs)
	if err != nil {
		return nil, err
	}
	d := &userDoc{User: user, DB: req.DB, Credentials: creds, Roles: roles}
	if custom != nil {
		d.CustomData = append(bson.Raw(nil), custom...)
	}
	if err := authOf(h).users.create(d, precondition); err != nil {
		return nil, err
	}
	if precondition != nil {
		h.log.Info("created the first user through the localhost exception", "user", user, "db", req.DB)
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// updateUser {updateUser: name, pwd?, roles?, mechanisms?, customData?}.
// Needs userAdmin on the user's database (and on the databases of new
// roles). A new password replaces every credential; mechanisms alone
// restricts the user to a subset of its current ones.
func (h *Handler) updateUser(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	user, err := a.string("updateUser")
	if err != nil {
		return nil, err
	}
	if err := validateUserTarget(req.DB, user); err != nil {
		return nil, err
	}
	var roles []Role
	setRoles := a.has("roles")
	if setRoles {
		if roles, err = parseRoles(a, req.DB); err != nil {
			return nil, err
		}
	}
	mechs, err := parseMechanisms(a)
	if err != nil {
		return nil, err
	}
	if err := checkDigestPassword(a); err != nil {
		return nil, err
	}
	var pwd *string
	if pv, ok := a.value("pwd"); ok {
		s, ok := pv.StringValueOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'updateUser.pwd' is the wrong type '%s', expected type 'string'", typeName(pv.Type))
		}
		pwd = &s
	}
	custom, err := a.doc("customData")
	if err != nil {
		return nil, err
	}
	if pwd == nil && !setRoles && mechs == nil && custom == nil {
		return nil, mongoerr.New(mongoerr.BadValue, "Must specify at least one field to update in updateUser")
	}
	if h.opts.AuthRequired {
		if _, ok := c.Authenticated(); !ok {
			return nil, mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
		}
		if err := h.authorizeUserAdmin(c, req, roles); err != nil {
			return nil, err
		}
	}
	var creds *auth.Credentials
	if pwd != nil {
		cr, err := newCredentials(user, *pwd, mechs)
		if err != nil {
			return nil, err
		}
		creds = &cr
	}
	err = authOf(h).users.update(req.DB, user, func(d *userDoc) error {
		switch {
		case creds != nil:
			d.Credentials = *creds
		case mechs != nil:
			var kept auth.Credentials
			for _, m := range mechs {
				sc, ok := d.Credentials.For(m)
				if !ok {
					return mongoerr.New(mongoerr.BadValue, "mechanisms field must be a subset of previously set mechanisms")
				}
				if m == auth.SCRAMSHA1 {
					kept.SHA1 = &sc
				} else {
					kept.SHA256 = &sc
				}
			}
			d.Credentials = kept
		}
		if setRoles {
			d.Roles = roles
		}
		if custom != nil {
			d.CustomData = append(bson.Raw(nil), custom...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// authorizeUserAdmin checks the connection's user has userAdmin on the
// command's database and on the database of every role it grants.
func (h *Handler) authorizeUserAdmin(c *wire.ConnState, req *wire.Request, grants []Role) error {
	if !h.opts.AuthRequired {
		return nil
	}
	p, ok := c.Authenticated()
	if !ok {
		return mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
	}
	roles, err := authOf(h).users.rolesOf(p)
	if err != nil {
		return err
	}
	if !allows(roles, privUserAdmin, req.DB) {
		return notAuthorized(req.DB, req.Name)
	}
	for _, g := range grants {
		if !allows(roles, privUserAdmin, g.DB) {
			return notAuthorized(g.DB, req.Name)
		}
	}
	return nil
}

// validateUserTarget checks a user name and its database.
func validateUserTarget(db, user string) error {
	if db == "$external" {
		return mongoerr.New(mongoerr.NotImplemented, "users in $external (LDAP, X.509, Kerberos) are not supported")
	}
	if err := validateDBName(db); err != nil {
		return err
	}
	return validateUserName(user)
}

func validateUserName(user string) error {
	if user == "" {
		return mongoerr.New(mongoerr.BadValue, "User name must be non-empty")
	}
	if strings.IndexByte(user, 0) >= 0 {
		return mongoerr.New(mongoerr.BadValue, "User name must not contain NUL bytes")
	}
	if len(user) > 1024 {
		return mongoerr.New(mongoerr.BadValue, "User name is too long")
	}
	return nil
}

// parseRoles reads the roles array: "name" (a role on db) or {role, db}.
func parseRoles(a args, db string) ([]Role, error) {
	vals, err := a.array("roles")
	if err != nil {
		return nil, err
	}
	roles := make([]Role, 0, len(vals))
	for _, v := range vals {
		var r Role
		switch v.Type {
		case bson.TypeString:
			r = Role{Role: v.StringValue(), DB: db}
		case bson.TypeEmbeddedDocument:
			d := v.Document()
			name, ok1 := d.Lookup("role").StringValueOK()
			rdb, ok2 := d.Lookup("db").StringValueOK()
			if !ok1 || !ok2 {
				return nil, mongoerr.New(mongoerr.BadValue, "Role documents must have string 'role' and 'db' fields")
			}
			r = Role{Role: name, DB: rdb}
		default:
			return nil, mongoerr.New(mongoerr.BadValue, "Role names must be either strings or objects")
		}
		dup := false
		for _, have := range roles {
			dup = dup || have == r
		}
		if !dup {
			roles = append(roles, r)
		}
	}
	if err := validateRoles(roles); err != nil {
		return nil, err
	}
	return roles, nil
}

// parseMechanisms reads the optional mechanisms array; nil means absent.
func parseMechanisms(a args) ([]auth.Mechanism, error) {
	if !a.has("mechanisms") {
		return nil, nil
	}
	vals, err := a.array("mechanisms")
	if err != nil {
		return nil, err
	}
	if len(vals) == 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "mechanisms field must not be empty")
	}
	var out []auth.Mechanism
	for _, v := range vals {
		s, ok := v.StringValueOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.BadValue, "mechanisms must be strings")
		}
		m := auth.Mechanism(s)
		if m != auth.SCRAMSHA1 && m != auth.SCRAMSHA256 {
			return nil, mongoerr.New(mongoerr.BadValue, "Unknown auth mechanism '%s'", s)
		}
		out = append(out, m)
	}
	return out, nil
}

// checkDigestPassword refuses digestPassword: false: it means the client
// sends a pre-hashed SCRAM-SHA-1 password, which SCRAM-SHA-256 cannot use.
func checkDigestPassword(a args) error {
	if !a.has("digestPassword") {
		return nil
	}
	digest, err := a.bool("digestPassword", true)
	if err != nil {
		return err
	}
	if !digest {
		return mongoerr.New(mongoerr.BadValue, "Use of SCRAM-SHA-256 requires undigested passwords")
	}
	return nil
}

// newCredentials derives a user's SCRAM keys. Errors never quote the
// password.
func newCredentials(user, pwd string, mechs []auth.Mechanism) (auth.Credentials, error) {
	if pwd == "" {
		return auth.Credentials{}, mongoerr.New(mongoerr.BadValue, "Password cannot be empty")
	}
	creds, err := auth.NewCredentials(user, pwd, mechs...)
	switch {
	case errors.Is(err, auth.ErrInvalidPassword):
		return auth.Credentials{}, mongoerr.New(mongoerr.BadValue, "Password is not valid: SASLprep rejects it")
	case errors.Is(err, auth.ErrUnsupportedMechanism):
		return auth.Credentials{}, mongoerr.New(mongoerr.BadValue, "Unsupported authentication mechanism")
	case err != nil:
		return auth.Credentials{}, mongoerr.New(mongoerr.InternalError, "deriving credentials failed")
	}
	return creds, nil
}
