package wire

import (
	"errors"
	"strconv"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// ErrorReply renders err as a command failure document {ok: 0, errmsg,
// code, codeName}. A *mongoerr.Error anywhere in err's chain supplies the
// code and message; anything else is an InternalError with err's text.
func ErrorReply(err error) bson.Raw {
	code, msg := mongoerr.InternalError, err.Error()
	var labels []string
	var me *mongoerr.Error
	if errors.As(err, &me) {
		code, msg, labels = me.Code, me.Msg, me.Labels
	}
	idx, dst := bsoncore.AppendDocumentStart(make([]byte, 0, 64+len(msg)))
	dst = bsoncore.AppendDoubleElement(dst, "ok", 0)
	dst = bsoncore.AppendStringElement(dst, "errmsg", msg)
	dst = bsoncore.AppendInt32Element(dst, "code", int32(code))
	dst = bsoncore.AppendStringElement(dst, "codeName", code.Name())
	if len(labels) > 0 {
		var aidx int32
		aidx, dst = bsoncore.AppendArrayElementStart(dst, "errorLabels")
		for i, l := range labels {
			dst = bsoncore.AppendStringElement(dst, strconv.Itoa(i), l)
		}
		dst, _ = bsoncore.AppendArrayEnd(dst, aidx)
	}
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// legacyErrorReply is ErrorReply plus the "$err" field OP_REPLY clients
// look for when the QueryFailure flag is set.
func legacyErrorReply(err error) bson.Raw {
	base := ErrorReply(err)
	idx, dst := bsoncore.AppendDocumentStart(make([]byte, 0, 2*len(base)))
	errmsg, _ := bson.Raw(base).Lookup("errmsg").StringValueOK()
	dst = bsoncore.AppendStringElement(dst, "$err", errmsg)
	dst = append(dst, base[4:len(base)-1]...)
	dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
	return dst
}

// finishReply checks a handler's reply and appends ok: 1 if it has no "ok"
// field, so handlers can return just their payload.
func finishReply(doc bson.Raw) (bson.Raw, error) {
	if len(doc) == 0 {
		doc = emptyDoc()
	}
	if err := bsoncore.Document(doc).Validate(); err != nil {
		return nil, mongoerr.New(mongoerr.InternalError, "handler returned an invalid reply: %s", err)
	}
	if len(doc) > MaxBSONInternalSize {
		return nil, mongoerr.New(mongoerr.BSONObjectTooLarge, "reply of %d bytes exceeds the %d-byte limit", len(doc), MaxBSONInternalSize)
	}
	if _, err := doc.LookupErr("ok"); err == nil {
		return doc, nil
	}
	out := make([]byte, 0, len(doc)+16)
	out = append(out, doc[:len(doc)-1]...)
	out = bsoncore.AppendDoubleElement(out, "ok", 1)
	out = append(out, 0)
	return finishDoc(out), nil
}

func emptyDoc() bson.Raw { return bson.Raw{5, 0, 0, 0, 0} }

// finishDoc rewrites the length prefix of a document built in place.
func finishDoc(doc []byte) []byte {
	n := uint32(len(doc))
	doc[0], doc[1], doc[2], doc[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	return doc
}
