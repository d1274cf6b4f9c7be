package handlers

import (
	"context"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// _mergeAuthzCollections is mongod's internal command for mongorestore:
// mongorestore inserts the dumped admin.system.users documents into a
// temporary collection (tempUsersCollection, "admin.tempusers"), then asks
// the server to merge them into its users:
//
//	{_mergeAuthzCollections: 1, tempUsersCollection, tempRolesCollection,
//	 drop: bool, db: "<db>" ("" for every database)}
//
// Each temporary user (of db, or of every database) that does not exist
// is created with its stored SCRAM keys — the password never travels; one
// that exists is replaced when drop is true and left as it is otherwise;
// with drop, the users of db (every database) that the temporary
// collection does not hold are dropped. cmkdb has only built-in roles: a
// temporary roles collection holding any role is refused (238) before
// anything changes.
func (h *Handler) mergeAuthzCollections(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	tempUsers, err := a.string("tempUsersCollection")
	if err != nil {
		return nil, err
	}
	tempRoles, err := a.string("tempRolesCollection")
	if err != nil {
		return nil, err
	}
	drop, err := a.bool("drop", false)
	if err != nil {
		return nil, err
	}
	db, err := a.string("db")
	if err != nil {
		return nil, err
	}
	if tempUsers == "" && tempRoles == "" {
		return nil, mongoerr.New(mongoerr.BadValue, "Must provide at least one of \"tempUsersCollection\" and \"tempRolescollection\"")
	}
	if tempRoles != "" {
		roles, err := h.tempDocs(ctx, tempRoles)
		if err != nil {
			return nil, err
		}
		if len(roles) > 0 {
			return nil, mongoerr.New(mongoerr.NotImplemented, "user-defined roles are not supported: %s holds %d roles", tempRoles, len(roles))
		}
	}
	if tempUsers == "" {
		return marshal(bson.D{{Key: "ok", Value: 1.0}})
	}
	raws, err := h.tempDocs(ctx, tempUsers)
	if err != nil {
		return nil, err
	}
	// Every document is checked before any user changes.
	var users []*userDoc
	keep := map[string]bool{}
	for _, raw := range raws {
		var d userDoc
		if err := bson.Unmarshal(raw, &d); err != nil {
			return nil, mongoerr.New(mongoerr.FailedToParse, "a user document of %s does not parse: %v", tempUsers, err)
		}
		switch {
		case d.User == "" || d.DB == "":
			return nil, mongoerr.New(mongoerr.NoSuchKey, "a user document of %s has no user or db", tempUsers)
		case d.ID != userID(d.DB, d.User):
			return nil, mongoerr.New(mongoerr.BadValue, "user document %q does not match its user %s@%s", d.ID, d.User, d.DB)
		case d.Credentials.SHA1 == nil && d.Credentials.SHA256 == nil:
			return nil, mongoerr.New(mongoerr.BadValue, "user %s@%s has no SCRAM credentials", d.User, d.DB)
		}
		if err := validateDBName(d.DB); err != nil {
			return nil, err
		}
		if err := validateRoles(d.Roles); err != nil {
			return nil, err
		}
		if db != "" && d.DB != db {
			continue
		}
		keep[d.ID] = true
		users = append(users, &d)
	}
	s := authOf(h).users
	if drop {
		existing, err := s.list(func(d *userDoc) bool { return (db == "" || d.DB == db) && !keep[d.ID] })
		if err != nil {
			return nil, err
		}
		for _, d := range existing {
			if _, err := s.drop(d.DB, d.User); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range users {
		_, err := s.get(d.DB, d.User)
		switch {
		case err == nil && drop:
			err = s.update(d.DB, d.User, func(old *userDoc) error {
				old.Credentials, old.Roles, old.CustomData = d.Credentials, d.Roles, d.CustomData
				return nil
			})
		case err == nil:
			// Without drop, an existing user stays as it is.
		default:
			err = s.create(d, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// tempDocs reads every document of a temporary collection named by its
// namespace ("admin.tempusers"); a missing one has none.
func (h *Handler) tempDocs(ctx context.Context, ns string) ([]bson.Raw, error) {
	db, coll, ok := strings.Cut(ns, ".")
	if !ok || db == "" || coll == "" {
		return nil, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace %q", ns)
	}
	if db == usersDB && coll == usersColl {
		return nil, mongoerr.New(mongoerr.BadValue, "the temporary collection cannot be %s", ns)
	}
	st, release, err := h.store(db, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if st == nil {
		return nil, nil
	}
	c := st.Collection(coll)
	if c == nil {
		return nil, nil
	}
	var out []bson.Raw
	err = st.Scan(ctx, c, docstore.Plan{}, &docstore.Position{}, func(d bson.Raw) (bool, error) {
		out = append(out, append(bson.Raw(nil), d...))
		return true, nil
	})
	return out, err
}
