package handlers

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// configureFailPoint is mongod's test command for the failCommand fail
// point, which the drivers' specification tests use to make the server
// fail chosen commands: it exists only when test commands are enabled
// (Options.TestCommands; `cmkdb up --enable-test-commands`), as mongod's
// enableTestCommands. Without them it is CommandNotFound, like any
// command this server does not have.
//
//	{configureFailPoint: "failCommand", mode: "alwaysOn" | "off" | {times: n} | {skip: n},
//	 data: {failCommands: [names], errorCode, errorLabels, writeConcernError,
//	        closeConnection, blockConnection, blockTimeMS, appName, failInternalCommands}}
//
// A failed command does not run: it answers errorCode (with errorLabels),
// or closes the connection without a reply, or runs and answers ok with
// the writeConcernError; blockConnection delays it first.

type failPoint struct {
	mu sync.Mutex
	on bool
	// times is how many more commands it fails (-1: no limit); skip how
	// many matching commands it lets through first.
	times, skip int
	commands    []string
	errorCode   int32
	hasCode     bool
	labels      []string
	wcError     bson.Raw
	closeConn   bool
	blockFor    time.Duration
	appName     string
}

// failAction is what the fail point does to one command.
type failAction struct {
	err      error
	wcError  bson.Raw
	blockFor time.Duration
}

// match reports what the fail point does to req on connection c, and
// counts it.
func (fp *failPoint) match(c *wire.ConnState, req *wire.Request) *failAction {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if !fp.on || !slices.Contains(fp.commands, req.Name) {
		return nil
	}
	if fp.appName != "" && appNameOf(c) != fp.appName {
		return nil
	}
	if fp.skip > 0 {
		fp.skip--
		return nil
	}
	if fp.times > 0 {
		fp.times--
		if fp.times == 0 {
			fp.on = false
		}
	}
	a := &failAction{blockFor: fp.blockFor, wcError: fp.wcError}
	switch {
	case fp.closeConn:
		a.err = wire.ErrCloseConnection
	case fp.hasCode:
		e := mongoerr.New(mongoerr.Code(fp.errorCode), "Failing command %s via 'failCommand' failpoint", req.Name)
		e.Labels = append([]string(nil), fp.labels...)
		a.err = e
	}
	return a
}

func appNameOf(c *wire.ConnState) string {
	if c == nil {
		return ""
	}
	md := c.ClientMetadata()
	if md == nil {
		return ""
	}
	name, _ := md.Lookup("application", "name").StringValueOK()
	return name
}

func (h *Handler) configureFailPoint(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	name, _ := req.Command.Lookup("configureFailPoint").StringValueOK()
	if name != "failCommand" {
		return nil, mongoerr.New(mongoerr.BadValue, "Unknown fail point: %q (cmkdb has failCommand only)", name)
	}
	fp := &h.failCommand
	next := failPoint{times: -1}
	mode := req.Command.Lookup("mode")
	switch {
	case mode.Type == bson.TypeString && mode.StringValue() == "off":
	case mode.Type == bson.TypeString && mode.StringValue() == "alwaysOn":
		next.on = true
	case mode.Type == bson.TypeEmbeddedDocument:
		m := mode.Document()
		if v, err := m.LookupErr("times"); err == nil {
			n, ok := v.AsInt64OK()
			if !ok || n < 0 {
				return nil, mongoerr.New(mongoerr.BadValue, "'times' option to 'mode' must be a non-negative number")
			}
			next.on, next.times = n > 0, int(n)
		} else if v, err := m.LookupErr("skip"); err == nil {
			n, ok := v.AsInt64OK()
			if !ok || n < 0 {
				return nil, mongoerr.New(mongoerr.BadValue, "'skip' option to 'mode' must be a non-negative number")
			}
			next.on, next.skip = true, int(n)
		} else {
			return nil, mongoerr.New(mongoerr.BadValue, "'mode' must be one of 'off', 'alwaysOn', 'times', 'skip'")
		}
	default:
		return nil, mongoerr.New(mongoerr.BadValue, "'mode' must be one of 'off', 'alwaysOn', 'times', 'skip'")
	}
	if d, ok := req.Command.Lookup("data").DocumentOK(); ok {
		if arr, ok := d.Lookup("failCommands").ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				if s, ok := v.StringValueOK(); ok {
					next.commands = append(next.commands, s)
				}
			}
		}
		if v, err := d.LookupErr("errorCode"); err == nil {
			n, ok := v.AsInt64OK()
			if !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "'errorCode' must be a number")
			}
			next.errorCode, next.hasCode = int32(n), true
		}
		if arr, ok := d.Lookup("errorLabels").ArrayOK(); ok {
			vals, _ := arr.Values()
			for _, v := range vals {
				if s, ok := v.StringValueOK(); ok {
					next.labels = append(next.labels, s)
				}
			}
		}
		if wc, ok := d.Lookup("writeConcernError").DocumentOK(); ok {
			next.wcError = append(bson.Raw(nil), wc...)
		}
		next.closeConn, _ = d.Lookup("closeConnection").BooleanOK()
		if block, _ := d.Lookup("blockConnection").BooleanOK(); block {
			ms, _ := d.Lookup("blockTimeMS").AsInt64OK()
			next.blockFor = time.Duration(ms) * time.Millisecond
		}
		next.appName, _ = d.Lookup("appName").StringValueOK()
	}
	fp.mu.Lock()
	fp.on, fp.times, fp.skip, fp.commands = next.on, next.times, next.skip, next.commands
	fp.errorCode, fp.hasCode, fp.labels, fp.wcError = next.errorCode, next.hasCode, next.labels, next.wcError
	fp.closeConn, fp.blockFor, fp.appName = next.closeConn, next.blockFor, next.appName
	fp.mu.Unlock()
	return marshal(bson.D{{Key: "count", Value: int32(0)}, {Key: "ok", Value: 1.0}})
}

// applyFailPoint runs the fail point's action for req, if any: it returns
// the error to answer with, or run, which runs the command and, if set,
// adds the writeConcernError to its reply.
func (h *Handler) applyFailPoint(ctx context.Context, c *wire.ConnState, req *wire.Request,
	run func() (bson.Raw, error)) (bson.Raw, error, bool) {
	if !h.opts.TestCommands || req.Name == "configureFailPoint" {
		return nil, nil, false
	}
	a := h.failCommand.match(c, req)
	if a == nil {
		return nil, nil, false
	}
	if a.blockFor > 0 {
		select {
		case <-time.After(a.blockFor):
		case <-ctx.Done():
		}
	}
	if a.err != nil {
		return nil, a.err, true
	}
	reply, err := run()
	if err != nil || a.wcError == nil {
		return reply, err, true
	}
	d := bson.D{}
	if err := bson.Unmarshal(reply, &d); err != nil {
		return nil, err, true
	}
	d = append(d, bson.E{Key: "writeConcernError", Value: a.wcError})
	raw, err := bson.Marshal(d)
	return raw, err, true
}
