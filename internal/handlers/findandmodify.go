package handlers

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// famSpec is a parsed findAndModify.
type famSpec struct {
	filter     bson.Raw
	matcher    *query.Matcher
	sort       *query.Sort
	projection *query.Projection
	update     *query.Update // nil for remove
	remove     bool
	returnNew  bool
	upsert     bool
	bypass     bool          // bypassDocumentValidation
	hint       bson.RawValue // Type 0: none
}

func parseFindAndModify(a args) (*famSpec, error) {
	s := &famSpec{}
	if err := checkFields(a, "findAndModify"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "findAndModify")
	if err != nil {
		return nil, err
	}
	if s.bypass, err = a.bool("bypassDocumentValidation", false); err != nil {
		return nil, err
	}
	if s.hint, _, err = parseHint(a); err != nil {
		return nil, err
	}
	if s.filter, err = a.doc("query"); err != nil {
		return nil, err
	}
	if s.filter, err = letFilter(s.filter, vars); err != nil {
		return nil, err
	}
	if s.matcher, err = query.Compile(s.filter); err != nil {
		return nil, err
	}
	sortSpec, err := a.doc("sort")
	if err != nil {
		return nil, err
	}
	if len(sortSpec) > 5 {
		if s.sort, err = query.CompileSort(sortSpec); err != nil {
			return nil, err
		}
	}
	fields, err := a.doc("fields")
	if err != nil {
		return nil, err
	}
	if len(fields) > 5 {
		if s.projection, err = query.CompileProjection(fields); err != nil {
			return nil, err
		}
	}
	if s.remove, err = a.bool("remove", false); err != nil {
		return nil, err
	}
	if s.returnNew, err = a.bool("new", false); err != nil {
		return nil, err
	}
	if s.upsert, err = a.bool("upsert", false); err != nil {
		return nil, err
	}
	var arrayFilters []bson.Raw
	if v, ok := a.value("arrayFilters"); ok {
		if arrayFilters, err = query.ArrayFiltersArg(v, "findAndModify.arrayFilters"); err != nil {
			return nil, err
		}
	}
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return nil, err
		}
	}
	uv, hasUpdate := a.value("update")
	if hasUpdate && uv.Type == bson.TypeNull {
		hasUpdate = false
	}
	switch {
	case s.remove && hasUpdate:
		return nil, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both an update and remove=true")
	case !s.remove && !hasUpdate:
		return nil, mongoerr.New(mongoerr.FailedToParse, "Either an update or remove=true must be specified")
	case s.remove && s.upsert:
		return nil, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both upsert=true and remove=true ")
	case s.remove && s.returnNew:
		return nil, mongoerr.New(mongoerr.FailedToParse, "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document")
	}
	if hasUpdate {
		switch uv.Type {
		case bson.TypeArray:
			stages, err := pipelineStages(uv)
			if err != nil {
				return nil, err
			}
			if s.update, err = compilePipelineUpdate(stages, arrayFilters, vars); err != nil {
				return nil, err
			}
		case bson.TypeEmbeddedDocument:
			if s.update, err = query.CompileUpdateWithFilters(uv.Document(), arrayFilters); err != nil {
				return nil, err
			}
		default:
			return nil, mongoerr.New(mongoerr.FailedToParse, "Update argument must be either an object or an array")
		}
	}
	return s, nil
}

func (h *Handler) findAndModify(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := docstore.ValidateCollectionName(collName); err != nil {
		return nil, err
	}
	s, err := parseFindAndModify(a)
	if err != nil {
		return nil, err
	}
	st, release, err := h.store(req.DB, s.upsert)
	if err != nil {
		return nil, err
	}
	defer release()
	var (
		value           bson.Raw // the document to return, unprojected
		n               int
		updatedExisting bool
		upserted        bson.RawValue
		reply           bson.Raw
	)
	// body stages the command's one write.
	body := func(w *docstore.Writer, now time.Time) error {
		w.SkipValidation = s.bypass
		coll := w.Collection(collName)
		if coll == nil {
			return nil
		}
		if err := checkHintExists(coll, s.hint); err != nil {
			return err
		}
		doc, err := firstMatch(w, coll, s.filter, s.matcher, s.sort)
		if err != nil {
			return err
		}
		switch {
		case doc != nil && s.remove:
			if err := w.Delete(coll, doc); err != nil {
				return err
			}
			value, n = doc, 1
		case doc != nil:
			nd, _, err := applyUpdate(w, coll, s.update, s.matcher, doc, now)
			if err != nil {
				return err
			}
			value, n, updatedExisting = doc, 1, true
			if s.returnNew {
				value = nd
			}
		case s.upsert:
			nd, err := upsertDoc(w, coll, s.filter, s.update, now)
			if err != nil {
				return err
			}
			n, upserted = 1, nd.Lookup("_id")
			if s.returnNew {
				value = nd
			}
		}
		return nil
	}
	build := func() (bson.Raw, error) {
		leo := bson.D{{Key: "n", Value: int32(n)}}
		if !s.remove {
			leo = append(leo, bson.E{Key: "updatedExisting", Value: updatedExisting})
			if upserted.Type != 0 {
				leo = append(leo, bson.E{Key: "upserted", Value: upserted})
			}
		}
		var v any // nil marshals as BSON null
		if value != nil {
			shown := value
			if s.projection != nil {
				var err error
				if shown, err = s.projection.Apply(value); err != nil {
					return nil, err
				}
			}
			v = shown
		}
		return marshal(bson.D{{Key: "lastErrorObject", Value: leo}, {Key: "value", Value: v}, {Key: "ok", Value: 1.0}})
	}
	if st == nil {
		return build()
	}
	if s.upsert {
		if _, err := ensureCollection(ctx, st, collName); err != nil {
			return nil, err
		}
	}
	now := time.Now()
	err = st.Write(ctx, func(w *docstore.Writer) error {
		if err := body(w, now); err != nil {
			return err
		}
		var err error
		if reply, err = build(); err != nil {
			return err
		}
		// A retry is answered with this reply (retryable.go).
		return recordRetryable(ctx, w, reply)
	})
	var ve *docstore.ValidationError
	if errors.As(err, &ve) {
		// mongod's reply carries errInfo beside the error.
		return marshal(bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: ve.Err.Msg},
			{Key: "code", Value: int32(ve.Err.Code)}, {Key: "codeName", Value: ve.Err.Code.Name()},
			{Key: "errInfo", Value: ve.Info}})
	}
	var dk *docstore.DuplicateKeyError
	if errors.As(err, &dk) {
		// So does a duplicate key's keyPattern and keyValue.
		return marshal(bson.D{{Key: "ok", Value: 0.0}, {Key: "errmsg", Value: dk.Err.Msg},
			{Key: "code", Value: int32(dk.Err.Code)}, {Key: "codeName", Value: dk.Err.Code.Name()},
			{Key: "keyPattern", Value: dk.KeyPattern}, {Key: "keyValue", Value: dk.KeyValue}})
	}
	if err != nil {
		return nil, err
	}
	return reply, nil
}
