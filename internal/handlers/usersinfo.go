package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// usersInfo {usersInfo: 1 | "name" | {user, db} | [...] | {forAllDBs: true}, filter?}.
//
// It never returns stored credentials: showCredentials: true is refused
// (mongod would return the salted SCRAM keys, which are enough for an
// offline dictionary attack on the passwords). When auth is required, a
// user may always see itself; other users need userAdmin on their
// database (forAllDBs: userAdminAnyDatabase or root).
func (h *Handler) usersInfo(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if show, err := a.bool("showCredentials", false); err != nil {
		return nil, err
	} else if show {
		return nil, mongoerr.New(mongoerr.IllegalOperation, "usersInfo: showCredentials is not supported: cmkdb never returns stored credentials")
	}
	if err := validateDBName(req.DB); err != nil {
		return nil, err
	}
	filter, err := a.doc("filter")
	if err != nil {
		return nil, err
	}
	m, err := query.Compile(filter)
	if err != nil {
		return nil, err
	}
	type target struct{ db, user string } // user "" = every user of db; db "" = every database
	var targets []target
	parseOne := func(v bson.RawValue) error {
		switch v.Type {
		case bson.TypeString:
			targets = append(targets, target{req.DB, v.StringValue()})
		case bson.TypeEmbeddedDocument:
			d := v.Document()
			if all, ok := d.Lookup("forAllDBs").BooleanOK(); ok && all {
				targets = append(targets, target{})
				return nil
			}
			u, ok1 := d.Lookup("user").StringValueOK()
			db, ok2 := d.Lookup("db").StringValueOK()
			if !ok1 || !ok2 {
				return mongoerr.New(mongoerr.BadValue, "User name must contain a string 'user' and 'db' field")
			}
			targets = append(targets, target{db, u})
		default:
			return mongoerr.New(mongoerr.BadValue, "User name must be either a string or an object")
		}
		return nil
	}
	v, _ := a.value("usersInfo")
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble:
		targets = append(targets, target{req.DB, ""})
	case bson.TypeArray:
		vals, _ := v.Array().Values()
		for _, e := range vals {
			if err := parseOne(e); err != nil {
				return nil, err
			}
		}
	default:
		if err := parseOne(v); err != nil {
			return nil, err
		}
	}
	if h.opts.AuthRequired {
		p, ok := c.Authenticated()
		if !ok {
			return nil, mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
		}
		roles, err := authOf(h).users.rolesOf(p)
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			if t.user != "" && t.db == p.DB && t.user == p.User {
				continue
			}
			if !allows(roles, privUserAdmin, t.db) {
				db := t.db
				if db == "" {
					db = usersDB
				}
				return nil, notAuthorized(db, req.Name)
			}
		}
	}
	docs, err := authOf(h).users.list(func(d *userDoc) bool {
		for _, t := range targets {
			if (t.db == "" || t.db == d.DB) && (t.user == "" || t.user == d.User) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	out := bson.A{}
	for _, d := range docs {
		roles := bson.A{}
		for _, r := range d.Roles {
			roles = append(roles, bson.D{{Key: "role", Value: r.Role}, {Key: "db", Value: r.DB}})
		}
		mechs := bson.A{}
		for _, m := range d.Credentials.Mechanisms() {
			mechs = append(mechs, string(m))
		}
		info := bson.D{
			{Key: "_id", Value: d.ID},
			{Key: "userId", Value: d.UserID},
			{Key: "user", Value: d.User},
			{Key: "db", Value: d.DB},
		}
		if d.CustomData != nil {
			info = append(info, bson.E{Key: "customData", Value: d.CustomData})
		}
		info = append(info,
			bson.E{Key: "roles", Value: roles},
			bson.E{Key: "mechanisms", Value: mechs})
		raw, err := bson.Marshal(info)
		if err != nil {
			return nil, err
		}
		if m.Match(raw) {
			out = append(out, info)
		}
	}
	return marshal(bson.D{{Key: "users", Value: out}, {Key: "ok", Value: 1.0}})
}
