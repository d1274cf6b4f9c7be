package handlers

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// cursorIdleTimeout is mongod's default cursorTimeoutMillis.
const cursorIdleTimeout = 10 * time.Minute

// batchSource produces a cursor's documents a batch at a time. It must not
// hold storage resources between calls: a node can be disabled between two
// getMores, and its databases closed.
type batchSource interface {
	// next returns up to n documents (and at most about 16 MiB), and
	// whether the source is exhausted. It stops with ctx's cause once ctx
	// is done (the node disabled, maxTimeMS expired).
	next(ctx context.Context, h *Handler, n int) ([]bson.Raw, bool, error)
}

// sliceSource serves documents computed up front (sorted results,
// aggregation output, listings).
type sliceSource struct{ docs []bson.Raw }

func (s *sliceSource) next(_ context.Context, _ *Handler, n int) ([]bson.Raw, bool, error) {
	batch, size := 0, 0
	for batch < len(s.docs) && batch < n && size < maxBSONSize {
		size += len(s.docs[batch])
		batch++
	}
	out := s.docs[:batch]
	s.docs = s.docs[batch:]
	return out, len(s.docs) == 0, nil
}

type cursor struct {
	id     int64
	ns     string
	connID int64
	// owner is the user who opened the cursor (cursorOwner); only they
	// may getMore or kill it, as in mongod.
	owner string
	// session is the logical session of the command that opened it ("":
	// none), which killSessions kills it with.
	session  string
	src      batchSource
	lastUsed time.Time
	mu       sync.Mutex // one getMore at a time per cursor
	// timed cursors were opened with a maxTimeMS: budget is what is left of
	// it. Like mongod's, the limit is cumulative over the cursor's
	// batches and does not run while the cursor is idle between getMores.
	// Guarded by mu.
	timed  bool
	budget time.Duration
}

type cursorManager struct {
	mu      sync.Mutex
	cursors map[int64]*cursor
}

func newCursorManager() *cursorManager {
	return &cursorManager{cursors: map[int64]*cursor{}}
}

func newCursorID() int64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		// Positive and non-zero: 0 means "no cursor" on the wire.
		if id := int64(binary.LittleEndian.Uint64(b[:]) >> 1); id != 0 {
			return id
		}
	}
}

// cursorOwner names the connection's authenticated user ("" for none).
func cursorOwner(c *wire.ConnState) string {
	if c == nil {
		return ""
	}
	if p, ok := c.Authenticated(); ok {
		return p.User + "@" + p.DB
	}
	return ""
}

func errNotCursorOwner(id int64) error {
	return mongoerr.New(mongoerr.Unauthorized, "cursor id %d was not created by the authenticated user", id)
}

func (m *cursorManager) add(ns string, c0 *wire.ConnState, session string, src batchSource) *cursor {
	var connID int64
	if c0 != nil {
		connID = c0.ID()
	}
	c := &cursor{id: newCursorID(), ns: ns, connID: connID, owner: cursorOwner(c0), session: session, src: src, lastUsed: time.Now()}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reapLocked()
	m.cursors[c.id] = c
	return c
}

func (m *cursorManager) get(id int64, ns, owner string) (*cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reapLocked()
	c, ok := m.cursors[id]
	if !ok {
		return nil, mongoerr.New(mongoerr.CursorNotFound, "cursor id %d not found", id)
	}
	if c.owner != owner {
		return nil, errNotCursorOwner(id)
	}
	if c.ns != ns {
		return nil, mongoerr.New(mongoerr.Unauthorized, "Requested getMore on namespace '%s', but cursor belongs to a different namespace %s", ns, c.ns)
	}
	c.lastUsed = time.Now()
	return c, nil
}

// ownerOf returns the owner of cursor id, if it exists.
func (m *cursorManager) ownerOf(id int64) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cursors[id]
	if !ok {
		return "", false
	}
	return c.owner, true
}

func (m *cursorManager) remove(id int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.cursors[id]
	delete(m.cursors, id)
	return ok
}

func (m *cursorManager) reapLocked() {
	cutoff := time.Now().Add(-cursorIdleTimeout)
	for id, c := range m.cursors {
		if nt, ok := c.src.(interface{ noCursorTimeout() bool }); ok && nt.noCursorTimeout() {
			continue // noCursorTimeout: only killCursors or the session's end close it
		}
		if c.lastUsed.Before(cutoff) {
			delete(m.cursors, id)
		}
	}
}

func (m *cursorManager) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cursors = map[int64]*cursor{}
}

func (m *cursorManager) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cursors)
}

// firstBatch runs the first batch of a new cursor and renders the
// {cursor: {firstBatch, id, ns}} reply, registering the cursor if more
// remains.
func (h *Handler) firstBatch(ctx context.Context, ns string, conn *wire.ConnState, src batchSource, batchSize int64) (bson.Raw, error) {
	n := 101
	if batchSize >= 0 {
		n = int(batchSize)
	}
	var docs []bson.Raw
	done := false
	if n > 0 {
		// batchSize 0 opens the cursor without reading (mongod): the
		// documents come with the first getMore.
		var err error
		if docs, done, err = src.next(ctx, h, n); err != nil {
			return nil, err
		}
	}
	var id int64
	if !done {
		cur := h.cursors.add(ns, conn, sessionOf(ctx), src)
		if dl, ok := ctx.Deadline(); ok {
			// Only a maxTimeMS sets a command deadline (Handle).
			cur.timed, cur.budget = true, time.Until(dl)
		}
		id = cur.id
	}
	return cursorReplyFrom(ns, id, "firstBatch", docs, src)
}

// resumable is a change stream's cursor: every batch reports the resume
// token of where it ended (postBatchResumeToken).
type resumable interface {
	postBatchResumeToken() bson.Raw
}

// cursorReplyFrom is cursorReply with what src adds to the cursor
// document.
func cursorReplyFrom(ns string, id int64, field string, docs []bson.Raw, src batchSource) (bson.Raw, error) {
	r, ok := src.(resumable)
	if !ok {
		return cursorReply(ns, id, field, docs)
	}
	arr := make(bson.A, len(docs))
	for i, d := range docs {
		arr[i] = d
	}
	return marshal(bson.D{
		{Key: "cursor", Value: bson.D{{Key: field, Value: arr}, {Key: "postBatchResumeToken", Value: r.postBatchResumeToken()}, {Key: "id", Value: id}, {Key: "ns", Value: ns}}},
		{Key: "ok", Value: 1.0},
	})
}

// nextBatch runs one getMore batch of cur under what is left of the
// cursor's maxTimeMS, and charges the time it took.
func (h *Handler) nextBatch(ctx context.Context, cur *cursor, n int) ([]bson.Raw, bool, error) {
	if !cur.timed {
		return cur.src.next(ctx, h, n)
	}
	if cur.budget <= 0 {
		return nil, false, maxTimeError()
	}
	deadline := time.Now().Add(cur.budget)
	ctx, cancel := context.WithDeadlineCause(ctx, deadline, errMaxTimeExpired)
	defer cancel()
	docs, done, err := cur.src.next(ctx, h, n)
	cur.budget = time.Until(deadline)
	return docs, done, err
}

func cursorReply(ns string, id int64, field string, docs []bson.Raw) (bson.Raw, error) {
	arr := make(bson.A, len(docs))
	for i, d := range docs {
		arr[i] = d
	}
	return marshal(bson.D{
		{Key: "cursor", Value: bson.D{{Key: field, Value: arr}, {Key: "id", Value: id}, {Key: "ns", Value: ns}}},
		{Key: "ok", Value: 1.0},
	})
}

// cursorBatchSize reads a cursor-opening command's batchSize (find's
// batchSize, or cursor.batchSize of aggregate, listCollections and
// listIndexes) as mongod's IDL does: a number holding an integer (an
// integral double too), at least 0 (else 51024); -1 when absent, which
// firstBatch reads as mongod's default first batch.
func cursorBatchSize(a args) (int64, error) {
	v, ok := a.value("batchSize")
	if !ok || v.Type == bson.TypeNull {
		return -1, nil
	}
	n, err := a.int64("batchSize", -1)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, mongoerr.New(mongoerr.Location51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
	}
	return n, nil
}

// cursorOptionBatchSize is cursorBatchSize of a command's cursor document
// (nil: absent).
func cursorOptionBatchSize(cur bson.Raw, command string) (int64, error) {
	if cur == nil {
		return -1, nil
	}
	return cursorBatchSize(args{cmd: cur, name: command + ".cursor"})
}
