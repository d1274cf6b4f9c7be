package handlers

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// explain reports how a find, aggregate, count, distinct, update, delete
// or findAndModify runs: queryPlanner (the plan chosen; cmkdb's planner
// builds one candidate plan per query, so rejectedPlans is empty), and at
// executionStats and allPlansExecution the same plan run to the end with
// the counters the scan kept (documents and index keys read, documents
// each stage returned). Writes are not applied: update and delete report
// what they would modify, as mongod does.

type verbosity int

const (
	vQueryPlanner verbosity = iota
	vExecutionStats
	vAllPlansExecution
)

func parseVerbosity(a args) (verbosity, error) {
	v, ok := a.value("verbosity")
	if !ok {
		return vAllPlansExecution, nil // mongod's default
	}
	s, ok := v.StringValueOK()
	if !ok {
		return 0, mongoerr.New(mongoerr.FailedToParse, "explain verbosity must be a string")
	}
	switch s {
	case "queryPlanner":
		return vQueryPlanner, nil
	case "executionStats":
		return vExecutionStats, nil
	case "allPlansExecution":
		return vAllPlansExecution, nil
	}
	return 0, mongoerr.New(mongoerr.FailedToParse, "verbosity string must be one of {'queryPlanner', 'executionStats', 'allPlansExecution'}")
}

// planStage is one stage of a plan tree: what queryPlanner shows (fields)
// and what executionStats adds (stats).
type planStage struct {
	fields bson.D
	stats  bson.D
	input  *planStage
}

func (s *planStage) doc(withStats bool) bson.D {
	d := append(bson.D{}, s.fields...)
	if withStats {
		d = append(d, s.stats...)
	}
	if s.input != nil {
		d = append(d, bson.E{Key: "inputStage", Value: s.input.doc(withStats)})
	}
	return d
}

// wrap puts a stage over s.
func (s *planStage) wrap(fields bson.D, nReturned int64, extra ...bson.E) *planStage {
	stats := append(bson.D{{Key: "nReturned", Value: nReturned}}, s.timeStat()...)
	return &planStage{fields: fields, stats: append(stats, extra...), input: s}
}

// timeStat repeats the leaf's time: every stage of a plan runs within it.
func (s *planStage) timeStat() bson.D {
	for _, e := range s.stats {
		if e.Key == "executionTimeMillisEstimate" {
			return bson.D{e}
		}
	}
	return nil
}

// explainRun is one explained query: its plan tree and, when run, its
// counters.
type explainRun struct {
	ns        string
	filter    bson.Raw
	root      *planStage
	executed  bool
	nReturned int64
	keys      int64
	docs      int64
	millis    int64
}

func (r *explainRun) queryPlanner() bson.D {
	return bson.D{
		{Key: "namespace", Value: r.ns},
		{Key: "indexFilterSet", Value: false},
		{Key: "parsedQuery", Value: parsedQuery(r.filter)},
		{Key: "winningPlan", Value: r.root.doc(false)},
		{Key: "rejectedPlans", Value: bson.A{}},
	}
}

func (r *explainRun) executionStats(v verbosity) bson.D {
	d := bson.D{
		{Key: "executionSuccess", Value: true},
		{Key: "nReturned", Value: r.nReturned},
		{Key: "executionTimeMillis", Value: r.millis},
		{Key: "totalKeysExamined", Value: r.keys},
		{Key: "totalDocsExamined", Value: r.docs},
		{Key: "executionStages", Value: r.root.doc(true)},
	}
	if v == vAllPlansExecution {
		// One candidate plan: no other plan was tried.
		d = append(d, bson.E{Key: "allPlansExecution", Value: bson.A{}})
	}
	return d
}

// parsedQuery normalizes a filter as mongod's explain prints it: each
// field's predicates as {field: {$op: value}}, several joined by $and.
func parsedQuery(filter bson.Raw) bson.Raw {
	var preds bson.A
	elems, _ := filter.Elements()
	for _, e := range elems {
		k, v := e.Key(), e.Value()
		if len(k) > 0 && k[0] == '$' {
			preds = append(preds, bson.D{{Key: k, Value: v}})
			continue
		}
		if d, ok := v.DocumentOK(); ok {
			if ops, _ := d.Elements(); len(ops) > 0 && len(ops[0].Key()) > 0 && ops[0].Key()[0] == '$' {
				for _, op := range ops {
					preds = append(preds, bson.D{{Key: k, Value: bson.D{{Key: op.Key(), Value: op.Value()}}}})
				}
				continue
			}
		}
		if v.Type == bson.TypeRegex {
			preds = append(preds, bson.D{{Key: k, Value: bson.D{{Key: "$regex", Value: v}}}})
			continue
		}
		preds = append(preds, bson.D{{Key: k, Value: bson.D{{Key: "$eq", Value: v}}}})
	}
	var out any = bson.D{}
	switch len(preds) {
	case 0:
	case 1:
		out = preds[0]
	default:
		out = bson.D{{Key: "$and", Value: preds}}
	}
	raw, err := bson.Marshal(out)
	if err != nil {
		return filter
	}
	return raw
}

// leafStage is the access stage of plan: COLLSCAN, IDHACK, or FETCH over
// IXSCAN, with the scan's counters.
func leafStage(plan docstore.Plan, filter bson.Raw, pos *docstore.Position, matched int64, eof bool, took time.Duration) *planStage {
	ms := bson.E{Key: "executionTimeMillisEstimate", Value: took.Milliseconds()}
	hasFilter := len(filter) > 5
	if plan.Index == nil {
		dir := "forward"
		if plan.Natural < 0 {
			dir = "backward"
		}
		f := bson.D{{Key: "stage", Value: "COLLSCAN"}}
		if hasFilter {
			f = append(f, bson.E{Key: "filter", Value: parsedQuery(filter)})
		}
		f = append(f, bson.E{Key: "direction", Value: dir})
		return &planStage{fields: f, stats: bson.D{{Key: "nReturned", Value: matched}, ms,
			{Key: "isEOF", Value: eof}, {Key: "docsExamined", Value: pos.Docs}}}
	}
	if plan.Index.ID == 0 && isIDEquality(filter) {
		// mongod's fast path for an equality on _id.
		return &planStage{fields: bson.D{{Key: "stage", Value: "IDHACK"}}, stats: bson.D{{Key: "nReturned", Value: matched}, ms,
			{Key: "isEOF", Value: eof}, {Key: "keysExamined", Value: pos.Keys}, {Key: "docsExamined", Value: pos.Docs}}}
	}
	ix := plan.Index
	bounds := bson.D{}
	for _, fb := range plan.Bounds {
		ivs := bson.A{}
		for _, s := range fb.Intervals {
			ivs = append(ivs, s)
		}
		bounds = append(bounds, bson.E{Key: fb.Field, Value: ivs})
	}
	scan := &planStage{fields: bson.D{
		{Key: "stage", Value: "IXSCAN"},
		{Key: "keyPattern", Value: ix.Key},
		{Key: "indexName", Value: ix.Name},
		// cmkdb plans every secondary index as multikey (it keeps no
		// per-index multikey flag): bounds are never intersected.
		{Key: "isMultiKey", Value: ix.ID != 0},
		{Key: "isUnique", Value: ix.Unique},
		{Key: "isSparse", Value: ix.Sparse},
		{Key: "isPartial", Value: len(ix.PartialFilter) > 0},
		{Key: "indexVersion", Value: int32(2)},
		{Key: "direction", Value: "forward"},
		{Key: "indexBounds", Value: bounds},
	}, stats: bson.D{{Key: "nReturned", Value: pos.Docs}, ms, {Key: "isEOF", Value: eof},
		{Key: "keysExamined", Value: pos.Keys}, {Key: "seeks", Value: pos.Seeks},
		{Key: "dupsTested", Value: pos.Keys}, {Key: "dupsDropped", Value: pos.Keys - pos.Docs}}}
	f := bson.D{{Key: "stage", Value: "FETCH"}}
	if hasFilter {
		// Fetched documents are always matched against the whole filter.
		f = append(f, bson.E{Key: "filter", Value: parsedQuery(filter)})
	}
	return &planStage{fields: f, stats: bson.D{{Key: "nReturned", Value: matched}, ms, {Key: "isEOF", Value: eof},
		{Key: "docsExamined", Value: pos.Docs}}, input: scan}
}

func isIDEquality(filter bson.Raw) bool {
	elems, err := filter.Elements()
	if err != nil || len(elems) != 1 || elems[0].Key() != "_id" {
		return false
	}
	v := elems[0].Value()
	switch v.Type {
	case bson.TypeEmbeddedDocument, bson.TypeArray, bson.TypeRegex, bson.TypeNull, bson.TypeUndefined, bson.TypeMinKey, bson.TypeMaxKey:
		return false
	}
	return true
}

// runExplained plans spec and, with execute, runs it to the end the way
// find does (scan, filter, sort, skip, limit, projection), counting what
// each stage did. each, when set, receives every document the query
// returns (aggregate's next stages, a write's would-be changes).
func (h *Handler) runExplained(ctx context.Context, spec *findSpec, execute bool, each func(bson.Raw) error) (*explainRun, error) {
	r := &explainRun{ns: spec.db + "." + spec.coll, filter: spec.filter}
	if r.filter == nil {
		r.filter = bson.Raw{5, 0, 0, 0, 0}
	}
	st, release, err := h.store(spec.db, false)
	if err != nil {
		return nil, err
	}
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(spec.coll)
	}
	release()
	if coll == nil {
		r.root = &planStage{fields: bson.D{{Key: "stage", Value: "EOF"}}, stats: bson.D{{Key: "nReturned", Value: int64(0)},
			{Key: "executionTimeMillisEstimate", Value: int64(0)}, {Key: "isEOF", Value: true}}}
		r.executed = execute
		return r, nil
	}
	plan, err := planFor(coll, spec.filter, spec.hint, spec.natural)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	// The scan: the filter only; sort, skip, limit and projection are
	// applied below, stage by stage.
	raw := &findSpec{db: spec.db, coll: spec.coll, filter: spec.filter, matcher: spec.matcher, hint: spec.hint, natural: spec.natural}
	stopAt := int64(0)
	if spec.sort == nil && spec.limit > 0 {
		stopAt = spec.skip + spec.limit // a limit without a sort ends the scan early
		raw.limit = stopAt
	}
	src := &scanSource{spec: raw, plan: plan, planned: true}
	var docs []bson.Raw
	var matched int64
	held := 0
	if execute {
		for {
			batch, done, err := src.next(ctx, h, 1<<12)
			if err != nil {
				return nil, err
			}
			for _, d := range batch {
				if stopAt > 0 && matched >= stopAt {
					done = true
					break
				}
				matched++
				if spec.sort != nil {
					held += len(d)
					if held > maxSortBytes {
						return nil, mongoerr.New(292, "Executor error during find command :: caused by :: Sort exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxSortBytes)
					}
				}
				docs = append(docs, d)
			}
			if done || (stopAt > 0 && matched >= stopAt) {
				break
			}
			if spec.sort == nil && each == nil && len(docs) > 1<<12 {
				docs = docs[:0] // only counted: keep memory flat
			}
		}
	}
	took := time.Since(start)
	eof := src.pos.Done() || (stopAt > 0 && matched >= stopAt)
	stage := leafStage(plan, spec.filter, &src.pos, matched, eof, took)
	n := matched
	if spec.sort != nil {
		if execute {
			keys := make([][]bson.RawValue, len(docs))
			for i, d := range docs {
				keys[i] = spec.sort.Key(d)
			}
			idx := make([]int, len(docs))
			for i := range idx {
				idx[i] = i
			}
			sort.SliceStable(idx, func(a, b int) bool { return spec.sort.CompareKeys(keys[idx[a]], keys[idx[b]]) < 0 })
			sorted := make([]bson.Raw, len(docs))
			for i, j := range idx {
				sorted[i] = docs[j]
			}
			docs = sorted
		}
		f := bson.D{{Key: "stage", Value: "SORT"}, {Key: "sortPattern", Value: orEmpty(spec.sortSpec)}, {Key: "memLimit", Value: int64(maxSortBytes)}}
		if spec.limit > 0 {
			f = append(f, bson.E{Key: "limitAmount", Value: spec.skip + spec.limit})
		}
		f = append(f, bson.E{Key: "type", Value: "simple"})
		stage = stage.wrap(f, n)
	}
	if spec.skip > 0 {
		skipped := min(spec.skip, n)
		n -= skipped
		if execute && int64(len(docs)) >= skipped {
			docs = docs[skipped:]
		}
		stage = stage.wrap(bson.D{{Key: "stage", Value: "SKIP"}, {Key: "skipAmount", Value: spec.skip}}, n)
	}
	if spec.limit > 0 {
		n = min(n, spec.limit)
		if execute && int64(len(docs)) > n {
			docs = docs[:n]
		}
		stage = stage.wrap(bson.D{{Key: "stage", Value: "LIMIT"}, {Key: "limitAmount", Value: spec.limit}}, n)
	}
	if spec.projection != nil {
		stage = stage.wrap(bson.D{{Key: "stage", Value: "PROJECTION_DEFAULT"}, {Key: "transformBy", Value: orEmpty(spec.projSpec)}}, n)
	}
	if execute && each != nil {
		for _, d := range docs {
			if spec.projection != nil {
				if d, err = spec.projection.Apply(d); err != nil {
					return nil, err
				}
			}
			if err := each(d); err != nil {
				return nil, err
			}
		}
	}
	r.root, r.executed = stage, execute
	r.nReturned, r.keys, r.docs = n, src.pos.Keys, src.pos.Docs
	r.millis = time.Since(start).Milliseconds()
	return r, nil
}

func (h *Handler) explain(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	for i, e := range mustElements(a.cmd) {
		if k := e.Key(); i > 0 && !genericFields[k] && k != "verbosity" {
			return nil, mongoerr.New(codeUnknownField, "BSON field 'explain.%s' is an unknown field.", k)
		}
	}
	if !a.has("explain") {
		return nil, mongoerr.New(codeMissingField, "BSON field 'explain.explain' is missing but a required field")
	}
	inner, err := a.doc("explain")
	if err != nil {
		return nil, err
	}
	if len(inner) <= 5 {
		return nil, mongoerr.New(mongoerr.FailedToParse, "explain command requires a nested object")
	}
	v, err := parseVerbosity(a)
	if err != nil {
		return nil, err
	}
	return h.explainCommand(ctx, c, req.DB, inner, v)
}

// explainCommand explains inner (a command of database db).
func (h *Handler) explainCommand(ctx context.Context, c *wire.ConnState, db string, inner bson.Raw, v verbosity) (bson.Raw, error) {
	ia := newArgs(inner)
	if ia.name == "findandmodify" {
		ia.name = "findAndModify"
	}
	execute := v != vQueryPlanner
	var run *explainRun
	var err error
	var aggStages bson.A
	switch ia.name {
	case "find":
		run, err = h.explainFind(ctx, db, ia, execute)
	case "count":
		run, err = h.explainCount(ctx, db, ia, execute)
	case "distinct":
		run, err = h.explainDistinct(ctx, db, ia, execute)
	case "aggregate":
		run, aggStages, err = h.explainAggregate(ctx, db, ia, v)
	case "update":
		run, err = h.explainUpdate(ctx, db, ia, execute)
	case "delete":
		run, err = h.explainDelete(ctx, db, ia, execute)
	case "findAndModify":
		run, err = h.explainFindAndModify(ctx, db, ia, execute)
	default:
		return nil, mongoerr.New(mongoerr.NotImplemented, "explain of %s is not supported", ia.name)
	}
	if err != nil {
		return nil, commandError(ctx, err)
	}
	reply := bson.D{{Key: "explainVersion", Value: "1"}}
	if aggStages != nil {
		reply = append(reply, bson.E{Key: "stages", Value: aggStages})
	} else {
		reply = append(reply, bson.E{Key: "queryPlanner", Value: run.queryPlanner()})
		if execute {
			reply = append(reply, bson.E{Key: "executionStats", Value: run.executionStats(v)})
		}
	}
	command := inner
	if _, err := inner.LookupErr("$db"); err != nil {
		command, _ = bson.Marshal(append(docElems(inner), bson.E{Key: "$db", Value: db}))
	}
	reply = append(reply,
		bson.E{Key: "command", Value: command},
		bson.E{Key: "serverInfo", Value: h.serverInfo(c)},
		bson.E{Key: "serverParameters", Value: serverParameters()},
		bson.E{Key: "ok", Value: 1.0})
	return marshal(reply)
}

func docElems(d bson.Raw) bson.D {
	var out bson.D
	_ = bson.Unmarshal(d, &out)
	return out
}

func (h *Handler) serverInfo(c *wire.ConnState) bson.D {
	d := bson.D{{Key: "host", Value: h.host}}
	if c != nil {
		if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
			d = append(d, bson.E{Key: "port", Value: int32(a.Port)})
		}
	}
	return append(d, bson.E{Key: "version", Value: ServerVersion}, bson.E{Key: "gitVersion", Value: "cmkdb"})
}

// serverParameters are the limits of mongod's explain section that cmkdb
// enforces, with cmkdb's values.
func serverParameters() bson.D {
	return bson.D{
		{Key: "internalQueryFacetBufferSizeBytes", Value: int32(query.MaxBlockingBytes)},
		{Key: "internalLookupStageIntermediateDocumentMaxSizeBytes", Value: int64(query.MaxBlockingBytes)},
		{Key: "internalQueryMaxBlockingSortMemoryUsageBytes", Value: int32(maxSortBytes)},
		{Key: "internalDocumentSourceSetWindowFieldsMaxMemoryBytes", Value: int64(query.MaxBlockingBytes)},
	}
}

func (h *Handler) explainFind(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "find"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "find")
	if err != nil {
		return nil, err
	}
	if _, err := parseFindOptions(a); err != nil {
		return nil, err
	}
	hint, natural, err := parseHint(a)
	if err != nil {
		return nil, err
	}
	filter, err := a.doc("filter")
	if err != nil {
		return nil, err
	}
	if filter, err = letFilter(filter, vars); err != nil {
		return nil, err
	}
	sortSpec, err := a.doc("sort")
	if err != nil {
		return nil, err
	}
	if dir, err := naturalSort(sortSpec); err != nil {
		return nil, err
	} else if dir != 0 {
		natural, sortSpec = dir, nil
	}
	proj, err := a.doc("projection")
	if err != nil {
		return nil, err
	}
	skip, err := a.int64("skip", 0)
	if err != nil {
		return nil, err
	}
	limit, err := a.int64("limit", 0)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "LIMIT must be >= 0")
	}
	spec, err := parseFindSpec(db, collName, filter, sortSpec, proj, skip, limit)
	if err != nil {
		return nil, err
	}
	spec.hint, spec.natural = hint, natural
	return h.runExplained(ctx, spec, execute, nil)
}

func (h *Handler) explainCount(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "count"); err != nil {
		return nil, err
	}
	hint, natural, err := parseHint(a)
	if err != nil {
		return nil, err
	}
	filter, err := a.doc("query")
	if err != nil {
		return nil, err
	}
	skip, err := a.int64("skip", 0)
	if err != nil {
		return nil, err
	}
	limit, err := a.int64("limit", 0)
	if err != nil {
		return nil, err
	}
	if limit < 0 {
		limit = -limit
	}
	spec, err := parseFindSpec(db, collName, filter, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	spec.hint, spec.natural = hint, natural
	if len(filter) <= 5 && hint.Type == 0 && natural == 0 {
		// mongod counts a whole collection from its metadata.
		return h.explainFastCount(ctx, spec, skip, limit, execute)
	}
	var counted int64
	r, err := h.runExplained(ctx, spec, execute, func(bson.Raw) error { counted++; return nil })
	if err != nil {
		return nil, err
	}
	n := max(0, counted-skip)
	if limit > 0 {
		n = min(n, limit)
	}
	f := bson.D{{Key: "stage", Value: "COUNT"}}
	if limit > 0 {
		f = append(f, bson.E{Key: "limitAmount", Value: limit})
	}
	if skip > 0 {
		f = append(f, bson.E{Key: "skipAmount", Value: skip})
	}
	r.root = r.root.wrap(f, 0, bson.E{Key: "nCounted", Value: n}, bson.E{Key: "nSkipped", Value: min(skip, counted)})
	r.nReturned = 0
	return r, nil
}

func (h *Handler) explainFastCount(ctx context.Context, spec *findSpec, skip, limit int64, execute bool) (*explainRun, error) {
	r := &explainRun{ns: spec.db + "." + spec.coll, filter: bson.Raw{5, 0, 0, 0, 0}, executed: execute}
	start := time.Now()
	var n int64
	if execute {
		st, release, err := h.store(spec.db, false)
		if err != nil {
			return nil, err
		}
		if st != nil {
			if coll := st.Collection(spec.coll); coll != nil {
				n, err = st.Count(ctx, coll)
			}
		}
		release()
		if err != nil {
			return nil, err
		}
	}
	n = max(0, n-skip)
	if limit > 0 {
		n = min(n, limit)
	}
	f := bson.D{{Key: "stage", Value: "RECORD_STORE_FAST_COUNT"}}
	if limit > 0 {
		f = append(f, bson.E{Key: "limitAmount", Value: limit})
	}
	if skip > 0 {
		f = append(f, bson.E{Key: "skipAmount", Value: skip})
	}
	r.root = &planStage{fields: f, stats: bson.D{{Key: "nReturned", Value: int64(0)},
		{Key: "executionTimeMillisEstimate", Value: time.Since(start).Milliseconds()}, {Key: "nCounted", Value: n}}}
	r.millis = time.Since(start).Milliseconds()
	return r, nil
}

func (h *Handler) explainDistinct(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "distinct"); err != nil {
		return nil, err
	}
	key, err := a.string("key")
	if err != nil {
		return nil, err
	}
	if !a.has("key") || key == "" {
		return nil, mongoerr.New(codeMissingField, "BSON field 'distinct.key' is missing but a required field")
	}
	filter, err := a.doc("query")
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(db, collName, filter, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	r, err := h.runExplained(ctx, spec, execute, nil)
	if err != nil {
		return nil, err
	}
	// mongod reads the key of each matching document.
	r.root = r.root.wrap(bson.D{{Key: "stage", Value: "PROJECTION_DEFAULT"}, {Key: "transformBy", Value: bson.D{{Key: key, Value: int32(1)}, {Key: "_id", Value: int32(0)}}}}, r.nReturned)
	return r, nil
}

func (h *Handler) explainUpdate(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	if err := checkFields(a, "update"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "update")
	if err != nil {
		return nil, err
	}
	collName, raw, _, err := writeBatch(a, "updates")
	if err != nil {
		return nil, err
	}
	if len(raw) != 1 {
		return nil, mongoerr.New(mongoerr.InvalidLength, "explained write batches must be of size 1")
	}
	stmt, err := parseUpdateStmt(raw[0])
	if err != nil {
		return nil, err
	}
	if stmt.q, err = letFilter(stmt.q, vars); err != nil {
		return nil, err
	}
	stmt.vars = mergeVars(vars, stmt.vars)
	cu, err := compileUpdateStmt(stmt)
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(db, collName, stmt.q, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	spec.hint = stmt.hint
	if !stmt.multi {
		spec.limit = 1
	}
	return h.explainWrite(ctx, spec, execute, cu.update, cu.matcher, stmt.upsert)
}

func (h *Handler) explainDelete(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	if err := checkFields(a, "delete"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "delete")
	if err != nil {
		return nil, err
	}
	collName, raw, _, err := writeBatch(a, "deletes")
	if err != nil {
		return nil, err
	}
	if len(raw) != 1 {
		return nil, mongoerr.New(mongoerr.InvalidLength, "explained write batches must be of size 1")
	}
	stmt, err := parseDeleteStmt(raw[0])
	if err != nil {
		return nil, err
	}
	if stmt.q, err = letFilter(stmt.q, vars); err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(db, collName, stmt.q, nil, nil, 0, stmt.limit)
	if err != nil {
		return nil, err
	}
	spec.hint = stmt.hint
	return h.explainWrite(ctx, spec, execute, nil, spec.matcher, false)
}

func (h *Handler) explainFindAndModify(ctx context.Context, db string, a args, execute bool) (*explainRun, error) {
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	fs, err := parseFindAndModify(a)
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(db, collName, fs.filter, nil, nil, 0, 1)
	if err != nil {
		return nil, err
	}
	spec.sort, spec.hint = fs.sort, fs.hint
	spec.sortSpec, _ = a.doc("sort")
	return h.explainWrite(ctx, spec, execute, fs.update, fs.matcher, fs.upsert)
}

// explainWrite explains an update (u set) or a delete: the query that
// finds the documents, then an UPDATE or DELETE stage with what the write
// would do, computed without writing.
func (h *Handler) explainWrite(ctx context.Context, spec *findSpec, execute bool, u *query.Update, m *query.Matcher, upsert bool) (*explainRun, error) {
	var matched, modified int64
	now := time.Now()
	r, err := h.runExplained(ctx, spec, execute, func(doc bson.Raw) error {
		matched++
		if u == nil {
			return nil
		}
		_, changed, err := u.Apply(doc, query.ApplyOptions{Now: now, Query: m})
		if err != nil {
			return err
		}
		if changed {
			modified++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if u == nil {
		r.root = r.root.wrap(bson.D{{Key: "stage", Value: "DELETE"}}, 0, bson.E{Key: "nWouldDelete", Value: matched})
	} else {
		upserts := int64(0)
		if execute && matched == 0 && upsert {
			upserts = 1
		}
		r.root = r.root.wrap(bson.D{{Key: "stage", Value: "UPDATE"}}, 0,
			bson.E{Key: "nMatched", Value: matched}, bson.E{Key: "nWouldModify", Value: modified}, bson.E{Key: "nWouldUpsert", Value: upserts})
	}
	r.nReturned = 0
	return r, nil
}

// explainAggregate explains a pipeline. A pipeline the collection scan
// serves whole (at most a leading $match) is explained as a find; any
// other shows mongod's stages: {$cursor: {queryPlanner, executionStats}}
// then each stage, with the documents it returned when run.
func (h *Handler) explainAggregate(ctx context.Context, db string, a args, v verbosity) (*explainRun, bson.A, error) {
	collName, err := a.collection()
	if err != nil {
		return nil, nil, mongoerr.New(mongoerr.NotImplemented, "explain of a collectionless aggregate is not supported")
	}
	if err := checkFields(a, "aggregate"); err != nil {
		return nil, nil, err
	}
	vars, err := parseLet(a, "aggregate")
	if err != nil {
		return nil, nil, err
	}
	hint, natural, err := parseHint(a)
	if err != nil {
		return nil, nil, err
	}
	vals, err := a.array("pipeline")
	if err != nil {
		return nil, nil, err
	}
	stages := make([]bson.Raw, len(vals))
	for i, sv := range vals {
		d, ok := sv.DocumentOK()
		if !ok {
			return nil, nil, mongoerr.New(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		stages[i] = d
		if first, err := d.IndexErr(0); err == nil {
			switch first.Key() {
			case "$changeStream", "$indexStats", "$documents", "$out", "$merge":
				return nil, nil, mongoerr.New(mongoerr.NotImplemented, "explain of a pipeline with %s is not supported", first.Key())
			}
		}
	}
	if stages, err = letPipeline(stages, vars); err != nil {
		return nil, nil, err
	}
	filter, rest := aggregatePlan(stages)
	spec, err := parseFindSpec(db, collName, filter, nil, nil, 0, 0)
	if err != nil {
		return nil, nil, err
	}
	spec.hint, spec.natural = hint, natural
	execute := v != vQueryPlanner
	if len(rest) == 0 {
		r, err := h.runExplained(ctx, spec, execute, nil)
		return r, nil, err
	}
	// Compile first: a bad stage fails the explain as it fails the
	// aggregate.
	lookup := &lookupSource{h: h, db: db}
	compiled := make([]*query.Pipeline, len(rest))
	for i, s := range rest {
		if compiled[i], err = query.CompilePipeline([]bson.Raw{s}, lookup); err != nil {
			return nil, nil, err
		}
	}
	var input []bson.Raw
	r, err := h.runExplained(ctx, spec, execute, func(d bson.Raw) error { input = append(input, d); return nil })
	if err != nil {
		return nil, nil, err
	}
	cursor := bson.D{{Key: "queryPlanner", Value: r.queryPlanner()}}
	if execute {
		cursor = append(cursor, bson.E{Key: "executionStats", Value: r.executionStats(v)})
	}
	first := bson.D{{Key: "$cursor", Value: cursor}}
	if execute {
		first = append(first, bson.E{Key: "nReturned", Value: int64(len(input))}, bson.E{Key: "executionTimeMillisEstimate", Value: r.millis})
	}
	out := bson.A{first}
	var it query.Iterator = query.NewSliceIterator(input)
	counters := make([]*countingIter, len(rest))
	for i, p := range compiled {
		if execute {
			next, err := p.Run(ctx, it)
			if err != nil {
				return nil, nil, err
			}
			counters[i] = &countingIter{it: next}
			it = counters[i]
		}
	}
	start := time.Now()
	if execute {
		for {
			if _, err := it.Next(ctx); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, nil, err
			}
		}
		it.Close()
	}
	for i, s := range rest {
		d := docElems(s)
		if execute {
			d = append(d, bson.E{Key: "nReturned", Value: counters[i].n}, bson.E{Key: "executionTimeMillisEstimate", Value: time.Since(start).Milliseconds()})
		}
		out = append(out, d)
	}
	return r, out, nil
}

// countingIter counts the documents an iterator yields.
type countingIter struct {
	it query.Iterator
	n  int64
}

func (c *countingIter) Next(ctx context.Context) (bson.Raw, error) {
	d, err := c.it.Next(ctx)
	if err == nil {
		c.n++
	}
	return d, err
}

func (c *countingIter) Close() error { return c.it.Close() }

func orEmpty(d bson.Raw) bson.Raw {
	if d == nil {
		return bson.Raw{5, 0, 0, 0, 0}
	}
	return d
}
