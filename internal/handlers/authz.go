package handlers

import (
	"net"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Authorization, when Options.AuthRequired is set.
//
// Every command's entry in the command table (commands.go) names the
// privilege it needs on a database, which Handle checks:
//
//	read       find, getMore, count, distinct, aggregate, listCollections, listIndexes, ...
//	write      insert, update, delete, findAndModify, create, drop, createIndexes, dropIndexes, ...
//	dbAdmin    dropDatabase, collMod, compact, validate
//	userAdmin  createUser, updateUser, dropUser, usersInfo (of other users)
//	cluster    serverStatus, hostInfo, getCmdLineOpts, getLog, currentOp, ...
//
// Commands any authenticated user may run (connectionStatus, listDatabases,
// listCommands, ...) need no role; the public ones (handshake, SASL) need no
// authentication at all.
//
// The built-in roles grant:
//
//	root                                 everything, on every database
//	readWriteAnyDatabase / readAnyDatabase   read+write / read on every database (admin only)
//	dbAdminAnyDatabase / userAdminAnyDatabase dbAdmin / userAdmin on every database (admin only)
//	clusterMonitor, clusterAdmin         cluster (admin only)
//	dbOwner                              read, write, dbAdmin, userAdmin on its database
//	readWrite / read / dbAdmin / userAdmin   that privilege on its database (readWrite also read)
//
// Independently of authentication, admin.system.users cannot be named by
// any data command (not even by root, not even with auth off): users are
// managed and read only through the user commands, which never return the
// stored keys.
type privilege uint8

// privRoot is the zero value: a table entry that names no privilege is
// closed to everyone but root until someone classifies it.
const (
	privRoot      privilege = iota // only root
	privNone                       // any authenticated user
	privRead                       // read data on the database
	privWrite                      // modify data on the database
	privDBAdmin                    // administer the database
	privUserAdmin                  // manage the database's users
	privCluster                    // server-wide diagnostics and administration
	privSelf                       // the command authorizes itself (user commands)
)

// anyDatabaseRoles exist only on admin and apply to every database.
var anyDatabaseRoles = map[string][]privilege{
	"root":                 {privRead, privWrite, privDBAdmin, privUserAdmin, privCluster, privRoot},
	"readWriteAnyDatabase": {privRead, privWrite},
	"readAnyDatabase":      {privRead},
	"dbAdminAnyDatabase":   {privDBAdmin},
	"userAdminAnyDatabase": {privUserAdmin},
	"clusterMonitor":       {privCluster},
	"clusterAdmin":         {privCluster},
}

// databaseRoles apply to the database they are granted on.
var databaseRoles = map[string][]privilege{
	"dbOwner":   {privRead, privWrite, privDBAdmin, privUserAdmin},
	"readWrite": {privRead, privWrite},
	"read":      {privRead},
	"dbAdmin":   {privDBAdmin},
	"userAdmin": {privUserAdmin},
}

// validateRoles checks every role exists on its database.
func validateRoles(roles []Role) error {
	for _, r := range roles {
		if r.DB == "" {
			return mongoerr.New(mongoerr.BadValue, "role %q has no database", r.Role)
		}
		if _, ok := databaseRoles[r.Role]; ok {
			if err := validateDBName(r.DB); err != nil {
				return err
			}
			continue
		}
		if _, ok := anyDatabaseRoles[r.Role]; ok && r.DB == usersDB {
			continue
		}
		return mongoerr.New(roleNotFound, "Could not find role: %s@%s", r.Role, r.DB)
	}
	return nil
}

// allows reports whether roles grant p on database db.
func allows(roles []Role, p privilege, db string) bool {
	for _, r := range roles {
		if r.DB == usersDB {
			for _, q := range anyDatabaseRoles[r.Role] {
				if q == p {
					return true
				}
			}
		}
		if r.DB == db && p != privCluster && p != privRoot {
			for _, q := range databaseRoles[r.Role] {
				if q == p {
					return true
				}
			}
		}
	}
	return false
}

// guard applies the system.users protection and, when auth is required,
// the authorization check, before cmd runs. It returns what must run once
// the command ended (nil if nothing).
func (h *Handler) guard(cmd *command, c *wire.ConnState, req *wire.Request) (after func(), err error) {
	if err := guardSystemUsers(cmd.name, req, h.mayReadUsers(c)); err != nil {
		return nil, err
	}
	if h.opts.AuthRequired && !cmd.public && cmd.priv != privSelf {
		if err := h.authorize(c, cmd.name, req, cmd.priv); err != nil {
			return nil, err
		}
	}
	if cmd.name == "dropDatabase" && req.DB == usersDB {
		// Dropping admin drops every user behind the user store's back.
		return authOf(h).users.invalidate, nil
	}
	return nil, nil
}

// authorize checks the connection's user may run the command.
func (h *Handler) authorize(c *wire.ConnState, name string, req *wire.Request, priv privilege) error {
	p, ok := c.Authenticated()
	if !ok {
		return mongoerr.New(mongoerr.Unauthorized, "Command %s requires authentication", req.Name)
	}
	if priv == privNone {
		return nil
	}
	roles, err := authOf(h).users.rolesOf(p)
	if err != nil {
		return err
	}
	for _, need := range h.needs(name, req, priv) {
		if !allows(roles, need.priv, need.db) {
			return notAuthorized(need.db, req.Name)
		}
	}
	return nil
}

func notAuthorized(db, cmd string) error {
	return mongoerr.New(mongoerr.Unauthorized, "not authorized on %s to execute command %s", db, cmd)
}

type need struct {
	priv privilege
	db   string
}

// needs lists what a command requires: its privilege on its database, and
// for the commands that reach other databases or write from a read
// command, those too.
func (h *Handler) needs(name string, req *wire.Request, priv privilege) []need {
	out := []need{{priv, req.DB}}
	switch name {
	case "aggregate":
		if ownOpsPipeline(req) {
			// $currentOp needs no privilege for the user's own operations
			// (allUsers: true is checked by the stage: cluster privilege).
			out = out[:0]
		}
		if out2 := pipelineWrites(req); out2 != nil {
			out = append(out, out2...)
		}
	case "explain":
		if inner, ok := req.Command.Lookup("explain").DocumentOK(); ok {
			if e, err := inner.IndexErr(0); err == nil {
				ip := privRead
				if inner, known := h.commands.lookup(e.Key()); known && !inner.public && inner.priv != privSelf && inner.priv != privNone {
					ip = inner.priv
				}
				out = []need{{ip, req.DB}}
			}
		}
	case "renameCollection":
		out = out[:0]
		for _, key := range []string{"renameCollection", "to"} {
			if ns, ok := req.Command.Lookup(key).StringValueOK(); ok {
				db, _, _ := strings.Cut(ns, ".")
				out = append(out, need{privWrite, db})
			}
		}
		if len(out) == 0 {
			out = append(out, need{privWrite, req.DB})
		}
	case "dataSize", "datasize":
		// The namespace names its own database: read is needed there.
		if ns, ok := req.Command.Lookup(name).StringValueOK(); ok {
			if db, _, _ := strings.Cut(ns, "."); db != req.DB {
				out = append(out, need{privRead, db})
			}
		}
	case "bulkWrite":
		if arr, ok := req.Command.Lookup("nsInfo").ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				if d, ok := v.DocumentOK(); ok {
					if ns, ok := d.Lookup("ns").StringValueOK(); ok {
						db, _, _ := strings.Cut(ns, ".")
						out = append(out, need{privWrite, db})
					}
				}
			}
		}
	}
	return out
}

// pipelineWrites returns the write privileges an aggregate's $out or
// $merge stage needs.
func pipelineWrites(req *wire.Request) []need {
	arr, ok := req.Command.Lookup("pipeline").ArrayOK()
	if !ok {
		return nil
	}
	vals, _ := arr.Values()
	var out []need
	for _, v := range vals {
		stage, ok := v.DocumentOK()
		if !ok {
			continue
		}
		if sv, err := stage.LookupErr("$out"); err == nil {
			db := req.DB
			if d, ok := sv.DocumentOK(); ok {
				if s, ok := d.Lookup("db").StringValueOK(); ok {
					db = s
				}
			}
			out = append(out, need{privWrite, db})
		}
		if sv, err := stage.LookupErr("$merge"); err == nil {
			db := req.DB
			if d, ok := sv.DocumentOK(); ok {
				if into, ok := d.Lookup("into").DocumentOK(); ok {
					if s, ok := into.Lookup("db").StringValueOK(); ok {
						db = s
					}
				}
			}
			out = append(out, need{privWrite, db})
		}
	}
	return out
}

// mayReadUsers reports whether the connection may read admin.system.users
// directly, as backup tools do (mongodump): without authentication, as a
// mongod without it, or as a user administrator of every database (root,
// userAdminAnyDatabase). The documents hold only salted SCRAM keys.
func (h *Handler) mayReadUsers(c *wire.ConnState) bool {
	if !h.opts.AuthRequired {
		return true
	}
	p, ok := c.Authenticated()
	if !ok {
		return false
	}
	roles, err := authOf(h).users.rolesOf(p)
	return err == nil && allows(roles, privUserAdmin, usersDB)
}

// usersReadCommands may read admin.system.users when mayReadUsers.
var usersReadCommands = map[string]bool{"find": true, "count": true, "getMore": true, "listIndexes": true, "collStats": true, "killCursors": true}

// guardSystemUsers refuses data commands that name admin.system.users,
// but for reads by those who may read it.
func guardSystemUsers(name string, req *wire.Request, mayRead bool) error {
	if mayRead && usersReadCommands[name] {
		return nil
	}
	refuse := func() error {
		return mongoerr.New(mongoerr.Unauthorized,
			"not authorized on admin to execute command %s on system.users: users are managed with createUser, updateUser, dropUser and usersInfo", req.Name)
	}
	isUsers := func(db, coll string) bool { return db == usersDB && coll == usersColl }
	switch name {
	case "renameCollection":
		for _, key := range []string{"renameCollection", "to"} {
			if ns, ok := req.Command.Lookup(key).StringValueOK(); ok {
				if db, coll, _ := strings.Cut(ns, "."); isUsers(db, coll) {
					return refuse()
				}
			}
		}
		return nil
	case "bulkWrite":
		if arr, ok := req.Command.Lookup("nsInfo").ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				if d, ok := v.DocumentOK(); ok {
					if ns, ok := d.Lookup("ns").StringValueOK(); ok {
						if db, coll, _ := strings.Cut(ns, "."); isUsers(db, coll) {
							return refuse()
						}
					}
				}
			}
		}
		return nil
	}
	if req.DB != usersDB {
		// $out/$merge/$lookup into admin from another database.
		if name == "aggregate" || name == "explain" {
			if mentionsUsersNS(req.Command, false) {
				return refuse()
			}
		}
		return nil
	}
	if e, err := req.Command.IndexErr(0); err == nil {
		if s, ok := e.Value().StringValueOK(); ok && s == usersColl {
			return refuse()
		}
	}
	if s, ok := req.Command.Lookup("collection").StringValueOK(); ok && s == usersColl {
		return refuse() // getMore
	}
	if name == "aggregate" || name == "explain" {
		if mentionsUsersNS(req.Command, true) {
			return refuse()
		}
	}
	return nil
}

// mentionsUsersNS reports whether a document (a pipeline, an explained
// command) names system.users anywhere: as a collection when inAdmin, or
// as a {db: "admin", coll: "system.users"} pair from any database.
func mentionsUsersNS(doc bson.Raw, inAdmin bool) bool {
	elems, err := doc.Elements()
	if err != nil {
		return false
	}
	hasAdmin, hasUsers := false, false
	for _, e := range elems {
		v := e.Value()
		switch v.Type {
		case bson.TypeString:
			s := v.StringValue()
			if s == usersColl || s == usersDB+"."+usersColl {
				if inAdmin || s != usersColl {
					return true
				}
				hasUsers = true
			}
			if s == usersDB {
				hasAdmin = true
			}
		case bson.TypeEmbeddedDocument, bson.TypeArray:
			if mentionsUsersNS(v.Value, inAdmin) {
				return true
			}
		}
	}
	return hasAdmin && hasUsers
}

// isLoopback reports whether the client connected from this machine.
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	if addr == nil {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ownOpsPipeline reports whether an aggregate's pipeline opens with
// $currentOp and reads no collection (no $lookup, $graphLookup or
// $unionWith): it then needs no privilege of its own.
func ownOpsPipeline(req *wire.Request) bool {
	a := newArgs(req.Command)
	if !opensWith(a, "$currentOp") {
		return false
	}
	arr, _ := req.Command.Lookup("pipeline").ArrayOK()
	vals, _ := arr.Values()
	for _, v := range vals {
		if st, ok := v.DocumentOK(); ok {
			for _, stage := range []string{"$lookup", "$graphLookup", "$unionWith", "$facet"} {
				if _, err := st.LookupErr(stage); err == nil {
					return false
				}
			}
		}
	}
	return true
}
