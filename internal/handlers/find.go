package handlers

import (
	"bytes"
	"context"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// maxSortBytes is mongod's limit for an in-memory (blocking) sort.
const maxSortBytes = 100 << 20

// findSpec is a parsed query shared by find, count, distinct, delete and
// update.
type findSpec struct {
	db, coll   string
	filter     bson.Raw
	matcher    *query.Matcher
	sort       *query.Sort
	projection *query.Projection
	skip       int64
	limit      int64 // 0: none
	// hint names the index to use (Type 0: none); natural asks for
	// natural order (1) or reverse natural order (-1).
	hint    bson.RawValue
	natural int8
	// sortSpec and projSpec are the sort and projection as given
	// (explain shows them).
	sortSpec, projSpec bson.Raw
}

func parseFindSpec(db, coll string, filter, sortSpec, projection bson.Raw, skip, limit int64) (*findSpec, error) {
	if skip < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "BSON field 'skip' value must be >= 0, actual value '%d'", skip)
	}
	m, err := query.Compile(filter)
	if err != nil {
		return nil, err
	}
	fs := &findSpec{db: db, coll: coll, filter: filter, matcher: m, skip: skip, limit: limit, sortSpec: sortSpec, projSpec: projection}
	if len(sortSpec) > 5 {
		if fs.sort, err = query.CompileSort(sortSpec); err != nil {
			return nil, err
		}
	}
	if len(projection) > 5 {
		if fs.projection, err = query.CompileProjection(projection); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

// scanSource streams a query's matches. It keeps only a resume position
// between batches, so no storage resource outlives a request.
type scanSource struct {
	spec    *findSpec
	plan    docstore.Plan
	planned bool
	pos     docstore.Position
	skipped int64
	emitted int64
	// uuid is the scanned collection's, once the scan started.
	uuid []byte
}

func (s *scanSource) next(ctx context.Context, h *Handler, n int) ([]bson.Raw, bool, error) {
	st, release, err := h.store(s.spec.db, false)
	if err != nil {
		return nil, false, err
	}
	defer release()
	if st == nil {
		if s.uuid != nil {
			return nil, false, mongoerr.New(codeQueryPlanKilled, "database dropped")
		}
		return nil, true, nil
	}
	coll := st.Collection(s.spec.coll)
	if s.uuid != nil && (coll == nil || !bytes.Equal(coll.UUID.Data, s.uuid)) {
		// The collection was dropped (or renamed, or replaced) since the
		// scan started: mongod kills such a cursor's plan.
		return nil, false, mongoerr.New(codeQueryPlanKilled, "collection dropped")
	}
	if coll == nil {
		return nil, true, nil
	}
	if !s.planned {
		if s.plan, err = planFor(coll, s.spec.filter, s.spec.hint, s.spec.natural); err != nil {
			return nil, false, err
		}
		s.planned = true
	}
	s.uuid = coll.UUID.Data
	var out []bson.Raw
	size := 0
	limitHit := false
	err = st.Scan(ctx, coll, s.plan, &s.pos, func(doc bson.Raw) (bool, error) {
		if !s.spec.matcher.Match(doc) {
			return true, nil
		}
		if s.skipped < s.spec.skip {
			s.skipped++
			return true, nil
		}
		if s.spec.projection != nil {
			var err error
			if doc, err = s.spec.projection.Apply(doc); err != nil {
				return false, err
			}
		}
		out = append(out, doc)
		size += len(doc)
		s.emitted++
		if s.spec.limit > 0 && s.emitted >= s.spec.limit {
			limitHit = true
			return false, nil
		}
		return len(out) < n && size < maxBSONSize, nil
	})
	if err != nil {
		return nil, false, err
	}
	return out, limitHit || s.pos.Done(), nil
}

// collect runs a query to the end (for sorts, counts and aggregation
// inputs), applying sort, skip, limit and projection.
func (h *Handler) collect(ctx context.Context, spec *findSpec) ([]bson.Raw, error) {
	if spec.sort == nil {
		src := &scanSource{spec: spec}
		var all []bson.Raw
		for {
			docs, done, err := src.next(ctx, h, 1<<30)
			if err != nil {
				return nil, err
			}
			all = append(all, docs...)
			if done {
				return all, nil
			}
		}
	}
	// Blocking sort: gather every match unprojected, sort, then page.
	raw := &findSpec{db: spec.db, coll: spec.coll, filter: spec.filter, matcher: spec.matcher, hint: spec.hint, natural: spec.natural}
	src := &scanSource{spec: raw}
	var all []bson.Raw
	bytes := 0
	for {
		docs, done, err := src.next(ctx, h, 1<<30)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			bytes += len(d)
		}
		if bytes > maxSortBytes {
			return nil, mongoerr.New(292, "Executor error during find command :: caused by :: Sort exceeded memory limit of %d bytes, but did not opt in to external sorting.", maxSortBytes)
		}
		all = append(all, docs...)
		if done {
			break
		}
	}
	keys := make([][]bson.RawValue, len(all))
	for i, d := range all {
		keys[i] = spec.sort.Key(d)
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return spec.sort.CompareKeys(keys[idx[a]], keys[idx[b]]) < 0 })
	var out []bson.Raw
	for _, i := range idx {
		if int64(len(out)) >= spec.limit && spec.limit > 0 {
			break
		}
		if spec.skip > 0 {
			spec.skip--
			continue
		}
		d := all[i]
		if spec.projection != nil {
			var err error
			if d, err = spec.projection.Apply(d); err != nil {
				return nil, err
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func (h *Handler) find(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	coll, err := a.collection()
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
	if v, ok := a.value("collation"); ok {
		if err := checkCollation(v); err != nil {
			return nil, err
		}
	}
	fo, err := parseFindOptions(a)
	if err != nil {
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
	if isOplogNS(req.DB, coll) {
		if dir, ok := tsSort(sortSpec); ok {
			natural, sortSpec = dir, nil
		}
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
	batchSize, err := a.int64("batchSize", -1)
	if err != nil {
		return nil, err
	}
	single, err := a.bool("singleBatch", false)
	if err != nil {
		return nil, err
	}
	tf, filter, sortSpec, proj, err := splitTextFind(filter, sortSpec, proj) // text.go
	if err != nil {
		return nil, err
	}
	spec, err := parseFindSpec(req.DB, coll, filter, sortSpec, proj, skip, limit)
	if err != nil {
		return nil, err
	}
	spec.hint, spec.natural = hint, natural
	ns := req.DB + "." + coll
	if tf != nil && (fo.tailable || isOplogNS(req.DB, coll)) {
		return nil, mongoerr.New(mongoerr.NotImplemented, "$text is not supported with a tailable cursor or on the oplog")
	}
	if isOplogNS(req.DB, coll) {
		return h.findOplog(ctx, c, ns, spec, fo, batchSize, single)
	}
	if fo.tailable {
		return h.findTailable(ctx, c, ns, spec, fo, batchSize)
	}
	var src batchSource
	if tf != nil {
		docs, err := h.collectText(ctx, spec, tf)
		if err != nil {
			return nil, err
		}
		src = &sliceSource{docs: docs}
	} else if spec.sort != nil {
		docs, err := h.collect(ctx, spec)
		if err != nil {
			return nil, err
		}
		src = &sliceSource{docs: docs}
	} else {
		src = &scanSource{spec: spec}
	}
	if single {
		if batchSize < 0 {
			batchSize = 1 << 30
		}
		docs, _, err := src.next(ctx, h, int(batchSize))
		if err != nil {
			return nil, err
		}
		return cursorReply(ns, 0, "firstBatch", docs)
	}
	if fo.noTimeout {
		src = noTimeoutSource{src}
	}
	return h.firstBatch(ctx, ns, c, src, batchSize)
}

// findTailable opens a tailable cursor, which only a capped collection
// supports (mongod's errors otherwise).
func (h *Handler) findTailable(ctx context.Context, c *wire.ConnState, ns string, spec *findSpec, fo findOptions, batchSize int64) (bson.Raw, error) {
	if spec.sort != nil {
		return nil, mongoerr.New(mongoerr.BadValue, "error processing query: %s tailable cursor requested with a sort other than {$natural: 1}", ns)
	}
	if spec.natural < 0 {
		return nil, mongoerr.New(mongoerr.BadValue, "error processing query: %s tailable cursor requires {$natural: 1} order", ns)
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
	if coll != nil && !coll.Capped() {
		return nil, mongoerr.New(mongoerr.BadValue, "error processing query: %s tailable cursor requested on non capped collection", ns)
	}
	if coll == nil {
		return cursorReply(ns, 0, "firstBatch", nil)
	}
	spec.natural, spec.hint = 1, bson.RawValue{}
	src := &tailSource{scan: &scanSource{spec: spec}, awaitData: fo.awaitData, noTimeout: fo.noTimeout}
	return h.firstBatch(ctx, ns, c, src, batchSize)
}

func (h *Handler) getMore(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	id, err := a.int64("getMore", 0)
	if err != nil {
		return nil, err
	}
	coll, err := a.string("collection")
	if err != nil {
		return nil, err
	}
	batchSize, err := a.int64("batchSize", 1<<30)
	if err != nil {
		return nil, err
	}
	if batchSize <= 0 {
		// mongod's getMore: an absent batchSize is no limit, a given
		// one must be positive.
		return nil, mongoerr.New(mongoerr.BadValue, "Batch size for getMore must be positive, but received: %d", batchSize)
	}
	ns := req.DB + "." + coll
	cur, err := h.cursors.get(id, ns, cursorOwner(c))
	if err != nil {
		return nil, err
	}
	cur.mu.Lock()
	defer cur.mu.Unlock()
	if aw, ok := cur.src.(awaiter); ok {
		// awaitData: a getMore waits up to its maxTimeMS for new documents.
		ms, err := a.int64("maxTimeMS", 0)
		if err != nil {
			return nil, err
		}
		if !aw.setAwait(time.Duration(ms)*time.Millisecond) && a.has("maxTimeMS") {
			return nil, mongoerr.New(mongoerr.BadValue, "cannot set maxTimeMS on getMore command for a non-awaitData cursor")
		}
	} else if a.has("maxTimeMS") {
		return nil, mongoerr.New(mongoerr.BadValue, "cannot set maxTimeMS on getMore command for a non-awaitData cursor")
	}
	docs, done, err := h.nextBatch(ctx, cur, int(batchSize))
	if err != nil {
		h.cursors.remove(id)
		return nil, err
	}
	if done {
		h.cursors.remove(id)
		id = 0
	}
	return cursorReplyFrom(ns, id, "nextBatch", docs, cur.src)
}

func (h *Handler) killCursors(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	ids, err := a.array("cursors")
	if err != nil {
		return nil, err
	}
	// Only the cursors' owner may kill them: one that is not theirs fails
	// the whole command before any is killed, as in mongod.
	list := make([]int64, 0, len(ids))
	for _, v := range ids {
		id, ok := v.AsInt64OK()
		if !ok {
			return nil, mongoerr.New(mongoerr.TypeMismatch, "cursor ids must be longs")
		}
		if owner, ok := h.cursors.ownerOf(id); ok && owner != cursorOwner(c) {
			return nil, errNotCursorOwner(id)
		}
		list = append(list, id)
	}
	var killed, notFound bson.A
	for _, id := range list {
		if h.cursors.remove(id) {
			killed = append(killed, id)
		} else {
			notFound = append(notFound, id)
		}
	}
	return marshal(bson.D{
		{Key: "cursorsKilled", Value: nonNil(killed)}, {Key: "cursorsNotFound", Value: nonNil(notFound)},
		{Key: "cursorsAlive", Value: bson.A{}}, {Key: "cursorsUnknown", Value: bson.A{}}, {Key: "ok", Value: 1.0},
	})
}

func nonNil(a bson.A) bson.A {
	if a == nil {
		return bson.A{}
	}
	return a
}
