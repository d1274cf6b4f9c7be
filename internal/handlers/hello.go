package handlers

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/repl"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// hello (and its legacy spelling isMaster) answers the handshake. It works
// while the node is disabled, so operators and drivers can still see the
// server and its state.
// A standalone node reports no topologyVersion: a server that does makes
// drivers use the streaming (awaitable) monitoring protocol, which a
// standalone node has no topology changes to stream for; drivers poll it.
// A replica set member reports one and answers awaitable hellos
// (replset.go), so drivers learn of a failover as it happens.
func (h *Handler) hello(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	if meta, err := req.Command.LookupErr("client"); err == nil {
		// The handshake's client metadata is the connection's for good:
		// sending it again fails, as in mongod.
		if c.ClientMetadata() != nil {
			return nil, mongoerr.New(mongoerr.ClientMetadataCannotBeMutated, "The client metadata document may only be sent in the first hello")
		}
		if d, ok := meta.DocumentOK(); ok {
			c.SetClientMetadata(d)
		}
	}
	rs := h.opts.Repl
	if rs == nil {
		reply, _, err := h.helloReply(ctx, c, req)
		return reply, err
	}
	seen, wait, await := awaitable(req.Command)
	if await {
		rs.WaitTopology(ctx, seen, wait)
	}
	reply, tv, err := h.helloReply(ctx, c, req)
	if err != nil || !await || !req.ExhaustAllowed() {
		return reply, err
	}
	// An exhaust stream (the drivers' streaming monitor): the next reply
	// goes out at the next topology change, or when maxAwaitTimeMS passed.
	last := tv
	req.Stream = func(ctx context.Context) (bson.Raw, bool, error) {
		if rs.Stopped() {
			r, _, err := h.helloReply(ctx, c, req)
			return r, false, err
		}
		rs.WaitTopology(ctx, last, wait)
		r, tv, err := h.helloReply(ctx, c, req)
		last = tv
		return r, true, err
	}
	return reply, nil
}

// helloReply is hello's answer now, and the topology version it reports
// (a replica set member's).
func (h *Handler) helloReply(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, repl.TopologyVersion, error) {
	primaryKey := "isWritablePrimary"
	if req.Name == "isMaster" || req.Name == "ismaster" {
		primaryKey = "ismaster"
	}
	writable := true
	var rsFields bson.D
	var tv repl.TopologyVersion
	if h.opts.Repl != nil {
		rsFields, tv = h.helloReplFields()
		writable = h.opts.Repl.CheckWritable() == nil
	}
	reply := bson.D{
		{Key: primaryKey, Value: writable},
		{Key: "maxBsonObjectSize", Value: int32(maxBSONSize)},
		{Key: "maxMessageSizeBytes", Value: int32(maxMessageSize)},
		{Key: "maxWriteBatchSize", Value: int32(maxWriteBatch)},
		{Key: "localTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "logicalSessionTimeoutMinutes", Value: int32(30)},
		{Key: "connectionId", Value: int32(c.ID())},
		{Key: "minWireVersion", Value: int32(MinWireVersion)},
		{Key: "maxWireVersion", Value: int32(MaxWireVersion)},
		{Key: "readOnly", Value: false},
	}
	reply = append(reply, rsFields...)
	reply = append(reply, h.helloAuthFields(ctx, c, req)...)
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	r, err := marshal(reply)
	return r, tv, err
}

func (h *Handler) ping(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

func (h *Handler) buildInfo(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
	return marshal(bson.D{
		{Key: "version", Value: ServerVersion},
		{Key: "gitVersion", Value: "cmkdb"},
		{Key: "versionArray", Value: bson.A{int32(7), int32(0), int32(0), int32(0)}},
		{Key: "sysInfo", Value: "deprecated"},
		{Key: "allocator", Value: "go"},
		{Key: "javascriptEngine", Value: "none"},
		{Key: "buildEnvironment", Value: bson.D{{Key: "distarch", Value: cpuArch()}, {Key: "target_arch", Value: cpuArch()}, {Key: "target_os", Value: runtime.GOOS}, {Key: "cc", Value: runtime.Version()}}},
		{Key: "bits", Value: int32(64)},
		{Key: "debug", Value: false},
		{Key: "maxBsonObjectSize", Value: int32(maxBSONSize)},
		{Key: "storageEngines", Value: bson.A{"cmkdb-pebble-encrypted"}},
		{Key: "modules", Value: bson.A{}},
		{Key: "openssl", Value: bson.D{{Key: "running", Value: "Go crypto/tls"}}},
		{Key: "ok", Value: 1.0},
	})
}

func (h *Handler) whatsmyuri(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	return marshal(bson.D{{Key: "you", Value: c.RemoteAddr().String()}, {Key: "ok", Value: 1.0}})
}

func (h *Handler) endSessions(_ context.Context, _ *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	h.endSessionTxns(req.Command) // transaction.go
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

func (h *Handler) hostInfo(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
	system := bson.D{
		{Key: "currentTime", Value: bson.NewDateTimeFromTime(time.Now())},
		{Key: "hostname", Value: h.host},
		{Key: "cpuAddrSize", Value: int32(strconv.IntSize)},
	}
	if mb, ok := memTotalMB(); ok {
		system = append(system, bson.E{Key: "memSizeMB", Value: mb}, bson.E{Key: "memLimitMB", Value: mb})
	}
	system = append(system,
		bson.E{Key: "numCores", Value: int32(runtime.NumCPU())},
		bson.E{Key: "cpuArch", Value: cpuArch()},
		bson.E{Key: "numaEnabled", Value: false})
	release, version := kernel()
	osDoc := bson.D{{Key: "type", Value: osType()}}
	if name := osName(); name != "" {
		osDoc = append(osDoc, bson.E{Key: "name", Value: name})
	}
	if release != "" {
		osDoc = append(osDoc, bson.E{Key: "version", Value: release})
	}
	extra := bson.D{}
	if release != "" {
		extra = append(extra, bson.E{Key: "versionString", Value: release + " " + version}, bson.E{Key: "kernelVersion", Value: release})
	}
	extra = append(extra, bson.E{Key: "pageSize", Value: int64(os.Getpagesize())})
	return marshal(bson.D{
		{Key: "system", Value: system},
		{Key: "os", Value: osDoc},
		{Key: "extra", Value: extra},
		{Key: "ok", Value: 1.0},
	})
}

func (h *Handler) getCmdLineOpts(context.Context, *wire.ConnState, *wire.Request) (bson.Raw, error) {
	argv := bson.A{}
	for _, a := range h.opts.CmdLine {
		argv = append(argv, a)
	}
	return marshal(bson.D{{Key: "argv", Value: argv}, {Key: "parsed", Value: bson.D{}}, {Key: "ok", Value: 1.0}})
}

func (h *Handler) getLog(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	v, _ := req.Command.LookupErr("getLog")
	if s, ok := v.StringValueOK(); ok && s == "*" {
		return marshal(bson.D{{Key: "names", Value: bson.A{"global", "startupWarnings"}}, {Key: "ok", Value: 1.0}})
	}
	return marshal(bson.D{{Key: "totalLinesWritten", Value: int32(0)}, {Key: "log", Value: bson.A{}}, {Key: "ok", Value: 1.0}})
}

// getParameter answers the server parameters cmkdb has (the TTL
// monitor's can change: setparameter.go): {getParameter: 1, <name>: 1, …} the named
// ones, {getParameter: "*"} or {getParameter: {allParameters: true}} every
// one, {showDetails: true} each as {value, settableAtRuntime,
// settableAtStartup}. Naming none it has: 72 "no option found to get", as
// mongod.
func (h *Handler) getParameter(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	params := bson.D{
		{Key: "authSchemaVersion", Value: int32(authSchemaVersion)},
		{Key: "authenticationMechanisms", Value: bson.A{"SCRAM-SHA-256"}},
		{Key: "cursorTimeoutMillis", Value: int64(cursorIdleTimeout / time.Millisecond)},
		{Key: "featureCompatibilityVersion", Value: bson.D{{Key: "version", Value: "7.0"}}},
	}
	if h.opts.Repl != nil {
		params = append(params, bson.E{Key: "transactionLifetimeLimitSeconds", Value: int32(h.txns.lifetimeLimit() / time.Second)})
	}
	runtime := h.runtimeParameters()
	params = append(params, runtime...)
	all, details := false, false
	if v, err := req.Command.LookupErr("getParameter"); err == nil {
		if s, ok := v.StringValueOK(); ok && s == "*" {
			all = true
		}
		if d, ok := v.DocumentOK(); ok {
			elems, _ := d.Elements()
			for _, e := range elems {
				switch e.Key() {
				case "allParameters", "showDetails":
					b, ok := e.Value().BooleanOK()
					if !ok {
						return nil, wrongType("getParameter."+e.Key(), e.Value(), "bool")
					}
					if e.Key() == "allParameters" {
						all = b
					} else {
						details = b
					}
				default:
					return nil, mongoerr.New(codeUnknownField, "BSON field 'getParameter.%s' is an unknown field.", e.Key())
				}
			}
		}
	}
	reply := bson.D{}
	for _, p := range params {
		if !all && !newArgs(req.Command).has(p.Key) {
			continue
		}
		if details {
			// Only the runtime parameters can change (setParameter); none
			// is read from the configuration.
			settable := false
			for _, r := range runtime {
				settable = settable || r.Key == p.Key
			}
			p.Value = bson.D{{Key: "value", Value: p.Value}, {Key: "settableAtRuntime", Value: settable}, {Key: "settableAtStartup", Value: false}}
		}
		reply = append(reply, p)
	}
	if len(reply) == 0 {
		return nil, mongoerr.New(mongoerr.InvalidOptions, "no option found to get")
	}
	reply = append(reply, bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}

func (h *Handler) connectionStatus(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	users, roles := bson.A{}, bson.A{}
	if p, ok := c.Authenticated(); ok {
		users = append(users, bson.D{{Key: "user", Value: p.User}, {Key: "db", Value: p.DB}})
		roles = h.rolesForStatus(p)
	}
	return marshal(bson.D{
		{Key: "authInfo", Value: bson.D{{Key: "authenticatedUsers", Value: users}, {Key: "authenticatedUserRoles", Value: roles}}},
		{Key: "ok", Value: 1.0},
	})
}
