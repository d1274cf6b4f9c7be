package handlers

import (
	"context"
	"errors"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// aggregateInputBatch is how many documents the pipeline's input reads per
// storage visit.
const aggregateInputBatch = 1024

// scanIter adapts a scanSource to the pipeline's Iterator: it reads the
// collection a batch at a time, holding no storage resource in between.
type scanIter struct {
	h    *Handler
	src  batchSource
	buf  []bson.Raw
	done bool
}

func (s *scanIter) Next(ctx context.Context) (bson.Raw, error) {
	for len(s.buf) == 0 {
		if s.done {
			return nil, io.EOF
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx) // why: disabled, or maxTimeMS
		}
		docs, done, err := s.src.next(ctx, s.h, aggregateInputBatch)
		if err != nil {
			return nil, err
		}
		s.buf, s.done = docs, done
	}
	d := s.buf[0]
	s.buf = s.buf[1:]
	return d, nil
}

func (s *scanIter) Close() error { s.buf, s.done = nil, true; return nil }

// changeStreamPipeline returns the pipeline's stages if it opens with
// $changeStream.
func changeStreamPipeline(a args) ([]bson.Raw, bool) {
	v, ok := a.value("pipeline")
	if !ok {
		return nil, false
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return nil, false
	}
	vals, err := arr.Values()
	if err != nil || len(vals) == 0 {
		return nil, false
	}
	stages := make([]bson.Raw, len(vals))
	for i, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, false
		}
		stages[i] = d
	}
	if first, err := stages[0].IndexErr(0); err != nil || first.Key() != "$changeStream" {
		return nil, false
	}
	return stages, true
}

// lookupSource lets $lookup read the other collections of the database.
type lookupSource struct {
	h  *Handler
	db string
}

func (l *lookupSource) Scan(ctx context.Context, coll string) (query.Iterator, error) {
	spec, err := parseFindSpec(l.db, coll, nil, nil, nil, 0, 0)
	if err != nil {
		return nil, err
	}
	docs, err := l.h.collect(ctx, spec)
	if err != nil {
		return nil, err
	}
	return query.NewSliceIterator(docs), nil
}

// pipelineSource serves an aggregation's output to its cursor, running the
// pipeline lazily as batches are asked for.
type pipelineSource struct {
	it query.Iterator
}

func (p *pipelineSource) next(ctx context.Context, _ *Handler, n int) ([]bson.Raw, bool, error) {
	var out []bson.Raw
	size := 0
	for len(out) < n && size < maxBSONSize {
		d, err := p.it.Next(ctx)
		if errors.Is(err, io.EOF) {
			p.it.Close()
			return out, true, nil
		}
		if err != nil {
			p.it.Close()
			return nil, false, err
		}
		out = append(out, d)
		size += len(d)
	}
	return out, false, nil
}

// aggregatePlan splits a pipeline into the filter its input scan can use
// (a leading $match, planned against the collection's indexes like a find)
// and the stages that run on the scan's output.
func aggregatePlan(stages []bson.Raw) (filter bson.Raw, rest []bson.Raw) {
	if len(stages) > 0 {
		if e, err := stages[0].IndexErr(0); err == nil && e.Key() == "$match" {
			if d, ok := e.Value().DocumentOK(); ok {
				if _, err := stages[0].IndexErr(1); err != nil { // exactly one field
					return d, stages[1:]
				}
			}
		}
	}
	return nil, stages
}

func (h *Handler) aggregate(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if stages, ok := changeStreamPipeline(a); ok {
		if err := checkFields(a, "aggregate"); err != nil {
			return nil, err
		}
		return h.changeStream(ctx, c, req, a, stages)
	}
	collectionless := false
	if v, ok := a.value("aggregate"); ok && v.Type != bson.TypeString {
		if _, num := v.AsInt64OK(); num || v.Type == bson.TypeDouble {
			// {aggregate: 1} reads no collection: only a pipeline opening
			// with $documents or $currentOp has an input (the other
			// collectionless sources are not served).
			for _, stage := range []string{"$indexStats", "$collStats"} {
				if opensWith(a, stage) {
					return nil, mongoerr.New(mongoerr.InvalidNamespace, "{aggregate: 1} is not valid for '%s'; a collection is required.", stage)
				}
			}
			if !opensWithDocuments(a) && !hasStage(a, "$currentOp") {
				return nil, mongoerr.New(mongoerr.NotImplemented, "collectionless aggregate ({aggregate: 1}) is supported only with $documents as the first stage")
			}
			collectionless = true
		}
	}
	var collName string
	var err error
	if !collectionless {
		if collName, err = a.collection(); err != nil {
			return nil, err
		}
	}
	if err := checkFields(a, "aggregate"); err != nil {
		return nil, err
	}
	vars, err := parseLet(a, "aggregate")
	if err != nil {
		return nil, err
	}
	// bypassDocumentValidation applies to $out's and $merge's writes.
	bypass, err := a.bool("bypassDocumentValidation", false)
	if err != nil {
		return nil, err
	}
	if _, err := a.bool("allowDiskUse", false); err != nil {
		return nil, err
	}
	hint, natural, err := parseHint(a)
	if err != nil {
		return nil, err
	}
	if explain, err := a.bool("explain", false); err != nil {
		return nil, err
	} else if explain {
		// explain: true is the explain command at queryPlanner verbosity.
		return h.explainCommand(ctx, c, req.DB, req.Command, vQueryPlanner)
	}
	if !a.has("pipeline") {
		return nil, mongoerr.New(codeMissingField, "BSON field 'aggregate.pipeline' is missing but a required field")
	}
	vals, err := a.array("pipeline")
	if err != nil {
		return nil, err
	}
	cur, err := a.doc("cursor")
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, mongoerr.New(mongoerr.FailedToParse, "The 'cursor' option is required, except for aggregate with the explain argument")
	}
	batchSize, err := cursorOptionBatchSize(cur, "aggregate")
	if err != nil {
		return nil, err
	}
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return nil, err
		}
	}
	stages := make([]bson.Raw, len(vals))
	for i, v := range vals {
		d, ok := v.DocumentOK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "Each element of the 'pipeline' array must be an object")
		}
		stages[i] = d
		if first, err := d.IndexErr(0); err == nil && first.Key() == "$changeStream" {
			return nil, mongoerr.New(40602, "$changeStream is only valid as the first stage in a pipeline.")
		}
	}
	if stages, err = letPipeline(stages, vars); err != nil {
		return nil, err
	}
	stages, writer, err := splitWriteStage(stages, req.DB)
	if err != nil {
		return nil, err
	}
	if !collectionless && len(stages) > 0 {
		if first, err := stages[0].IndexErr(0); err == nil && first.Key() == "$documents" {
			return nil, mongoerr.New(mongoerr.InvalidNamespace, "$documents must be run against the 'aggregate: 1' namespace")
		}
	}
	var input query.Iterator = query.NewSliceIterator(nil)
	ns := req.DB + ".$cmd.aggregate"
	rest := stages
	textScored := false
	indexStats, err := indexStatsStage(stages)
	if err != nil {
		return nil, err
	}
	collStats, err := collStatsStage(stages)
	if err != nil {
		return nil, err
	}
	curOp, err := currentOpStage(stages)
	if err != nil {
		return nil, err
	}
	if curOp != nil && (!collectionless || req.DB != usersDB) {
		return nil, mongoerr.New(mongoerr.InvalidNamespace, "$currentOp must be run against the 'admin' database with {aggregate: 1}")
	}
	if indexStats {
		docs, err := h.indexStatsDocs(c, req.DB, collName)
		if err != nil {
			return nil, err
		}
		input, ns, rest = query.NewSliceIterator(docs), req.DB+"."+collName, stages[1:]
	} else if curOp != nil {
		docs, err := h.currentOpDocs(c, curOp)
		if err != nil {
			return nil, err
		}
		input, rest = query.NewSliceIterator(docs), stages[1:]
	} else if collStats != nil {
		doc, err := h.collStatsDoc(ctx, c, req.DB, collName, collStats)
		if err != nil {
			return nil, err
		}
		input, ns, rest = query.NewSliceIterator([]bson.Raw{doc}), req.DB+"."+collName, stages[1:]
	} else if tp, err := splitTextPipeline(stages); err != nil { // textagg.go
		return nil, err
	} else if tp != nil && !collectionless {
		if input, err = h.textInput(ctx, req.DB, collName, tp); err != nil {
			return nil, err
		}
		ns, rest, textScored = req.DB+"."+collName, tp.rest, true
	} else if !collectionless {
		var filter bson.Raw
		filter, rest = aggregatePlan(stages)
		spec, err := parseFindSpec(req.DB, collName, filter, nil, nil, 0, 0)
		if err != nil {
			return nil, err
		}
		spec.hint, spec.natural = hint, natural
		var src batchSource = &scanSource{spec: spec}
		if isOplogNS(req.DB, collName) && h.opts.Repl != nil {
			// A member's oplog is served from its oplog store (oplogfind.go).
			if spec.sort != nil || len(hint.Value) > 0 {
				return nil, mongoerr.New(mongoerr.BadValue, "an aggregation on local.oplog.rs reads it in natural (timestamp) order; sort in the pipeline instead of hinting")
			}
			osrc := &oplogSource{spec: spec}
			osrc.pos = startAfter(spec.filter)
			src = osrc
		}
		input, ns = &scanIter{h: h, src: src}, req.DB+"."+collName
	}
	p, err := query.CompilePipeline(rest, &lookupSource{h: h, db: req.DB})
	if err != nil {
		return nil, err
	}
	it, err := p.Run(ctx, input)
	if err != nil {
		return nil, err
	}
	if textScored {
		it = stripScore{it}
	}
	if writer != nil {
		writer.bypass = bypass
		if err := writer.run(ctx, h, req.DB, it); err != nil {
			return nil, err
		}
		it = query.NewSliceIterator(nil)
	}
	return h.firstBatch(ctx, ns, c, &pipelineSource{it: it}, batchSize)
}

// opensWithDocuments reports whether the command's pipeline starts with
// $documents.
func opensWithDocuments(a args) bool { return opensWith(a, "$documents") }

// opensWith reports whether the command's pipeline starts with stage.
func opensWith(a args, stage string) bool {
	v, ok := a.value("pipeline")
	if !ok {
		return false
	}
	arr, ok := v.ArrayOK()
	if !ok {
		return false
	}
	first, err := arr.IndexErr(0)
	if err != nil {
		return false
	}
	d, ok := first.DocumentOK()
	if !ok {
		return false
	}
	e, err := d.IndexErr(0)
	return err == nil && e.Key() == stage
}
