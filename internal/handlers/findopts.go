package handlers

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// codeCappedPositionLost is mongod's CappedPositionLost (136): a tailable
// cursor's last document was removed from the capped collection.
const codeCappedPositionLost = mongoerr.CappedPositionLost

// codeQueryPlanKilled is mongod's QueryPlanKilled (175).
const codeQueryPlanKilled mongoerr.Code = 175

// defaultAwaitData is how long a getMore on an awaitData cursor waits for
// new documents when it names no maxTimeMS (mongod's default: 1 s).
const defaultAwaitData = time.Second

// findOptions are find's options beyond filter, sort, projection, skip and
// limit.
type findOptions struct {
	tailable, awaitData, noTimeout bool
}

// parseFindOptions reads and checks find's remaining options: those cmkdb
// honours, those that change nothing on one node (allowPartialResults,
// allowDiskUse, oplogReplay, readOnce), and those it refuses.
func parseFindOptions(a args) (findOptions, error) {
	var o findOptions
	var err error
	for _, f := range []string{"allowPartialResults", "allowDiskUse", "oplogReplay", "readOnce"} {
		if _, err := a.bool(f, false); err != nil {
			return o, err
		}
	}
	for _, f := range []string{"returnKey", "showRecordId"} {
		on, err := a.bool(f, false)
		if err != nil {
			return o, err
		}
		if on {
			return o, notSupported("the '%s' option of find is not supported", f)
		}
	}
	for _, f := range []string{"min", "max"} {
		d, err := a.doc(f)
		if err != nil {
			return o, err
		}
		if len(d) > 5 {
			return o, notSupported("the '%s' option of find is not supported", f)
		}
	}
	if o.tailable, err = a.bool("tailable", false); err != nil {
		return o, err
	}
	if o.awaitData, err = a.bool("awaitData", false); err != nil {
		return o, err
	}
	if o.noTimeout, err = a.bool("noCursorTimeout", false); err != nil {
		return o, err
	}
	if o.awaitData && !o.tailable {
		return o, mongoerr.New(mongoerr.FailedToParse, "Cannot set 'awaitData' without also setting 'tailable'")
	}
	if single, _ := a.bool("singleBatch", false); single && o.tailable {
		return o, mongoerr.New(mongoerr.BadValue, "cannot use tailable option with the 'singleBatch' option")
	}
	if v, ok := a.value("batchSize"); ok && v.Type != bson.TypeNull {
		if n, err := a.int64("batchSize", 0); err == nil && n < 0 {
			return o, mongoerr.New(mongoerr.Location51024, "BSON field 'batchSize' value must be >= 0, actual value '%d'", n)
		}
	}
	return o, nil
}

// naturalSort recognises a {$natural: 1|-1} sort (natural order, no
// blocking sort) and returns its direction, or 0.
func naturalSort(sortSpec bson.Raw) (int8, error) {
	elems, err := sortSpec.Elements()
	if err != nil || len(elems) == 0 || elems[0].Key() != "$natural" {
		return 0, nil
	}
	if len(elems) > 1 {
		return 0, mongoerr.New(mongoerr.BadValue, "$natural sort cannot be combined with other sort fields")
	}
	return naturalDir(elems[0].Value())
}

func naturalDir(v bson.RawValue) (int8, error) {
	switch f := v.AsFloat64(); {
	case v.Type != bson.TypeInt32 && v.Type != bson.TypeInt64 && v.Type != bson.TypeDouble:
		return 0, mongoerr.New(mongoerr.BadValue, "$natural must be 1 or -1")
	case f == 1:
		return 1, nil
	case f == -1:
		return -1, nil
	}
	return 0, mongoerr.New(mongoerr.BadValue, "$natural must be 1 or -1")
}

// parseHint checks a hint's shape: an index name, a key pattern, or
// {$natural: ±1}. It returns the natural direction for the latter.
func parseHint(a args) (bson.RawValue, int8, error) {
	v, ok := a.value("hint")
	if !ok || v.Type == bson.TypeNull {
		return bson.RawValue{}, 0, nil
	}
	return checkHint(v)
}

func checkHint(v bson.RawValue) (bson.RawValue, int8, error) {
	switch v.Type {
	case bson.TypeString:
		return v, 0, nil
	case bson.TypeEmbeddedDocument:
		d := v.Document()
		if len(d) <= 5 {
			return bson.RawValue{}, 0, nil // {} means no hint, as in mongod
		}
		if e, err := d.IndexErr(0); err == nil && e.Key() == "$natural" {
			dir, err := naturalDir(e.Value())
			return bson.RawValue{}, dir, err
		}
		return v, 0, nil
	}
	return bson.RawValue{}, 0, mongoerr.New(mongoerr.FailedToParse, "hint must be either a string or nested object")
}

// errBadHint is mongod's answer to a hint naming no index.
func errBadHint() error {
	return mongoerr.New(mongoerr.BadValue, "error processing query: planner returned error :: caused by :: hint provided does not correspond to an existing index")
}

// planFor picks the plan of a query: a $natural order when asked, the
// hinted index when one is named (a hint never changes the result, only
// the way to it, because candidates are always re-checked), otherwise
// docstore's choice.
func planFor(coll *docstore.Collection, filter bson.Raw, hint bson.RawValue, natural int8) (docstore.Plan, error) {
	if natural != 0 {
		return docstore.Plan{Natural: natural}, nil
	}
	if hint.Type == 0 {
		return docstore.PlanFor(coll, filter)
	}
	ix := hintedIndex(coll, hint)
	if ix == nil || ix.Hidden {
		// A hidden index cannot be hinted: mongod answers as for no index.
		return docstore.Plan{}, errBadHint()
	}
	if len(ix.PartialFilter) > 0 && !query.Implies(filter, ix.PartialFilter) {
		// A partial index the query does not imply would miss matches.
		return docstore.Plan{}, errBadHint()
	}
	pattern, err := bson.Marshal(ix.Key)
	if err != nil {
		return docstore.Plan{}, err
	}
	ip, ok, err := query.PlanIndex(filter, pattern, ix.ID != 0)
	if err != nil {
		return docstore.Plan{}, err
	}
	if !ok {
		var bounds []query.FieldBounds
		if kp, err := query.ParseKeyPattern(pattern); err == nil {
			bounds = query.FullBounds(kp)
		}
		return docstore.Plan{Index: ix, Ranges: []docstore.Range{{}}, Bounds: bounds}, nil
	}
	ranges := make([]docstore.Range, len(ip.Ranges))
	for j, r := range ip.Ranges {
		ranges[j] = docstore.Range{Lo: r.Start, Hi: r.End}
	}
	return docstore.Plan{Index: ix, Ranges: ranges, Bounds: ip.Bounds}, nil
}

// hintedIndex finds the index a hint names (by name or key pattern).
func hintedIndex(coll *docstore.Collection, hint bson.RawValue) *docstore.Index {
	for i := range coll.Indexes {
		ix := &coll.Indexes[i]
		if name, ok := hint.StringValueOK(); ok {
			if ix.Name == name {
				return ix
			}
			continue
		}
		pattern, err := bson.Marshal(ix.Key)
		if err == nil && query.Compare(bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: pattern}, hint) == 0 {
			return ix
		}
	}
	return nil
}

// checkHintExists validates a write statement's hint against the
// collection (a write with a hint naming no index fails, as in mongod).
func checkHintExists(coll *docstore.Collection, hint bson.RawValue) error {
	if hint.Type == 0 || coll == nil {
		return nil
	}
	if ix := hintedIndex(coll, hint); ix == nil || ix.Hidden {
		return errBadHint()
	}
	return nil
}

// tailSource is a tailable cursor over a capped collection: once the scan
// reaches the newest document it stays open, and later batches return the
// documents inserted since. With awaitData a getMore that finds nothing
// waits for the next write (or its time limit) before answering.
type tailSource struct {
	scan      *scanSource
	awaitData bool
	wait      time.Duration
	started   bool
	noTimeout bool
}

func (t *tailSource) noCursorTimeout() bool { return t.noTimeout }

// awaiter is a cursor whose getMore may wait for new data: setAwait takes
// the getMore's maxTimeMS and reports whether the cursor awaits data (a
// maxTimeMS on the getMore of any other cursor is an error).
type awaiter interface {
	setAwait(time.Duration) bool
}

func (t *tailSource) setAwait(d time.Duration) bool {
	t.wait = d
	return t.awaitData
}

func (t *tailSource) next(ctx context.Context, h *Handler, n int) ([]bson.Raw, bool, error) {
	first := !t.started
	t.started = true
	// The change channel is taken before reading, so a write that lands
	// between the read and the wait still wakes it.
	var changed <-chan struct{}
	if !first && t.awaitData {
		var err error
		if changed, err = t.changed(h); err != nil {
			return nil, false, err
		}
	}
	docs, err := t.batch(ctx, h, n)
	if err != nil || len(docs) > 0 || changed == nil {
		return docs, false, err
	}
	wait := t.wait
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
			// A disable or a closing connection ends the wait with its cause.
			return nil, false, ctx.Err()
		}
		// Any commit in the database signals; one to another collection
		// brings nothing, and the wait goes on for what is left of it.
		if changed, err = t.changed(h); err != nil {
			return nil, false, err
		}
		if docs, err = t.batch(ctx, h, n); err != nil || len(docs) > 0 {
			return docs, false, err
		}
	}
}

func (t *tailSource) changed(h *Handler) (<-chan struct{}, error) {
	st, release, err := h.store(t.scan.spec.db, false)
	if err != nil {
		return nil, err
	}
	defer release()
	if st == nil {
		return nil, mongoerr.New(codeQueryPlanKilled, "database dropped")
	}
	return st.Changed(), nil
}

// batch reads what the capped collection holds after the cursor's
// position. It first re-arms a finished scan and checks that the last
// document returned is still there: if the collection removed it, the
// documents inserted between may be gone too, and mongod reports
// CappedPositionLost rather than skip them silently.
func (t *tailSource) batch(ctx context.Context, h *Handler, n int) ([]bson.Raw, error) {
	st, release, err := h.store(t.scan.spec.db, false)
	if err != nil {
		return nil, err
	}
	if st == nil {
		release()
		return nil, mongoerr.New(codeQueryPlanKilled, "database dropped")
	}
	coll := st.Collection(t.scan.spec.coll)
	if coll == nil {
		release()
		// mongod kills a tailable cursor whose collection was dropped.
		return nil, mongoerr.New(codeQueryPlanKilled, "collection dropped")
	}
	ok, err := st.Tail(coll, &t.scan.pos)
	release()
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, mongoerr.New(codeCappedPositionLost, "CollectionScan died due to position in capped collection being deleted")
	}
	docs, _, err := t.scan.next(ctx, h, n)
	return docs, err
}

// noTimeoutSource marks a cursor opened with noCursorTimeout.
type noTimeoutSource struct{ batchSource }

func (noTimeoutSource) noCursorTimeout() bool { return true }
