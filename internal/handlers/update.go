package handlers

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Codes of MongoDB's IDL parser for write statements.
const (
	codeMissingField mongoerr.Code = 40414 // "BSON field ... is missing but a required field"
	codeUnknownField mongoerr.Code = 40415 // "BSON field ... is an unknown field."
	codeTooLarge     mongoerr.Code = 17419 // "Resulting document after update is larger than ..."
)

// updateStmt is one entry of update.updates.
type updateStmt struct {
	q, u     bson.Raw
	pipeline bool       // u is an array: a pipeline update
	stages   []bson.Raw // its stages
	// vars are the constants a pipeline update sees: the command's let
	// and the statement's c.
	vars     map[string]bson.RawValue
	hasConst bool // c was given
	upsert   bool
	multi    bool
	filters  []bson.Raw    // arrayFilters
	hint     bson.RawValue // Type 0: none
}

// parseUpdateStmt reads one statement. Its shape errors fail the whole
// command, as mongod's command parser does.
func parseUpdateStmt(v bson.RawValue) (*updateStmt, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'update.updates' is the wrong type '%s', expected type 'object'", typeName(v.Type))
	}
	a := args{cmd: d, name: "update.updates"}
	s := &updateStmt{}
	elems, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid update statement: %v", err)
	}
	var hasQ, hasU bool
	for _, e := range elems {
		switch k := e.Key(); k {
		case "q":
			hasQ = true
			if s.q, err = a.doc("q"); err != nil {
				return nil, err
			}
		case "u":
			hasU = true
			uv := e.Value()
			switch uv.Type {
			case bson.TypeEmbeddedDocument:
				s.u = uv.Document()
			case bson.TypeArray:
				s.pipeline = true
				if s.stages, err = pipelineStages(uv); err != nil {
					return nil, err
				}
			default:
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field 'update.updates.u' is the wrong type '%s', expected type 'object' or 'array'", typeName(uv.Type))
			}
		case "upsert":
			if s.upsert, err = a.bool(k, false); err != nil {
				return nil, err
			}
		case "multi":
			if s.multi, err = a.bool(k, false); err != nil {
				return nil, err
			}
		case "sort":
			// An update statement's sort came with MongoDB 8.0; a 7.0
			// server refuses the field, as cmkdb does (the drivers' CRUD
			// specification tests check it).
			return nil, mongoerr.New(codeUnknownField, "BSON field 'update.updates.%s' is an unknown field.", k)
		case "arrayFilters":
			if s.filters, err = query.ArrayFiltersArg(e.Value(), "update.updates.arrayFilters"); err != nil {
				return nil, err
			}
		case "collation":
			if err := checkCollation(e.Value()); err != nil {
				return nil, err
			}
		case "hint":
			if s.hint, _, err = checkHint(e.Value()); err != nil {
				return nil, err
			}
		case "c":
			s.hasConst = true
			if s.vars, err = parseVars(a, "c", "update.updates"); err != nil {
				return nil, err
			}
		case "upsertSupplied":
		default:
			return nil, mongoerr.New(codeUnknownField, "BSON field 'update.updates.%s' is an unknown field.", k)
		}
	}
	if !hasQ {
		return nil, mongoerr.New(codeMissingField, "BSON field 'update.updates.q' is missing but a required field")
	}
	if !hasU {
		return nil, mongoerr.New(codeMissingField, "BSON field 'update.updates.u' is missing but a required field")
	}
	return s, nil
}

// checkCollation accepts only the simple (binary) collation cmkdb has. Any
// other collation is refused: comparing in binary order instead would
// silently change what a query matches and how it sorts. NotImplemented
// (238) is mongod's code for a feature it knows but the deployment does
// not offer (a mongod built without ICU is the closest real case).
func checkCollation(v bson.RawValue) error {
	if v.Type == bson.TypeNull {
		return nil
	}
	d, ok := v.DocumentOK()
	if !ok {
		return mongoerr.New(mongoerr.TypeMismatch, "collation must be an object")
	}
	if len(d) <= 5 {
		return nil // {} is no collation, as in mongod
	}
	lv, err := d.LookupErr("locale")
	if err != nil {
		return mongoerr.New(codeMissingField, "BSON field 'locale' is missing but a required field")
	}
	loc, ok := lv.StringValueOK()
	if !ok {
		return mongoerr.New(mongoerr.TypeMismatch, "BSON field 'locale' is the wrong type '%s', expected type 'string'", typeName(lv.Type))
	}
	if loc == "simple" {
		return nil
	}
	return mongoerr.New(mongoerr.NotImplemented, "collation with locale '%s' is not supported: cmkdb compares strings by their binary (simple) collation only", loc)
}

// compiledUpdate is a statement ready to run.
type compiledUpdate struct {
	filter  bson.Raw
	matcher *query.Matcher
	update  *query.Update
	sort    *query.Sort
}

func compileUpdateStmt(s *updateStmt) (*compiledUpdate, error) {
	m, err := query.Compile(s.q)
	if err != nil {
		return nil, err
	}
	var u *query.Update
	if s.pipeline {
		u, err = compilePipelineUpdate(s.stages, s.filters, s.vars)
	} else if s.hasConst {
		err = mongoerr.New(codeConstNotPipeline, "Constant values may only be specified for pipeline updates")
	} else {
		u, err = query.CompileUpdateWithFilters(s.u, s.filters)
	}
	if err != nil {
		return nil, err
	}
	if s.multi && u.IsReplacement() {
		return nil, mongoerr.New(mongoerr.FailedToParse, "multi update is not supported for replacement-style update")
	}
	cu := &compiledUpdate{filter: s.q, matcher: m, update: u}
	return cu, nil
}

// matchIDs returns the _ids of coll's documents that match filter (at most
// limit of them; 0 means all), reading through w so that the staged writes
// of earlier statements count. Collecting the ids before writing anything
// is what keeps a multi-document write from meeting the documents it has
// already changed again further along an index (the Halloween problem).
func matchIDs(w *docstore.Writer, coll *docstore.Collection, filter bson.Raw, m *query.Matcher, limit int) ([]bson.RawValue, error) {
	plan, err := docstore.PlanFor(coll, filter)
	if err != nil {
		return nil, err
	}
	var ids []bson.RawValue
	var pos docstore.Position
	err = w.Scan(coll, plan, &pos, func(doc bson.Raw) (bool, error) {
		if !m.Match(doc) {
			return true, nil
		}
		id, err := docstore.IDOf(doc)
		if err != nil {
			return false, err
		}
		ids = append(ids, id)
		return limit == 0 || len(ids) < limit, nil
	})
	return ids, err
}

// firstMatch returns the first document matching filter, in sort order if
// sort is set (scanning every match), or nil.
func firstMatch(w *docstore.Writer, coll *docstore.Collection, filter bson.Raw, m *query.Matcher, sort *query.Sort) (bson.Raw, error) {
	if sort == nil {
		ids, err := matchIDs(w, coll, filter, m, 1)
		if err != nil || len(ids) == 0 {
			return nil, err
		}
		doc, _, err := w.Get(coll, ids[0])
		return doc, err
	}
	plan, err := docstore.PlanFor(coll, filter)
	if err != nil {
		return nil, err
	}
	var best bson.Raw
	var bestKey []bson.RawValue
	var pos docstore.Position
	err = w.Scan(coll, plan, &pos, func(doc bson.Raw) (bool, error) {
		if !m.Match(doc) {
			return true, nil
		}
		if k := sort.Key(doc); best == nil || sort.CompareKeys(k, bestKey) < 0 {
			best, bestKey = doc, k
		}
		return true, nil
	})
	return best, err
}

// applyUpdate updates one stored document, which m (the statement's
// filter, for a positional update) matched; it reports whether the
// document changed, and returns the new version.
func applyUpdate(w *docstore.Writer, coll *docstore.Collection, u *query.Update, m *query.Matcher, doc bson.Raw, now time.Time) (bson.Raw, bool, error) {
	nd, changed, err := u.Apply(doc, query.ApplyOptions{Now: now, Query: m})
	if err != nil || !changed {
		return doc, false, err
	}
	if len(nd) > maxBSONSize {
		return nil, false, mongoerr.New(codeTooLarge, "Resulting document after update is larger than %d", maxBSONSize)
	}
	replace := w.Replace
	if u.IsReplacement() {
		replace = w.ReplaceWhole
	}
	if err := replace(coll, doc, nd); err != nil {
		return nil, false, err
	}
	return nd, true, nil
}

// upsertDoc builds and inserts an upsert's new document.
func upsertDoc(w *docstore.Writer, coll *docstore.Collection, filter bson.Raw, u *query.Update, now time.Time) (bson.Raw, error) {
	doc, err := query.UpsertDocument(filter, u, query.ApplyOptions{Now: now})
	if err != nil {
		return nil, err
	}
	if err := validateInsertDoc(doc); err != nil {
		return nil, err
	}
	if err := w.Insert(coll, doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// updateResult is what one update statement did.
type updateResult struct {
	matched, modified int
	upserted          bson.RawValue // Type 0 if none
}

// runUpdate executes one compiled statement inside w. coll may be nil
// (the collection does not exist and the statement does not upsert).
func runUpdate(w *docstore.Writer, coll *docstore.Collection, cu *compiledUpdate, multi, upsert bool, now time.Time) (updateResult, error) {
	var r updateResult
	if coll == nil {
		return r, nil
	}
	var ids []bson.RawValue
	if cu.sort != nil {
		doc, err := firstMatch(w, coll, cu.filter, cu.matcher, cu.sort)
		if err != nil {
			return r, err
		}
		if doc != nil {
			ids = append(ids, doc.Lookup("_id"))
		}
	} else {
		limit := 1
		if multi {
			limit = 0
		}
		var err error
		if ids, err = matchIDs(w, coll, cu.filter, cu.matcher, limit); err != nil {
			return r, err
		}
	}
	for _, id := range ids {
		doc, ok, err := w.Get(coll, id)
		if err != nil {
			return r, err
		}
		if !ok || !cu.matcher.Match(doc) {
			continue
		}
		r.matched++
		_, changed, err := applyUpdate(w, coll, cu.update, cu.matcher, doc, now)
		if err != nil {
			return r, err
		}
		if changed {
			r.modified++
		}
	}
	if r.matched == 0 && upsert {
		doc, err := upsertDoc(w, coll, cu.filter, cu.update, now)
		if err != nil {
			return r, err
		}
		r.matched = 1
		r.upserted = doc.Lookup("_id")
	}
	return r, nil
}

func (h *Handler) update(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if err := checkFields(a, "update"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "update")
	if err != nil {
		return nil, err
	}
	bypass, err := a.bool("bypassDocumentValidation", false)
	if err != nil {
		return nil, err
	}
	collName, raw, ordered, err := writeBatch(a, "updates")
	if err != nil {
		return nil, err
	}
	stmts := make([]*updateStmt, len(raw))
	anyUpsert := false
	for i, v := range raw {
		if stmts[i], err = parseUpdateStmt(v); err != nil {
			return nil, err
		}
		if stmts[i].q, err = letFilter(stmts[i].q, vars); err != nil {
			return nil, err
		}
		stmts[i].vars = mergeVars(vars, stmts[i].vars)
		anyUpsert = anyUpsert || stmts[i].upsert
	}

	st, release, err := h.store(req.DB, anyUpsert)
	if err != nil {
		return nil, err
	}
	defer release()
	var (
		werrs             []writeError
		matched, modified int
		upserted          bson.A
		reply             bson.Raw
	)
	counts := func() bson.D {
		d := bson.D{{Key: "n", Value: int32(matched)}, {Key: "nModified", Value: int32(modified)}}
		if len(upserted) > 0 {
			d = append(d, bson.E{Key: "upserted", Value: upserted})
		}
		return d
	}
	if st != nil {
		if anyUpsert {
			if _, err := ensureCollection(ctx, st, collName); err != nil {
				return nil, err
			}
		}
		now := time.Now()
		err = st.Write(ctx, func(w *docstore.Writer) error {
			w.SkipValidation = bypass
			coll := w.Collection(collName)
			var err error
			werrs, err = runStatements(len(stmts), ordered, func(i int) error {
				cu, err := compileUpdateStmt(stmts[i])
				if err == nil {
					err = checkHintExists(coll, stmts[i].hint)
				}
				var r updateResult
				if err == nil {
					r, err = runUpdate(w, coll, cu, stmts[i].multi, stmts[i].upsert, now)
				}
				if err != nil {
					return err // a failed statement counts nothing, as in mongod
				}
				matched += r.matched
				modified += r.modified
				if r.upserted.Type != 0 {
					upserted = append(upserted, bson.D{{Key: "index", Value: int32(i)}, {Key: "_id", Value: r.upserted}})
				}
				return err
			})
			if err != nil {
				return err
			}
			if reply, err = writeReply(counts(), werrs); err != nil {
				return err
			}
			return recordRetryable(ctx, w, reply)
		})
		if err != nil {
			return nil, err
		}
		return reply, nil
	} else {
		// No database: nothing matches; statements still get checked.
		werrs, _ = runStatements(len(stmts), ordered, func(i int) error {
			_, err := compileUpdateStmt(stmts[i])
			return err
		})
	}
	return writeReply(counts(), werrs)
}

// codeConstNotPipeline is mongod's error for an update statement's c
// without a pipeline update.
const codeConstNotPipeline mongoerr.Code = 51198

// pipelineStages reads a pipeline-style update's stages (each a document).
func pipelineStages(v bson.RawValue) ([]bson.Raw, error) {
	vals, err := v.Array().Values()
	if err != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "invalid update pipeline: %v", err)
	}
	stages := make([]bson.Raw, len(vals))
	for i, sv := range vals {
		d, ok := sv.DocumentOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		stages[i] = d
	}
	return stages, nil
}

// compilePipelineUpdate compiles a pipeline-style update (update and
// findAndModify), with its constants substituted.
func compilePipelineUpdate(stages, arrayFilters []bson.Raw, vars map[string]bson.RawValue) (*query.Update, error) {
	if len(arrayFilters) > 0 {
		return nil, mongoerr.New(mongoerr.FailedToParse, "arrayFilters may not be specified for pipeline-syle updates")
	}
	stages, err := letPipeline(stages, vars)
	if err != nil {
		return nil, err
	}
	return query.CompileUpdatePipeline(stages)
}

// mergeVars is a and b together, b's names winning; nil when both are
// empty.
func mergeVars(a, b map[string]bson.RawValue) map[string]bson.RawValue {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make(map[string]bson.RawValue, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
