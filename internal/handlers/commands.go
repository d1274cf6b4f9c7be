package handlers

import (
	"context"
	"sort"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/auth"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// command is everything the server knows about one command. The table
// below (commandTable) is the only place a command is described: adding a
// command is adding an entry, and dispatch (Handle), authentication,
// authorization, the DISABLED refusal, writeConcern acceptance and
// listCommands all read it.
type command struct {
	name    string
	handler wire.HandlerFunc
	// aliases are other spellings mongod accepts for the command.
	aliases []string
	// public commands run without authentication (the handshake, SASL,
	// and createUser for the localhost exception).
	public bool
	// priv is the privilege the command needs on its database when auth is
	// on (authz.go); privSelf commands authorize themselves. Left out, it
	// is privRoot: a new command is closed until it is classified.
	priv privilege
	// whileDisabled commands touch no data, so they answer while the node
	// is DISABLED; every other command is refused then with KeyUnavailable.
	whileDisabled bool
	// writeConcern commands accept a writeConcern argument; any other
	// command given one fails with InvalidOptions, as in mongod.
	writeConcern bool
	// cursorTime: the command's time limit is the cursor's remaining
	// maxTimeMS (getMore), not a maxTimeMS of its own.
	cursorTime bool
	// adminOnly commands run only against the admin database.
	adminOnly bool
	// rs is how the command behaves on a replica set member that is not
	// the primary (replset.go).
	rs   rsRole
	help string
}

// commandTable lists every command h serves.
func (h *Handler) commandTable(authn *auth.Authenticator) []*command {
	table := []*command{
		// Handshake and diagnostics.
		{name: "hello", handler: h.hello, aliases: []string{"isMaster", "ismaster"}, public: true, whileDisabled: true,
			help: "the server's role, limits and wire versions (the driver handshake)"},
		{name: "ping", handler: h.ping, public: true, whileDisabled: true, help: "a no-op: is the server answering"},
		{name: "buildInfo", handler: h.buildInfo, aliases: []string{"buildinfo"}, public: true, whileDisabled: true,
			help: "the server's version and build"},
		{name: "whatsmyuri", handler: h.whatsmyuri, public: true, whileDisabled: true, help: "the client's address as the server sees it"},
		{name: "endSessions", handler: h.endSessions, public: true, whileDisabled: true, help: "forget logical sessions (and abort their open transactions)"},
		{name: "killSessions", handler: h.killSessions, priv: privNone, whileDisabled: true, help: "end sessions now: abort their transactions, kill their cursors"},
		{name: "killAllSessions", handler: h.killAllSessions, priv: privCluster, whileDisabled: true, help: "end every session now: abort every transaction, kill every cursor opened in a session"},
		{name: "listCommands", handler: h.listCommands, priv: privNone, whileDisabled: true, help: "the commands this server serves"},
		{name: "connectionStatus", handler: h.connectionStatus, priv: privNone, whileDisabled: true, help: "the connection's authenticated users and roles"},
		{name: "hostInfo", handler: h.hostInfo, priv: privCluster, whileDisabled: true, help: "the host's name and system"},
		{name: "getCmdLineOpts", handler: h.getCmdLineOpts, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "the server's command line"},
		{name: "getLog", handler: h.getLog, priv: privCluster, whileDisabled: true, adminOnly: true, help: "recent log lines (none are kept)"},
		{name: "getParameter", handler: h.getParameter, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "server parameters"},
		{name: "setParameter", handler: h.setParameter, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "change server parameters at runtime: ttlMonitorSleepSecs, ttlMonitorEnabled"},
		{name: "fsync", handler: h.fsync, priv: privCluster, adminOnly: true,
			help: "flush every open database's memtable to synced sstables; lock: true is refused"},
		{name: "fsyncUnlock", handler: h.fsyncUnlock, priv: privCluster, adminOnly: true, whileDisabled: true,
			help: "refused as when not locked: cmkdb never takes an fsync lock"},
		{name: "currentOp", handler: h.currentOp, priv: privSelf, whileDisabled: true, adminOnly: true,
			help: "the operations in progress on this node ($ownOps: the user's own; $all: idle connections too; other fields filter)"},
		{name: "killOp", handler: h.killOp, priv: privSelf, whileDisabled: true, adminOnly: true,
			help: "interrupt an operation in progress: {killOp: 1, op: <opid>}; it fails with 11601 Interrupted"},
		{name: "serverStatus", handler: h.serverStatus, priv: privCluster, whileDisabled: true,
			help: "server state, including encryptionAtRest: the node's key state and key ids, never key bytes"},

		// Replica sets.
		{name: "replSetGetStatus", handler: h.replSetGetStatus, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "the replica set's members and their states, as this member sees them"},
		{name: "replSetGetConfig", handler: h.replSetGetConfig, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "the replica set's configuration"},
		{name: "replSetStepDown", handler: h.replSetStepDown, priv: privCluster, adminOnly: true,
			help: "hand the primary's role to the most caught-up secondary"},
		{name: "replSetResizeOplog", handler: h.replSetResizeOplog, priv: privCluster, adminOnly: true, help: "change this member's oplog size (kept in its node.json)"},
		{name: "replSetInitiate", handler: h.replSetUnsupported, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "refused: a cmkdb replica set is initiated by its members' configuration"},
		{name: "replSetReconfig", handler: h.replSetUnsupported, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "refused: a cmkdb replica set's members are fixed by their configuration files"},
		{name: "cmkdbAddMember", handler: h.cmkdbAddMember, priv: privCluster, adminOnly: true,
			help: "cmkdb: add a member (name, host, raftAddr) as a non-voter; it is promoted once its initial sync caught up"},
		{name: "cmkdbCheckpoint", handler: h.cmkdbCheckpoint, priv: privCluster, adminOnly: true,
			help: "cmkdb: write a snapshot of this node into its snapshot store (the control plane's backups)"},
		{name: "_mergeAuthzCollections", handler: h.mergeAuthzCollections, priv: privRoot, adminOnly: true, writeConcern: true,
			help: "internal (mongorestore): merge users from a temporary collection into admin.system.users"},
		{name: "cmkdbArchiveOplog", handler: h.cmkdbArchiveOplog, priv: privCluster, adminOnly: true,
			help: "cmkdb: copy the log entries applied since the last run into the cluster's oplog archive (point-in-time restores)"},
		{name: "cmkdbRestore", handler: h.cmkdbRestore, priv: privCluster, adminOnly: true,
			help: "cmkdb: replace the replica set's data with a snapshot, then replay the oplog archive to a point in time"},
		{name: "cmkdbRemoveMember", handler: h.cmkdbRemoveMember, priv: privCluster, adminOnly: true,
			help: "cmkdb: remove a member from the replica set (the primary steps down first)"},
		{name: "replSetFreeze", handler: h.replSetUnsupported, priv: privCluster, whileDisabled: true, adminOnly: true,
			help: "refused: raft elections cannot be frozen per member"},

		// Reads.
		{name: "find", rs: rsRead, handler: h.find, priv: privRead, help: "query a collection; returns a cursor"},
		{name: "getMore", handler: h.getMore, priv: privRead, cursorTime: true, help: "the next batch of a cursor"},
		{name: "killCursors", handler: h.killCursors, priv: privRead, whileDisabled: true, help: "close cursors"},
		{name: "count", rs: rsRead, handler: h.count, priv: privRead, help: "count the documents matching a query"},
		{name: "distinct", rs: rsRead, handler: h.distinct, priv: privRead, help: "the distinct values of a field"},
		{name: "aggregate", rs: rsRead, handler: h.aggregate, priv: privRead, writeConcern: true,
			help: "run an aggregation pipeline; returns a cursor"},
		{name: "explain", rs: rsRead, handler: h.explain, priv: privRead, help: "the plan of a find, count, distinct, update, delete or aggregate"},
		{name: "listDatabases", handler: h.listDatabases, priv: privNone, adminOnly: true, help: "the node's databases"},
		{name: "listCollections", rs: rsRead, handler: h.listCollections, priv: privRead, help: "a database's collections"},
		{name: "dbStats", rs: rsRead, handler: h.dbStats, aliases: []string{"dbstats"}, priv: privRead,
			help: "a database's collections, documents and sizes (from storage)"},
		{name: "collStats", rs: rsRead, handler: h.collStats, aliases: []string{"collstats"}, priv: privRead,
			help: "a collection's documents and sizes (from storage)"},
		{name: "dataSize", rs: rsRead, handler: h.dataSize, aliases: []string{"datasize"}, priv: privRead,
			help: "the BSON size of a collection's documents, or of a key range of them: {dataSize: \"db.coll\", keyPattern, min, max}"},
		{name: "validate", rs: rsRead, handler: h.validate, priv: privDBAdmin,
			help: "check a collection's documents and index entries against each other"},
		{name: "listIndexes", rs: rsRead, handler: h.listIndexes, priv: privRead, help: "a collection's indexes"},

		// Writes.
		{name: "insert", rs: rsWrite, handler: h.insert, priv: privWrite, writeConcern: true, help: "insert documents"},
		{name: "update", rs: rsWrite, handler: h.update, priv: privWrite, writeConcern: true, help: "update documents"},
		{name: "delete", rs: rsWrite, handler: h.delete, priv: privWrite, writeConcern: true, help: "delete documents"},
		{name: "findAndModify", rs: rsWrite, handler: h.findAndModify, aliases: []string{"findandmodify"}, priv: privWrite, writeConcern: true,
			help: "update or remove one document and return it"},
		{name: "create", rs: rsWrite, handler: h.create, priv: privWrite, writeConcern: true, help: "create a collection"},
		{name: "collMod", rs: rsWrite, handler: h.collMod, priv: privWrite, writeConcern: true, help: "change a collection's validator, validation level or validation action"},
		{name: "drop", rs: rsWrite, handler: h.drop, priv: privWrite, writeConcern: true, help: "drop a collection"},
		{name: "renameCollection", rs: rsWrite, handler: h.renameCollection, priv: privWrite, writeConcern: true, adminOnly: true,
			help: "rename a collection"},
		{name: "createIndexes", rs: rsWrite, handler: h.createIndexes, priv: privWrite, writeConcern: true, help: "build indexes"},
		{name: "dropIndexes", rs: rsWrite, handler: h.dropIndexes, aliases: []string{"deleteIndexes"}, priv: privWrite, writeConcern: true,
			help: "drop indexes"},
		{name: "dropDatabase", rs: rsWrite, handler: h.dropDatabase, priv: privDBAdmin, writeConcern: true,
			help: "drop a database: its key is destroyed, so every file it wrote becomes unreadable"},

		// Transactions: refused until replica sets exist, as a standalone
		// mongod refuses them (see session.go).
		{name: "commitTransaction", handler: h.refuseTransaction, priv: privNone, adminOnly: true, writeConcern: true, whileDisabled: true,
			help: "refused: transactions need a replica set"},
		{name: "abortTransaction", handler: h.refuseTransaction, priv: privNone, adminOnly: true, writeConcern: true, whileDisabled: true,
			help: "refused: transactions need a replica set"},

		// Authentication and users.
		{name: "saslStart", handler: authn.SaslStart, public: true, help: "start a SCRAM-SHA-256 conversation"},
		{name: "saslContinue", handler: authn.SaslContinue, public: true, help: "continue a SCRAM-SHA-256 conversation"},
		{name: "authenticate", handler: h.authenticate, public: true, whileDisabled: true,
			help: "pre-SASL authentication (no mechanism is offered)"},
		{name: "logout", handler: h.logout, public: true, whileDisabled: true, help: "forget the connection's user"},
		// createUser reaches its handler unauthenticated so that the
		// localhost exception (the first user, from loopback, when there
		// are none) can work; it authorizes every other case itself.
		{name: "createUser", rs: rsWrite, handler: h.createUser, public: true, priv: privSelf, writeConcern: true, help: "add a user"},
		{name: "updateUser", rs: rsWrite, handler: h.updateUser, priv: privSelf, writeConcern: true, help: "change a user's password or roles"},
		{name: "dropUser", rs: rsWrite, handler: h.dropUser, priv: privSelf, writeConcern: true, help: "remove a user"},
		{name: "dropAllUsersFromDatabase", rs: rsWrite, handler: h.dropAllUsersFromDatabase, priv: privSelf, writeConcern: true,
			help: "remove every user of a database"},
		{name: "usersInfo", rs: rsRead, handler: h.usersInfo, priv: privSelf, help: "users and their roles, never their keys"},
	}
	if h.opts.TestCommands {
		table = append(table, &command{name: "configureFailPoint", handler: h.configureFailPoint, priv: privCluster, adminOnly: true, whileDisabled: true,
			help: "test command (enabled by --enable-test-commands): make chosen commands fail (the failCommand fail point)"})
	}
	return table
}

// commandSet is the table indexed by every name and alias, plus the
// table's order for listCommands.
type commandSet struct {
	byName map[string]*command
	names  []string // every name and alias, sorted
}

// newCommandSet indexes table. A name given twice is a programming error.
func newCommandSet(table []*command) *commandSet {
	s := &commandSet{byName: map[string]*command{}}
	for _, c := range table {
		for _, name := range append([]string{c.name}, c.aliases...) {
			if _, dup := s.byName[name]; dup {
				panic("handlers: command " + name + " is in the table twice")
			}
			s.byName[name] = c
			s.names = append(s.names, name)
		}
	}
	sort.Strings(s.names)
	return s
}

func (s *commandSet) lookup(name string) (*command, bool) {
	c, ok := s.byName[name]
	return c, ok
}

// listCommands serves the command table in mongod's shape: commands.<name>
// with help, requiresAuth, secondaryOk (false for writes, which only a
// primary runs), adminOnly and the API versions
// (none: cmkdb offers no Stable API guarantees). Aliases are listed under
// their own names, as mongod lists them.
func (h *Handler) listCommands(_ context.Context, _ *wire.ConnState, _ *wire.Request) (bson.Raw, error) {
	cmds := make(bson.D, 0, len(h.commands.names))
	for _, name := range h.commands.names {
		c := h.commands.byName[name]
		cmds = append(cmds, bson.E{Key: name, Value: bson.D{
			{Key: "help", Value: c.help},
			{Key: "requiresAuth", Value: !c.public},
			{Key: "secondaryOk", Value: c.rs != rsWrite},
			{Key: "adminOnly", Value: c.adminOnly},
			{Key: "apiVersions", Value: bson.A{}},
			{Key: "deprecatedApiVersions", Value: bson.A{}},
		}})
	}
	return marshal(bson.D{{Key: "commands", Value: cmds}, {Key: "ok", Value: 1.0}})
}
