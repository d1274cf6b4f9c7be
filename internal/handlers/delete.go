package handlers

import (
	"context"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// deleteStmt is one entry of delete.deletes.
type deleteStmt struct {
	q     bson.Raw
	limit int64         // 0: all matches, 1: the first
	hint  bson.RawValue // Type 0: none
}

func parseDeleteStmt(v bson.RawValue) (*deleteStmt, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'delete.deletes' is the wrong type '%s', expected type 'object'", typeName(v.Type))
	}
	a := args{cmd: d, name: "delete.deletes"}
	elems, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid delete statement: %v", err)
	}
	s := &deleteStmt{}
	var hasQ, hasLimit bool
	for _, e := range elems {
		switch k := e.Key(); k {
		case "q":
			hasQ = true
			if s.q, err = a.doc(k); err != nil {
				return nil, err
			}
		case "limit":
			hasLimit = true
			// Any number is read, and anything but 0 or 1 (42.13 too) is
			// 9 FailedToParse, as mongod's delete parser does.
			f, ok := numberAsFloat(e.Value())
			if !ok {
				return nil, wrongType("delete.deletes.limit", e.Value(), "[long, int, decimal, double]")
			}
			if f != 0 && f != 1 {
				return nil, mongoerr.New(mongoerr.FailedToParse, "The limit field in delete objects must be 0 or 1. Got %s", strconv.FormatFloat(f, 'g', -1, 64))
			}
			s.limit = int64(f)
		case "collation":
			if err := checkCollation(e.Value()); err != nil {
				return nil, err
			}
		case "hint":
			if s.hint, _, err = checkHint(e.Value()); err != nil {
				return nil, err
			}
		default:
			return nil, mongoerr.New(codeUnknownField, "BSON field 'delete.deletes.%s' is an unknown field.", k)
		}
	}
	if !hasQ {
		return nil, mongoerr.New(codeMissingField, "BSON field 'delete.deletes.q' is missing but a required field")
	}
	if !hasLimit {
		return nil, mongoerr.New(codeMissingField, "BSON field 'delete.deletes.limit' is missing but a required field")
	}
	return s, nil
}

// runDelete removes the statement's matches inside w and returns how many.
func runDelete(w *docstore.Writer, coll *docstore.Collection, s *deleteStmt) (int, error) {
	tf, q, _, _, err := splitTextFind(s.q, nil, nil) // text.go
	if err != nil {
		return 0, err
	}
	m, err := query.Compile(q)
	if err != nil {
		return 0, err
	}
	if coll == nil {
		if tf != nil {
			return 0, textIndexRequired()
		}
		return 0, nil
	}
	if err := checkHintExists(coll, s.hint); err != nil {
		return 0, err
	}
	var ids []bson.RawValue
	if tf != nil {
		ids, err = textMatchIDs(w, coll, tf.query, m, int(s.limit))
	} else {
		ids, err = matchIDs(w, coll, q, m, int(s.limit))
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		doc, ok, err := w.Get(coll, id)
		if err != nil {
			return n, err
		}
		if !ok {
			continue
		}
		if err := w.Delete(coll, doc); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (h *Handler) delete(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if err := checkFields(a, "delete"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "delete")
	if err != nil {
		return nil, err
	}
	collName, raw, ordered, err := writeBatch(a, "deletes")
	if err != nil {
		return nil, err
	}
	stmts := make([]*deleteStmt, len(raw))
	for i, v := range raw {
		if stmts[i], err = parseDeleteStmt(v); err != nil {
			return nil, err
		}
		if stmts[i].q, err = letFilter(stmts[i].q, vars); err != nil {
			return nil, err
		}
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var werrs []writeError
	var reply bson.Raw
	n := 0
	run := func(w *docstore.Writer) error {
		var coll *docstore.Collection
		if w != nil {
			coll = w.Collection(collName)
		}
		var err error
		werrs, err = runStatements(len(stmts), ordered, func(i int) error {
			k, err := runDelete(w, coll, stmts[i])
			n += k
			return err
		})
		if err != nil || w == nil {
			return err
		}
		if reply, err = writeReply(bson.D{{Key: "n", Value: int32(n)}}, werrs); err != nil {
			return err
		}
		return recordRetryable(ctx, w, reply)
	}
	if st != nil {
		err = st.Write(ctx, run)
	} else {
		err = run(nil) // no database: only the filters are checked
	}
	if err != nil {
		return nil, err
	}
	if reply != nil {
		return reply, nil
	}
	return writeReply(bson.D{{Key: "n", Value: int32(n)}}, werrs)
}
