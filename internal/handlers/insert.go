package handlers

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// writeError is one entry of a write command's writeErrors.
type writeError struct {
	index int
	err   error
}

func writeErrorsDoc(errs []writeError) bson.A {
	out := make(bson.A, 0, len(errs))
	for _, we := range errs {
		code := mongoerr.CodeOf(we.err)
		msg := we.err.Error()
		var me *mongoerr.Error
		if errors.As(we.err, &me) {
			msg = me.Msg
		}
		d := bson.D{{Key: "index", Value: int32(we.index)}, {Key: "code", Value: int32(code)},
			{Key: "codeName", Value: code.Name()}, {Key: "errmsg", Value: msg}}
		var ve *docstore.ValidationError
		if errors.As(we.err, &ve) && ve.Info != nil {
			d = append(d, bson.E{Key: "errInfo", Value: ve.Info})
		}
		var dk *docstore.DuplicateKeyError
		if errors.As(we.err, &dk) {
			d = append(d, bson.E{Key: "keyPattern", Value: dk.KeyPattern}, bson.E{Key: "keyValue", Value: dk.KeyValue})
		}
		out = append(out, d)
	}
	return out
}

// isStorageFailure tells errors that fail the whole command (node
// disabled, storage error) from per-document write errors.
func isStorageFailure(err error) bool {
	var me *mongoerr.Error
	return !errors.As(err, &me) || me.Code == KeyUnavailable
}

// withID returns doc with _id as its first field, as mongod stores it:
// an existing _id is moved to the front, a missing one is generated (an
// ObjectId).
func withID(doc bson.Raw) (bson.Raw, error) {
	if err := bsoncore.Document(doc).Validate(); err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid document: %v", err)
	}
	elems, err := bsoncore.Document(doc).Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid document: %v", err)
	}
	if len(elems) > 0 && elems[0].Key() == "_id" {
		return doc, nil
	}
	idx, dst := bsoncore.AppendDocumentStart(make([]byte, 0, len(doc)+17))
	found := false
	for _, e := range elems {
		if e.Key() == "_id" {
			dst = append(dst, e...)
			found = true
			break
		}
	}
	if !found {
		dst = bsoncore.AppendObjectIDElement(dst, "_id", bson.NewObjectID())
	}
	for _, e := range elems {
		if e.Key() != "_id" {
			dst = append(dst, e...)
		}
	}
	return bsoncore.AppendDocumentEnd(dst, idx)
}

func validateInsertDoc(doc bson.Raw) error {
	elems, err := doc.Elements()
	if err != nil {
		return mongoerr.New(mongoerr.BadValue, "invalid document: %v", err)
	}
	// Field names starting with '$' are allowed (MongoDB 5.0+), but not in
	// an _id document, which the server must be able to match on.
	for _, e := range elems {
		if e.Key() != "_id" {
			continue
		}
		if id, ok := e.Value().DocumentOK(); ok {
			idElems, _ := id.Elements()
			for _, ie := range idElems {
				if k := ie.Key(); len(k) > 0 && k[0] == '$' {
					return mongoerr.New(mongoerr.DollarPrefixedFieldName, "_id fields may not contain '$'-prefixed fields: %s is not valid for storage.", k)
				}
			}
		}
	}
	if len(doc) > maxBSONSize {
		return mongoerr.New(mongoerr.BSONObjectTooLarge, "object to insert too large. size in bytes: %d, max size: %d", len(doc), maxBSONSize)
	}
	return nil
}

func (h *Handler) insert(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if err := checkFields(a, "insert"); err != nil {
		return nil, err
	}
	bypass, err := a.bool("bypassDocumentValidation", false)
	if err != nil {
		return nil, err
	}
	collName, docs, ordered, err := writeBatch(a, "documents")
	if err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, true)
	if err != nil {
		return nil, err
	}
	defer release()
	if _, err := ensureCollection(ctx, st, collName); err != nil {
		return nil, err
	}
	var werrs []writeError
	var reply bson.Raw
	n := 0
	err = st.Write(ctx, func(w *docstore.Writer) error {
		w.SkipValidation = bypass
		// The catalog as of the write lock: a collMod that changed the
		// validator or a drop just before must be seen.
		coll := w.Collection(collName)
		if coll == nil {
			return mongoerr.New(mongoerr.NamespaceNotFound, "collection %s.%s was dropped during the insert", req.DB, collName)
		}
		var err error
		werrs, err = runStatements(len(docs), ordered, func(i int) error {
			d, ok := docs[i].DocumentOK()
			if !ok {
				return mongoerr.New(mongoerr.TypeMismatch, "documents[%d] is not an object", i)
			}
			d, err := withID(d)
			if err == nil {
				err = validateInsertDoc(d)
			}
			if err == nil {
				err = w.Insert(coll, d)
			}
			if err == nil {
				n++
			}
			return err
		})
		if err != nil {
			return err
		}
		if reply, err = writeReply(bson.D{{Key: "n", Value: int32(n)}}, werrs); err != nil {
			return err
		}
		return recordRetryable(ctx, w, reply)
	})
	if err != nil {
		return nil, err
	}
	return reply, nil
}
