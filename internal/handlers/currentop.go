package handlers

import (
	"context"
	"math"
	"sort"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// currentOp, $currentOp and killOp: the commands in progress on this node
// (the operation table, ops.go), its idle connections and idle cursors on
// request; killOp cancels an operation's context, and the operation fails
// with 11601 Interrupted at its next check (between documents, or at once
// when it is waiting).

type currentOpSpec struct {
	allUsers        bool
	idleConnections bool
	idleCursors     bool
	truncateOps     bool
}

// currentOpStage parses a leading $currentOp as mongod 7.0 does (its lite
// parse first: a non-object and a non-boolean allUsers or localOps are 14;
// then the full parse: other non-booleans and unknown options are 9).
func currentOpStage(stages []bson.Raw) (*currentOpSpec, error) {
	for _, st := range stages[min(1, len(stages)):] {
		if e, err := st.IndexErr(0); err == nil && e.Key() == "$currentOp" {
			return nil, mongoerr.New(40602, "$currentOp is only valid as the first stage in a pipeline")
		}
	}
	if len(stages) == 0 {
		return nil, nil
	}
	e, err := stages[0].IndexErr(0)
	if err != nil || e.Key() != "$currentOp" {
		return nil, nil
	}
	d, ok := e.Value().DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "$currentOp options must be specified in an object, but found: %s", typeName(e.Value().Type))
	}
	elems, err := d.Elements()
	if err != nil {
		return nil, err
	}
	for _, f := range elems {
		if (f.Key() == "allUsers" || f.Key() == "localOps") && f.Value().Type != bson.TypeBoolean {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "The '%s' parameter of the $currentOp stage must be a boolean value, but found: %s", f.Key(), typeName(f.Value().Type))
		}
	}
	spec := &currentOpSpec{}
	for _, f := range elems {
		k, v := f.Key(), f.Value()
		switch k {
		case "allUsers", "idleConnections", "idleSessions", "localOps", "truncateOps", "idleCursors", "backtrace":
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "Unrecognized option '%s' in $currentOp stage.", k)
		}
		if v.Type != bson.TypeBoolean {
			return nil, mongoerr.New(mongoerr.FailedToParse, "The '%s' parameter of the $currentOp stage must be a boolean value, but found: %s", k, typeName(v.Type))
		}
		b := v.Boolean()
		switch k {
		case "allUsers":
			spec.allUsers = b
		case "idleConnections":
			spec.idleConnections = b
		case "idleCursors":
			spec.idleCursors = b
		case "truncateOps":
			spec.truncateOps = b
		case "backtrace":
			if b {
				return nil, mongoerr.New(mongoerr.NotImplemented, "$currentOp backtrace is not supported")
			}
			// localOps only matters on mongos; idleSessions lists idle
			// sessions holding transaction state, which cmkdb does not
			// report (no such entries are ever listed).
		}
	}
	return spec, nil
}

// clusterPrivileged reports whether the connection may see every user's
// operations: always with auth off, else with the cluster privilege
// (mongod's inprog action).
func (h *Handler) clusterPrivileged(c *wire.ConnState) (bool, error) {
	if !h.opts.AuthRequired {
		return true, nil
	}
	p, ok := c.Authenticated()
	if !ok {
		return false, nil
	}
	roles, err := authOf(h).users.rolesOf(p)
	if err != nil {
		return false, err
	}
	return allows(roles, privCluster, usersDB), nil
}

// sameUser reports whether conn is authenticated as c's user (with auth
// off, every connection is).
func (h *Handler) sameUser(c, conn *wire.ConnState) bool {
	if !h.opts.AuthRequired {
		return true
	}
	p, ok := c.Authenticated()
	if !ok || conn == nil {
		return false
	}
	q, ok := conn.Authenticated()
	return ok && p == q
}

// currentOpDocs lists what $currentOp reports, in opid order: the
// operations in progress, then idle connections and idle cursors when
// asked. Without allUsers, only the connection's user's.
func (h *Handler) currentOpDocs(c *wire.ConnState, spec *currentOpSpec) ([]bson.Raw, error) {
	if spec.allUsers {
		if ok, err := h.clusterPrivileged(c); err != nil {
			return nil, err
		} else if !ok {
			return nil, mongoerr.New(mongoerr.Unauthorized, "not authorized on admin to execute command { aggregate: 1, pipeline: [ { $currentOp: { allUsers: true } } ] }")
		}
	}
	host := h.hostPort(c)
	now := time.Now()
	ops := h.ops.snapshot()
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	var out []bson.Raw
	active := map[int64]bool{}
	for _, op := range ops {
		active[op.conn.ID()] = true
		if !spec.allUsers && !h.sameUser(c, op.conn) {
			continue
		}
		d := connFields(host, op.conn, now)
		d = append(d, bson.E{Key: "active", Value: true}, bson.E{Key: "currentOpTime", Value: now.Format("2006-01-02T15:04:05.000-07:00")})
		if p, ok := op.conn.Authenticated(); ok {
			d = append(d, bson.E{Key: "effectiveUsers", Value: bson.A{bson.D{{Key: "user", Value: p.User}, {Key: "db", Value: p.DB}}}})
		}
		d = append(d, bson.E{Key: "threaded", Value: true}, bson.E{Key: "opid", Value: int32(op.id)})
		if lsid, err := op.req.Command.LookupErr("lsid"); err == nil {
			d = append(d, bson.E{Key: "lsid", Value: lsid})
		}
		running := now.Sub(op.started)
		ns, _ := op.namespace()
		var command any = op.req.Command
		if spec.truncateOps && len(op.req.Command) > 1024 {
			s := op.req.Command.String()
			command = bson.D{{Key: "$truncated", Value: s[:min(len(s), 1000)]}}
		}
		d = append(d,
			bson.E{Key: "secs_running", Value: int64(running / time.Second)},
			bson.E{Key: "microsecs_running", Value: running.Microseconds()},
			bson.E{Key: "op", Value: opType(op.req.Name)},
			bson.E{Key: "ns", Value: ns},
			bson.E{Key: "redacted", Value: false},
			bson.E{Key: "command", Value: command},
			bson.E{Key: "numYields", Value: int32(0)},
			bson.E{Key: "locks", Value: bson.D{}},
			bson.E{Key: "waitingForLock", Value: false},
		)
		raw, err := bson.Marshal(d)
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	conns := h.conns()
	if spec.idleConnections {
		sort.Slice(conns, func(i, j int) bool { return conns[i].ID() < conns[j].ID() })
		for _, conn := range conns {
			if active[conn.ID()] || (!spec.allUsers && !h.sameUser(c, conn)) {
				continue
			}
			d := append(connFields(host, conn, now), bson.E{Key: "active", Value: false},
				bson.E{Key: "currentOpTime", Value: now.Format("2006-01-02T15:04:05.000-07:00")})
			raw, err := bson.Marshal(d)
			if err != nil {
				return nil, err
			}
			out = append(out, raw)
		}
	}
	if spec.idleCursors {
		byID := map[int64]*wire.ConnState{}
		for _, conn := range conns {
			byID[conn.ID()] = conn
		}
		for _, cur := range h.cursors.idle() {
			if !spec.allUsers && !h.sameUser(c, byID[cur.connID]) {
				continue
			}
			raw, err := bson.Marshal(bson.D{
				{Key: "type", Value: "idleCursor"},
				{Key: "host", Value: host},
				{Key: "ns", Value: cur.ns},
				{Key: "cursor", Value: bson.D{
					{Key: "cursorId", Value: cur.id},
					{Key: "lastAccessDate", Value: bson.NewDateTimeFromTime(cur.lastUsed)},
					{Key: "noCursorTimeout", Value: cur.noTimeout},
				}},
			})
			if err != nil {
				return nil, err
			}
			out = append(out, raw)
		}
	}
	return out, nil
}

// connFields are the fields currentOp gives every connection.
func connFields(host string, conn *wire.ConnState, now time.Time) bson.D {
	d := bson.D{
		{Key: "type", Value: "op"},
		{Key: "host", Value: host},
		{Key: "desc", Value: "conn" + strconv.FormatInt(conn.ID(), 10)},
		{Key: "connectionId", Value: conn.ID()},
	}
	if a := conn.RemoteAddr(); a != nil {
		d = append(d, bson.E{Key: "client", Value: a.String()})
	}
	if md := conn.ClientMetadata(); md != nil {
		d = append(d, bson.E{Key: "clientMetadata", Value: md})
	}
	return d
}

// opType is currentOp's op field: the legacy operation a command stands
// for, else "command".
func opType(name string) string {
	switch name {
	case "find":
		return "query"
	case "insert", "update":
		return name
	case "delete":
		return "remove"
	case "getMore":
		return "getmore"
	case "killCursors":
		return "killcursors"
	}
	return "command"
}

// conns are the server's open connections (none known without
// Options.Conns).
func (h *Handler) conns() []*wire.ConnState {
	if h.opts.Conns == nil {
		return nil
	}
	return h.opts.Conns()
}

// idleCursor is what currentOp shows of a cursor no getMore is using.
type idleCursor struct {
	id        int64
	ns        string
	connID    int64
	lastUsed  time.Time
	noTimeout bool
}

// idle lists the cursors no getMore is running on, by id.
func (m *cursorManager) idle() []idleCursor {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []idleCursor
	for _, c := range m.cursors {
		if !c.mu.TryLock() {
			continue // a getMore is running on it: it shows as that operation
		}
		ic := idleCursor{id: c.id, ns: c.ns, connID: c.connID, lastUsed: c.lastUsed}
		if nt, ok := c.src.(interface{ noCursorTimeout() bool }); ok {
			ic.noTimeout = nt.noCursorTimeout()
		}
		c.mu.Unlock()
		out = append(out, ic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// currentOp is the command form: {currentOp: 1, $all, $ownOps, <filter>}
// answers {inprog: [...]} — $currentOp with allUsers unless $ownOps,
// idleConnections with $all, and the other fields as a $match filter.
func (h *Handler) currentOp(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	spec := &currentOpSpec{allUsers: true}
	filter := bson.D{}
	elems, err := req.Command.Elements()
	if err != nil {
		return nil, err
	}
	for _, e := range elems[1:] {
		switch k := e.Key(); {
		case k == "$all":
			spec.idleConnections = truthy(e.Value())
		case k == "$ownOps":
			spec.allUsers = !truthy(e.Value())
		case genericFields[k]:
		default:
			filter = append(filter, bson.E{Key: k, Value: e.Value()})
		}
	}
	if spec.allUsers {
		if ok, err := h.clusterPrivileged(c); err != nil {
			return nil, err
		} else if !ok {
			return nil, notAuthorized(usersDB, req.Name)
		}
	}
	docs, err := h.currentOpDocs(c, spec)
	if err != nil {
		return nil, err
	}
	inprog := bson.A{}
	if len(docs) > 0 {
		f, err := bson.Marshal(filter)
		if err != nil {
			return nil, err
		}
		m, err := query.Compile(f)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			if m.Match(d) {
				inprog = append(inprog, d)
			}
		}
	}
	return marshal(bson.D{{Key: "inprog", Value: inprog}, {Key: "ok", Value: 1.0}})
}

// killOp {killOp: 1, op: <opid>} interrupts an operation of this node. A
// user with the cluster privilege (mongod's killop action) may kill any;
// others only their own. An opid no operation has is not an error.
func (h *Handler) killOp(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	v, err := req.Command.LookupErr("op")
	if err != nil {
		return nil, mongoerr.New(mongoerr.NoSuchKey, "Missing expected field \"op\"")
	}
	var id int64
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		f, _ := numberAsFloat(v)
		if f != math.Trunc(f) || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, mongoerr.New(mongoerr.BadValue, "Expected field \"op\" to have a value exactly representable as a 64-bit integer, but found op: %s", v)
		}
		id = int64(f)
	default:
		return nil, mongoerr.New(mongoerr.TypeMismatch, "\"op\" had the wrong type. Expected number, found %s", typeName(v.Type))
	}
	// opids are unsigned 32-bit numbers that BSON shows as ints: a
	// negative one is a wrapped opid.
	if id >= math.MinInt32 && id < 0 {
		id += 1 << 32
	}
	if id < 0 || id > math.MaxUint32 {
		return nil, mongoerr.New(26823, "invalid op : %d", id)
	}
	op, found := h.ops.lookup(uint32(id))
	privileged, err := h.clusterPrivileged(c)
	if err != nil {
		return nil, err
	}
	if !privileged && (!found || !h.sameUser(c, op.conn)) {
		return nil, notAuthorized(usersDB, req.Name)
	}
	if found {
		op.kill(errInterrupted)
	}
	return marshal(bson.D{{Key: "info", Value: "attempting to kill op"}, {Key: "ok", Value: 1.0}})
}

// hasStage reports whether the command's pipeline has stage anywhere.
func hasStage(a args, stage string) bool {
	v, ok := a.value("pipeline")
	if !ok {
		return false
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return false
	}
	vals, _ := arr.Values()
	for _, v := range vals {
		if d, ok := v.DocumentOK(); ok {
			if e, err := d.IndexErr(0); err == nil && e.Key() == stage {
				return true
			}
		}
	}
	return false
}
