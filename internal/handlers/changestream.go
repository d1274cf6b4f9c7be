package handlers

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// Change streams: an aggregate whose first stage is $changeStream reads
// the member's oplog (internal/oplog) from a position on, turns entries
// into change events (changeevents.go) and runs the rest of the pipeline
// on each. The cursor never ends by itself (an invalidate ends it); its
// getMore waits for new entries up to maxTimeMS, as an awaitData cursor.
// Every batch reports postBatchResumeToken (resumetoken.go), so a driver
// resumes where it stood after a failover, on any member.

// codeNoMatchingDocument is MongoDB's NoMatchingDocument (47): a stream
// asked for a pre- or post-image that does not exist ("required").
const codeNoMatchingDocument mongoerr.Code = 47

// changeStreamStages are the stages MongoDB allows after $changeStream.
var changeStreamStages = map[string]bool{
	"$match": true, "$project": true, "$addFields": true, "$set": true, "$unset": true,
	"$replaceRoot": true, "$replaceWith": true, "$redact": true,
}

// imageMode is how fullDocument or fullDocumentBeforeChange is filled.
type imageMode string

const (
	imageDefault       imageMode = "default"
	imageOff           imageMode = "off"
	imageUpdateLookup  imageMode = "updateLookup"
	imageWhenAvailable imageMode = "whenAvailable"
	imageRequired      imageMode = "required"
)

// changeStreamSpec is a parsed $changeStream stage.
type changeStreamSpec struct {
	fullDocument, beforeChange imageMode
	start                      *resumePoint // nil: from now
	startOpTime                bool         // start came from startAtOperationTime
	allChangesForCluster       bool
	expanded                   bool
}

func parseChangeStream(v bson.RawValue) (*changeStreamSpec, error) {
	d, ok := v.DocumentOK()
	if !ok {
		return nil, mongoerr.New(mongoerr.TypeMismatch, "the $changeStream stage specification must be an object, got %s", typeName(v.Type))
	}
	spec := &changeStreamSpec{fullDocument: imageDefault, beforeChange: imageOff}
	els, err := d.Elements()
	if err != nil {
		return nil, mongoerr.New(mongoerr.InvalidBSON, "$changeStream: %v", err)
	}
	resumeOptions := 0
	for _, el := range els {
		val := el.Value()
		switch k := el.Key(); k {
		case "fullDocument", "fullDocumentBeforeChange":
			s, ok := val.StringValueOK()
			if !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$changeStream.%s' is the wrong type '%s', expected type 'string'", k, typeName(val.Type))
			}
			m := imageMode(s)
			valid := map[imageMode]bool{imageUpdateLookup: true, imageWhenAvailable: true, imageRequired: true}
			if k == "fullDocument" {
				valid[imageDefault] = true
				spec.fullDocument = m
			} else {
				valid[imageOff] = true
				spec.beforeChange = m
			}
			if !valid[m] || k == "fullDocumentBeforeChange" && m == imageUpdateLookup {
				return nil, mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field '$changeStream.%s' is not a valid value.", s, k)
			}
		case "resumeAfter", "startAfter":
			p, err := parseResumeToken(val, k)
			if err != nil {
				return nil, err
			}
			if k == "resumeAfter" && p.kind == tokenInvalidate {
				return nil, mongoerr.New(mongoerr.InvalidResumeToken, "Attempting to resume a change stream using 'resumeAfter' is not allowed from an invalidate notification.")
			}
			spec.start = &p
			resumeOptions++
		case "startAtOperationTime":
			t, i, ok := val.TimestampOK()
			if !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$changeStream.startAtOperationTime' is the wrong type '%s', expected type 'timestamp'", typeName(val.Type))
			}
			// Events at the time itself are included: stand just before it.
			spec.start = &resumePoint{ts: before(oplog.Timestamp{T: t, I: i}), kind: tokenHighWater}
			spec.startOpTime = true
			resumeOptions++
		case "allChangesForCluster", "showExpandedEvents":
			b, ok := val.BooleanOK()
			if !ok {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$changeStream.%s' is the wrong type '%s', expected type 'bool'", k, typeName(val.Type))
			}
			if k == "allChangesForCluster" {
				spec.allChangesForCluster = b
			} else {
				spec.expanded = b
			}
		default:
			return nil, mongoerr.New(codeUnknownField, "BSON field '$changeStream.%s' is an unknown field.", k)
		}
	}
	if resumeOptions > 1 {
		return nil, mongoerr.New(40674, "Only one type of resume option is allowed, but multiple were found.")
	}
	return spec, nil
}

// changeStream answers an aggregate whose pipeline opens with
// $changeStream.
func (h *Handler) changeStream(ctx context.Context, c *wire.ConnState, req *wire.Request, a args, stages []bson.Raw) (bson.Raw, error) {
	if h.opts.Repl == nil {
		return nil, h.changeStreamRefused()
	}
	first, _ := stages[0].IndexErr(0)
	if len(stages[0]) > 0 {
		if els, _ := stages[0].Elements(); len(els) != 1 {
			return nil, mongoerr.New(40323, "A pipeline stage specification object must contain exactly one field.")
		}
	}
	spec, err := parseChangeStream(first.Value())
	if err != nil {
		return nil, err
	}
	scope, ns, err := changeStreamScope(req.DB, a, spec)
	if err != nil {
		return nil, err
	}
	rest := stages[1:]
	for _, s := range rest {
		st, err := s.IndexErr(0)
		if err != nil {
			return nil, mongoerr.New(40323, "A pipeline stage specification object must contain exactly one field.")
		}
		if st.Key() == "$changeStream" {
			return nil, mongoerr.New(40602, "$changeStream is only valid as the first stage in a pipeline.")
		}
		if !changeStreamStages[st.Key()] {
			return nil, mongoerr.New(mongoerr.IllegalOperation, "%s is not permitted in a $changeStream pipeline", st.Key())
		}
	}
	p, err := query.CompilePipeline(rest, nil)
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
	src := &streamSource{spec: spec, scope: scope, pipeline: p}
	if err := h.withOplog(func(l *oplog.Log) error { return src.open(l) }); err != nil {
		return nil, err
	}
	return h.firstBatch(ctx, ns, c, src, batchSize)
}

// changeStreamScope reads what the stream watches from the aggregate's
// target: a collection name, or 1 for a database or (on admin, with
// allChangesForCluster) the deployment. It returns the cursor's ns.
func changeStreamScope(db string, a args, spec *changeStreamSpec) (streamScope, string, error) {
	v, _ := a.value("aggregate")
	if coll, ok := v.StringValueOK(); ok {
		if spec.allChangesForCluster {
			return streamScope{}, "", mongoerr.New(mongoerr.InvalidOptions, "A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database, and with no collection name")
		}
		if db == "admin" || db == "config" || db == "local" || strings.HasPrefix(coll, "system.") || coll == "" {
			return streamScope{}, "", mongoerr.New(mongoerr.InvalidNamespace, "$changeStream may not be opened on the internal %s.%s collection", db, coll)
		}
		return streamScope{db: db, coll: coll}, db + "." + coll, nil
	}
	if n, ok := v.AsInt64OK(); !ok || n != 1 {
		return streamScope{}, "", mongoerr.New(mongoerr.FailedToParse, "Invalid command format: the 'aggregate' field must specify a collection name or 1")
	}
	if db == "admin" {
		if !spec.allChangesForCluster {
			return streamScope{}, "", mongoerr.New(mongoerr.InvalidNamespace, "$changeStream may not be opened on the internal admin database")
		}
		return streamScope{}, "admin.$cmd.aggregate", nil
	}
	if spec.allChangesForCluster {
		return streamScope{}, "", mongoerr.New(mongoerr.InvalidOptions, "A $changeStream with 'allChangesForCluster:true' may only be opened on the 'admin' database, and with no collection name")
	}
	if db == "config" || db == "local" {
		return streamScope{}, "", mongoerr.New(mongoerr.InvalidNamespace, "$changeStream may not be opened on the internal %s database", db)
	}
	return streamScope{db: db}, db + ".$cmd.aggregate", nil
}

// streamSource is a change stream's cursor. Between batches it keeps only
// its position.
type streamSource struct {
	spec     *changeStreamSpec
	scope    streamScope
	pipeline *query.Pipeline
	pos      resumePoint
	started  bool
	done     bool // an invalidate was returned
	wait     time.Duration
}

// open places the stream: at its resume point, or after the newest entry.
func (s *streamSource) open(l *oplog.Log) error {
	if s.spec.start == nil {
		s.pos = resumePoint{ts: l.Last(), kind: tokenHighWater}
		return nil
	}
	s.pos = *s.spec.start
	return s.checkHistory(l)
}

// checkHistory fails the stream if the oplog no longer holds what comes
// after its position: the events between would be missing, and MongoDB
// says so rather than skip them.
func (s *streamSource) checkHistory(l *oplog.Log) error {
	if floor := l.Floor(); s.pos.ts.Compare(floor) < 0 {
		return mongoerr.New(mongoerr.ChangeStreamHistoryLost, "Resume of change stream was not possible, as the resume point may no longer be in the oplog.")
	}
	return nil
}

func (s *streamSource) postBatchResumeToken() bson.Raw { return s.pos.token() }

func (s *streamSource) setAwait(d time.Duration) bool {
	s.wait = d
	return true
}

func (s *streamSource) next(ctx context.Context, h *Handler, n int) ([]bson.Raw, bool, error) {
	if s.done {
		return nil, true, nil
	}
	first := !s.started
	s.started = true
	var out []bson.Raw
	var changed <-chan struct{}
	read := func() error {
		return h.withOplog(func(l *oplog.Log) error {
			changed = l.Changed()
			if err := s.checkHistory(l); err != nil {
				return err
			}
			var err error
			out, err = s.batch(ctx, h, l, n)
			return err
		})
	}
	if err := read(); err != nil {
		return nil, false, err
	}
	if first || len(out) > 0 || s.done {
		return out, s.done, nil
	}
	wait := s.wait
	if wait <= 0 {
		wait = defaultAwaitData
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			return nil, false, nil
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if err := read(); err != nil || len(out) > 0 || s.done {
			return out, s.done, err
		}
	}
}

// batch reads up to n events after the stream's position, moving it past
// every entry it read whole (so the postBatchResumeToken advances even
// when no event matched).
func (s *streamSource) batch(ctx context.Context, h *Handler, l *oplog.Log, n int) ([]bson.Raw, error) {
	// Entries up to last are all visible to the scan below (Append
	// publishes Last after its commit).
	last := l.Last()
	var out []bson.Raw
	size := 0
	full := false
	from := s.pos.ts
	if s.pos.kind != tokenHighWater {
		from = before(s.pos.ts) // the entry at pos.ts is only partly read
	}
	err := l.Scan(ctx, from, func(e oplog.Stored) (bool, error) {
		events, err := eventsOf(e, s.scope, s.spec.expanded)
		if err != nil {
			return false, err
		}
		for _, ev := range events {
			if !s.pos.pending(e.TS, ev.index, ev.kind) {
				continue
			}
			if full {
				// The batch filled up inside this entry: it stays partly read.
				return false, nil
			}
			at := resumePoint{ts: e.TS, index: ev.index, kind: ev.kind}
			doc, err := s.render(ctx, h, at, ev)
			if err != nil {
				return false, err
			}
			s.pos = at
			if ev.kind == tokenInvalidate {
				s.done = true
			}
			if doc != nil {
				out = append(out, doc)
				size += len(doc)
				full = len(out) >= n || size >= maxBSONSize
			}
			if s.done {
				return false, nil
			}
		}
		s.pos = resumePoint{ts: e.TS, kind: tokenHighWater}
		return !full, nil
	})
	if err != nil {
		return nil, err
	}
	if !full && !s.done && last.Compare(s.pos.ts) > 0 {
		s.pos = resumePoint{ts: last, kind: tokenHighWater}
	}
	return out, nil
}

// render builds the event document and runs the stream's pipeline on it:
// nil if the pipeline filtered it out.
func (s *streamSource) render(ctx context.Context, h *Handler, at resumePoint, ev changeEvent) (bson.Raw, error) {
	token := at.token()
	d := append(bson.D{{Key: "_id", Value: token}}, ev.fields...)
	var err error
	if d, err = s.images(ctx, h, ev, d); err != nil {
		return nil, err
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		return nil, err
	}
	it, err := s.pipeline.Run(ctx, query.NewSliceIterator([]bson.Raw{raw}))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	doc, err := it.Next(ctx)
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if id, err := doc.LookupErr("_id"); err != nil || id.Type != bson.TypeEmbeddedDocument || string(id.Value) != string(token) {
		return nil, mongoerr.New(mongoerr.ChangeStreamFatalError, "Encountered an event whose _id field, which contains the resume token, was modified by the pipeline. Modifying the _id field of an event makes it impossible to resume the stream from that point. Only transformations that retain the unmodified _id field are allowed.")
	}
	return doc, nil
}

// images adds fullDocument to updates (updateLookup: the document as it
// is now, null if gone) and the pre-images asked for. cmkdb keeps no
// pre- or post-images (changeStreamPreAndPostImages is refused), so
// "whenAvailable" finds none and "required" fails, as MongoDB does for a
// collection without them.
func (s *streamSource) images(ctx context.Context, h *Handler, ev changeEvent, d bson.D) (bson.D, error) {
	switch ev.opType {
	case "update", "replace", "delete":
	default:
		return d, nil
	}
	if ev.opType == "update" {
		switch s.spec.fullDocument {
		case imageUpdateLookup:
			doc, err := h.lookupCurrent(ctx, ev.db, ev.coll, ev.id)
			if err != nil {
				return nil, err
			}
			d = append(d, bson.E{Key: "fullDocument", Value: doc})
		case imageWhenAvailable:
			d = append(d, bson.E{Key: "fullDocument", Value: nil})
		case imageRequired:
			return nil, mongoerr.New(codeNoMatchingDocument, "Change stream was configured to require a post-image for all update, delete and replace events, but the post-image was not found for event: %s.%s", ev.db, ev.coll)
		}
	}
	switch s.spec.beforeChange {
	case imageWhenAvailable:
		d = append(d, bson.E{Key: "fullDocumentBeforeChange", Value: nil})
	case imageRequired:
		return nil, mongoerr.New(codeNoMatchingDocument, "Change stream was configured to require a pre-image for all update, delete and replace events, but the pre-image was not found for event: %s.%s", ev.db, ev.coll)
	}
	return d, nil
}

// lookupCurrent reads the document with id in db.coll as it is now (nil
// if there is none).
func (h *Handler) lookupCurrent(ctx context.Context, db, coll string, id bson.RawValue) (any, error) {
	filter, err := bson.Marshal(bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(db, coll, filter, nil, nil, 0, 1)
	if err != nil {
		return nil, err
	}
	docs, err := h.collect(ctx, spec)
	if err != nil || len(docs) == 0 {
		return nil, err
	}
	return docs[0], nil
}
