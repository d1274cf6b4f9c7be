package handlers

import (
	"context"
	"errors"
	"math/bits"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// The operation table: every command in progress on this node (currentOp,
// $currentOp, killOp), and per namespace the latency of the commands that
// ended there ($collStats latencyStats). Both live in memory, per Handler,
// and start empty when the node starts, as mongod's do.

// errInterrupted is the cause of a command context ended by killOp;
// commandError turns it into 11601 Interrupted.
var errInterrupted = errors.New("operation was interrupted")

func interruptedError() error {
	return mongoerr.New(mongoerr.Interrupted, "operation was interrupted")
}

// operation is one command in progress.
type operation struct {
	id      uint32 // mongod's opid: an unsigned 32-bit counter, reported as an int
	conn    *wire.ConnState
	cmd     *command // nil: a command the table does not know
	req     *wire.Request
	started time.Time
	kill    context.CancelCauseFunc
}

type opTable struct {
	mu      sync.Mutex
	next    uint32
	ops     map[uint32]*operation
	latency map[string]*nsLatency // namespace -> latencies
}

func newOpTable() *opTable {
	return &opTable{ops: map[uint32]*operation{}, latency: map[string]*nsLatency{}}
}

// begin registers a command in progress and returns the context it runs
// under: killOp cancels it with errInterrupted.
func (t *opTable) begin(ctx context.Context, c *wire.ConnState, cmd *command, req *wire.Request) (context.Context, *operation) {
	ctx, kill := context.WithCancelCause(ctx)
	op := &operation{conn: c, cmd: cmd, req: req, started: time.Now(), kill: kill}
	t.mu.Lock()
	for {
		t.next++
		if _, used := t.ops[t.next]; !used && t.next != 0 {
			break
		}
	}
	op.id = t.next
	t.ops[op.id] = op
	t.mu.Unlock()
	return ctx, op
}

// end removes op from the table and records its latency under its
// namespace. A dropped collection (or database) forgets its latencies, as
// mongod's Top does.
func (t *opTable) end(op *operation, err error) {
	elapsed := time.Since(op.started)
	op.kill(nil)
	kind := latencyKind(op.req.Name)
	ns, collNS := op.namespace()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.ops, op.id)
	if err == nil && op.req.Name == "dropDatabase" {
		for n := range t.latency {
			if strings.HasPrefix(n, op.req.DB+".") {
				delete(t.latency, n)
			}
		}
		return
	}
	if !collNS {
		return
	}
	if err == nil {
		switch op.req.Name {
		case "drop", "renameCollection":
			delete(t.latency, ns)
			return
		}
	}
	l := t.latency[ns]
	if l == nil {
		l = &nsLatency{}
		t.latency[ns] = l
	}
	l.hist[kind].add(uint64(elapsed.Microseconds()))
}

// snapshot returns the operations in progress.
func (t *opTable) snapshot() []*operation {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*operation, 0, len(t.ops))
	for _, op := range t.ops {
		out = append(out, op)
	}
	return out
}

func (t *opTable) lookup(id uint32) (*operation, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	op, ok := t.ops[id]
	return op, ok
}

// latencyOf returns a copy of ns's latencies (zeros if none).
func (t *opTable) latencyOf(ns string) nsLatency {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.latency[ns]; l != nil {
		return *l
	}
	return nsLatency{}
}

// namespace is the namespace an operation works on, as currentOp shows
// it, and whether it is a collection's (latencies are kept only for
// those). Commands on a collection name it as their first field's string
// value; dataSize and renameCollection name a whole namespace.
func (op *operation) namespace() (string, bool) {
	req := op.req
	first, err := req.Command.IndexErr(0)
	if err != nil {
		return req.DB + ".$cmd", false
	}
	if req.Name == "getMore" {
		if coll, ok := req.Command.Lookup("collection").StringValueOK(); ok {
			return req.DB + "." + coll, true
		}
		return req.DB + ".$cmd", false
	}
	s, isString := first.Value().StringValueOK()
	if op.cmd == nil || !isString || s == "" {
		if req.Name == "aggregate" {
			return req.DB + ".$cmd.aggregate", false
		}
		return req.DB + ".$cmd", false
	}
	switch req.Name {
	case "dataSize", "datasize", "renameCollection":
		return s, strings.Contains(s, ".")
	}
	switch op.cmd.priv {
	case privRead, privWrite, privDBAdmin:
		return req.DB + "." + s, true
	}
	return req.DB + ".$cmd", false
}

// latency kinds, as mongod's Top sorts commands.
const (
	latReads = iota
	latWrites
	latCommands
	latTransactions
	latKinds
)

var latencyKindNames = [latKinds]string{"reads", "writes", "commands", "transactions"}

// latencyKind sorts a command as mongod's getReadWriteType does.
func latencyKind(name string) int {
	switch name {
	case "find", "getMore", "count", "distinct", "aggregate":
		return latReads
	case "insert", "update", "delete", "findAndModify", "findandmodify":
		return latWrites
	case "commitTransaction", "abortTransaction":
		return latTransactions
	}
	return latCommands
}

// latencyBuckets is the number of buckets of mongod's latency histograms:
// powers of two up to 2^11 µs, each power from 2^11 to 2^21 split in two
// halves, then powers of two again up to 2^40.
const latencyBuckets = 51

type latencyHist struct {
	buckets [latencyBuckets]int64
	ops     int64
	sum     int64 // microseconds
}

type nsLatency struct {
	hist [latKinds]latencyHist
}

func (h *latencyHist) add(micros uint64) {
	h.buckets[latencyBucket(micros)]++
	h.ops++
	h.sum += int64(micros)
}

// latencyBucket is the bucket of a latency in microseconds.
func latencyBucket(v uint64) int {
	if v == 0 {
		return 0
	}
	log2 := 63 - bits.LeadingZeros64(v)
	switch {
	case log2 < 11:
		return log2
	case log2 < 21:
		b := log2 + (log2 - 11)
		if v >= 3<<(log2-1) { // the upper half of [2^log2, 2^(log2+1))
			b++
		}
		return b
	}
	return min(log2+10, latencyBuckets-1)
}

// latencyLowerBound is the smallest latency of bucket b (bucket 0 holds 0
// and 1 µs).
func latencyLowerBound(b int) uint64 {
	switch {
	case b == 0:
		return 0
	case b <= 11:
		return 1 << b
	case b < 31:
		// Buckets 11..30 are the halves of powers 11..20.
		log2 := 11 + (b-11)/2
		if (b-11)%2 == 1 {
			return 3 << (log2 - 1)
		}
		return 1 << log2
	}
	return 1 << (b - 10)
}

// doc renders the histogram as mongod does: {histogram: [{micros, count}]
// (non-empty buckets, only when asked), latency, ops}.
func (h *latencyHist) doc(histograms bool) bson.D {
	d := bson.D{}
	if histograms {
		arr := bson.A{}
		for b, n := range h.buckets {
			if n == 0 {
				continue
			}
			arr = append(arr, bson.D{{Key: "micros", Value: int64(latencyLowerBound(b))}, {Key: "count", Value: n}})
		}
		d = append(d, bson.E{Key: "histogram", Value: arr})
	}
	return append(d, bson.E{Key: "latency", Value: h.sum}, bson.E{Key: "ops", Value: h.ops})
}

func (l *nsLatency) doc(histograms bool) bson.D {
	d := make(bson.D, 0, latKinds)
	for k := range latKinds {
		d = append(d, bson.E{Key: latencyKindNames[k], Value: l.hist[k].doc(histograms)})
	}
	return d
}

// activeCount is how many connections have an operation in progress
// (serverStatus connections.active).
func (t *opTable) activeCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := map[*wire.ConnState]bool{}
	for _, op := range t.ops {
		conns[op.conn] = true
	}
	return len(conns)
}
