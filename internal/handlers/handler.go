// Package handlers implements the MongoDB commands a cmkdb node serves, one
// file per command (or per small family of commands), on top of the node's
// encrypted storage. The wire package delivers parsed requests; this
// package decides what they mean.
package handlers

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/node"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/storage"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Server identity reported to clients.
const (
	ServerVersion  = "7.0.0"
	MaxWireVersion = 21 // MongoDB 7.0
	MinWireVersion = 0
	maxBSONSize    = 16 * 1024 * 1024
	maxMessageSize = 48000000
	maxWriteBatch  = 100000
)

// KeyUnavailable is returned for data commands while the node is disabled
// because its key cannot be used. Its own code tells it apart from every
// MongoDB error a client might otherwise retry or misread.
const KeyUnavailable = mongoerr.EncryptionKeyUnavailable

// Options configure the handlers.
type Options struct {
	// AuthRequired makes every command but the handshake and the auth
	// commands require an authenticated user.
	AuthRequired bool
	Logger       *slog.Logger
	// CmdLine is what getCmdLineOpts reports.
	CmdLine []string
	// ConnCount reports the server's open connections (serverStatus).
	ConnCount func() int
	// Conns lists the server's open connections (currentOp's idle
	// connections); nil: none are listed.
	Conns func() []*wire.ConnState
	// NetStats gives the wire server's traffic (serverStatus's network
	// section); nil reports none.
	NetStats func() wire.NetStats
	// TestCommands enables mongod's test commands (configureFailPoint):
	// for the drivers' specification tests, never in production.
	TestCommands bool
	// Repl, when set, makes the node a replica set member: every write to
	// a database other than "local" goes through the set's log, only the
	// primary takes writes, and hello reports the set. nil: a standalone
	// node, whose writes commit straight to storage.
	Repl *repl.Member
	// ReadOnly refuses every write command with 20 IllegalOperation, as a
	// read-only mongod does (the node's storage is read-only too, so
	// nothing else can write either): a snapshot served offline.
	ReadOnly bool
	// SnapshotDir is the snapshot store cmkdbCheckpoint may write into;
	// empty: the command is refused.
	SnapshotDir string
}

// Handler serves commands for one node.
type Handler struct {
	node     *node.Node
	opts     Options
	log      *slog.Logger
	commands *commandSet
	cursors  *cursorManager
	started  time.Time
	host     string

	auth *authState
	// ops are the commands in progress and the namespaces' latencies
	// (ops.go).
	ops *opTable
	// sessions serializes each session's retryable writes.
	sessions sessionLocks
	// txns are the sessions' multi-document transactions (transaction.go).
	txns txnTable
	// archiveMu serializes oplog archive runs (pitr.go): two would write
	// the same segments.
	archiveMu sync.Mutex
	// opcounters are serverStatus's (opcounters.go).
	opcounters opCounters
	// failCommand is the test fail point (failpoint.go).
	failCommand failPoint

	// ttl is the TTL monitor (ttl.go); ttlStarted says its loop runs.
	ttl        *ttlMonitor
	ttlStarted bool

	mu     sync.Mutex
	engine *storage.Engine // the engine stores belong to
	stores map[string]*docstore.Store
}

// New returns the handler for n, with every command registered.
func New(n *node.Node, opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	host, _ := os.Hostname()
	h := &Handler{node: n, opts: opts, log: opts.Logger,
		cursors: newCursorManager(), ops: newOpTable(), started: time.Now(), host: host, stores: map[string]*docstore.Store{}}
	h.auth = newAuthState(h)
	h.commands = newCommandSet(h.commandTable(h.auth.authn))
	h.ttl = newTTLMonitor()
	if !opts.ReadOnly {
		h.ttlStarted = true
		go h.runTTLMonitor()
	}
	return h
}

// Close stops the TTL monitor and releases the handler's cursors.
func (h *Handler) Close() {
	h.ttl.close(h.ttlStarted)
	h.cursors.closeAll()
}

// store returns the docstore of database name while holding the node
// (release must be called). With create, a missing database is created;
// without, a missing database yields a nil store.
func (h *Handler) store(name string, create bool) (*docstore.Store, func(), error) {
	if err := validateDBName(name); err != nil {
		return nil, nil, err
	}
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return nil, nil, acquireError(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.engine != eng {
		// The node was disabled and re-enabled: its databases reopened.
		for _, old := range h.stores {
			old.AbortTransactions() // their snapshots are of closed databases
		}
		h.engine, h.stores = eng, map[string]*docstore.Store{}
	}
	if s, ok := h.stores[name]; ok {
		return s, release, nil
	}
	db, err := eng.Database(name)
	if errors.Is(err, storage.ErrNoDatabase) {
		if !create {
			return nil, release, nil
		}
		db, err = eng.CreateDatabase(name)
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	var log docstore.Log
	if name != "local" && h.opts.Repl != nil {
		log = h.opts.Repl
	}
	s, err := docstore.Open(db, log)
	if err != nil {
		release()
		return nil, nil, err
	}
	s.Logger = h.log
	h.stores[name] = s
	return s, release, nil
}

// dropStore forgets a database's store (after dropDatabase).
func (h *Handler) dropStore(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.stores[name]; ok {
		s.AbortTransactions()
	}
	delete(h.stores, name)
}

func validateDBName(name string) error {
	if name == "" {
		return mongoerr.New(mongoerr.InvalidNamespace, "Invalid empty database name")
	}
	for _, c := range []byte(name) {
		switch c {
		case '/', '\\', '.', ' ', '"', '$', 0:
			return mongoerr.New(mongoerr.InvalidNamespace, "Invalid database name: '%s'", name)
		}
	}
	if len(name) > 63 {
		return mongoerr.New(mongoerr.InvalidNamespace, "db name is too long")
	}
	return nil
}

// acquireError turns a node.Acquire failure into the command error: a
// disabled node answers KeyUnavailable with its cause and the fix, never
// an internal path or endpoint.
func acquireError(err error) error {
	var de *node.DisabledError
	if errors.As(err, &de) {
		return mongoerr.New(KeyUnavailable, "%s", de.ClientMessage())
	}
	return err
}

func (h *Handler) connCount() int {
	if h.opts.ConnCount == nil {
		return 0
	}
	return h.opts.ConnCount()
}
