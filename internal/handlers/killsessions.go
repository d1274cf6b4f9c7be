package handlers

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// killSessions {killSessions: [{id: UUID}, …]} and killAllSessions
// {killAllSessions: []} end sessions at once: their open transactions are
// aborted and the cursors opened under them killed (each cursor records
// the session of the command that opened it: sessionKey). killAllSessions
// with a list of users ({user, db}) is refused (238): cmkdb does not keep
// who owns a session.

type sessionCtxKey struct{}

// withSession records the request's session id in ctx, for the cursors
// the command opens.
func withSession(ctx context.Context, req *wire.Request) context.Context {
	if d, ok := req.Command.Lookup("lsid").DocumentOK(); ok {
		if _, id, ok := d.Lookup("id").BinaryOK(); ok {
			return context.WithValue(ctx, sessionCtxKey{}, string(id))
		}
	}
	return ctx
}

// sessionOf is the session a command runs under ("" for none).
func sessionOf(ctx context.Context) string {
	s, _ := ctx.Value(sessionCtxKey{}).(string)
	return s
}

func (h *Handler) killAllSessions(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	arr, ok := req.Command.Lookup("killAllSessions").ArrayOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'killAllSessions' is the wrong type, expected type 'array'")
	}
	if vals, _ := arr.Values(); len(vals) > 0 {
		return nil, mongoerr.New(mongoerr.NotImplemented, "killAllSessions for a list of users is not supported: cmkdb does not record who owns a session")
	}
	h.killSessionsWhere(func(string) bool { return true })
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

func (h *Handler) killSessions(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	arr, ok := req.Command.Lookup("killSessions").ArrayOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'killSessions' is the wrong type, expected type 'array'")
	}
	vals, _ := arr.Values()
	ids := map[string]bool{}
	for _, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "killSessions takes an array of session ids ({id: UUID})")
		}
		_, id, ok := d.Lookup("id").BinaryOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "killSessions takes an array of session ids ({id: UUID})")
		}
		ids[string(id)] = true
	}
	h.killSessionsWhere(func(s string) bool { return ids[s] })
	return marshal(bson.D{{Key: "ok", Value: 1.0}})
}

// killSessionsWhere aborts the transactions and kills the cursors of the
// sessions match selects.
func (h *Handler) killSessionsWhere(match func(string) bool) {
	h.txns.mu.Lock()
	var lsids []string
	for id := range h.txns.sessions {
		if match(id) {
			lsids = append(lsids, id)
		}
	}
	h.txns.mu.Unlock()
	for _, id := range lsids {
		h.endSessionTxn([]byte(id))
	}
	h.cursors.mu.Lock()
	var kill []int64
	for id, cur := range h.cursors.cursors {
		if cur.session != "" && match(cur.session) {
			kill = append(kill, id)
		}
	}
	h.cursors.mu.Unlock()
	for _, id := range kill {
		h.cursors.remove(id)
	}
}
