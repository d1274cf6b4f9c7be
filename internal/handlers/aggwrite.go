package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/query"
)

// $out and $merge, an aggregation's final writing stage. The pipeline
// compiler refuses them anywhere else; the aggregate handler takes the
// last stage off, runs the rest, and writes the results here.

// aggWriteBatch is how many documents one storage write holds.
const aggWriteBatch = 1000

// aggWriter is a parsed $out or $merge.
type aggWriter struct {
	stage string // "$out" or "$merge"
	coll  string
	// $merge
	on             []string
	whenMatched    string // replace, keepExisting, merge, fail, pipeline
	matchedPipe    []bson.Raw
	whenNotMatched string // insert, discard, fail
	let            map[string]bson.RawValue
	bypass         bool // bypassDocumentValidation
}

// splitWriteStage takes a final $out/$merge off the pipeline.
func splitWriteStage(stages []bson.Raw, db string) ([]bson.Raw, *aggWriter, error) {
	if len(stages) == 0 {
		return stages, nil, nil
	}
	last := stages[len(stages)-1]
	e, err := last.IndexErr(0)
	if err != nil || (e.Key() != "$out" && e.Key() != "$merge") {
		return stages, nil, nil
	}
	if _, err := last.IndexErr(1); err == nil {
		return stages, nil, nil // the compiler reports the shape error
	}
	var w *aggWriter
	if e.Key() == "$out" {
		w, err = parseOut(e.Value(), db)
	} else {
		w, err = parseMerge(e.Value(), db)
	}
	if err != nil {
		return nil, nil, err
	}
	return stages[:len(stages)-1], w, nil
}

// targetNS reads a {db, coll} target; another database is refused (each
// database has its own key, and cmkdb writes one database per command).
func targetNS(v bson.RawValue, db, stage, collField string) (string, error) {
	switch v.Type {
	case bson.TypeString:
		return v.StringValue(), nil
	case bson.TypeEmbeddedDocument:
		var coll string
		for _, e := range mustElements(v.Document()) {
			s, ok := e.Value().StringValueOK()
			switch {
			case e.Key() == "db" && ok:
				if s != db {
					return "", mongoerr.New(mongoerr.NotImplemented, "%s to another database (%s) is not supported: each database has its own encryption key", stage, s)
				}
			case e.Key() == collField && ok:
				coll = s
			case e.Key() == "db" || e.Key() == collField:
				return "", mongoerr.New(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'string'", stage, e.Key(), typeName(e.Value().Type))
			default:
				return "", mongoerr.New(40415, "BSON field '%s.%s' is an unknown field.", stage, e.Key())
			}
		}
		if coll == "" {
			return "", mongoerr.New(40414, "BSON field '%s.%s' is missing but a required field", stage, collField)
		}
		return coll, nil
	}
	if stage == "$out" {
		return "", mongoerr.New(31278, "$out only supports a string or object argument, but found %s", typeName(v.Type))
	}
	return "", mongoerr.New(51178, "$merge 'into' field  must be either a string or an object, but found %s", typeName(v.Type))
}

func checkTarget(stage, db, coll string) error {
	if err := docstore.ValidateCollectionName(coll); err != nil {
		return mongoerr.New(mongoerr.InvalidNamespace, "Invalid %s target namespace %s.%s: %v", stage, db, coll, err)
	}
	if len(coll) >= 7 && coll[:7] == "system." {
		return mongoerr.New(17385, "Can't %s to special collection: %s", stage, coll)
	}
	return nil
}

func parseOut(v bson.RawValue, db string) (*aggWriter, error) {
	coll, err := targetNS(v, db, "$out", "coll")
	if err != nil {
		return nil, err
	}
	if err := checkTarget("$out", db, coll); err != nil {
		return nil, err
	}
	return &aggWriter{stage: "$out", coll: coll}, nil
}

func parseMerge(v bson.RawValue, db string) (*aggWriter, error) {
	w := &aggWriter{stage: "$merge", on: []string{"_id"}, whenMatched: "merge", whenNotMatched: "insert"}
	var into bson.RawValue
	switch v.Type {
	case bson.TypeString:
		into = v
	case bson.TypeEmbeddedDocument:
		for _, e := range mustElements(v.Document()) {
			val := e.Value()
			switch e.Key() {
			case "into":
				into = val
			case "on":
				w.on = nil
				if s, ok := val.StringValueOK(); ok {
					w.on = []string{s}
					break
				}
				arr, ok := val.ArrayOK()
				if !ok {
					return nil, mongoerr.New(51186, "$merge 'on' field must be either a string or an array of strings, but found %s", typeName(val.Type))
				}
				vals, _ := arr.Values()
				for _, x := range vals {
					s, ok := x.StringValueOK()
					if !ok {
						return nil, mongoerr.New(51134, "$merge 'on' array elements must be strings, but found %s", typeName(x.Type))
					}
					w.on = append(w.on, s)
				}
				if len(w.on) == 0 {
					return nil, mongoerr.New(51187, "If explicitly specifying $merge 'on', must include at least one field")
				}
			case "whenMatched":
				if arr, ok := val.ArrayOK(); ok {
					w.whenMatched = "pipeline"
					vals, _ := arr.Values()
					for _, x := range vals {
						d, ok := x.DocumentOK()
						if !ok {
							return nil, mongoerr.New(mongoerr.TypeMismatch, "Each element of the 'whenMatched' pipeline must be an object")
						}
						name := ""
						if fe, err := d.IndexErr(0); err == nil {
							name = fe.Key()
						}
						switch name {
						case "$addFields", "$set", "$project", "$unset", "$replaceRoot", "$replaceWith":
						default:
							return nil, mongoerr.New(72, "%s is not allowed to be used within an update", name)
						}
						w.matchedPipe = append(w.matchedPipe, d)
					}
					break
				}
				s, ok := val.StringValueOK()
				switch {
				case !ok:
					return nil, mongoerr.New(51191, "$merge 'whenMatched' field must be either a string or an array, but found %s", typeName(val.Type))
				case s == "replace" || s == "keepExisting" || s == "merge" || s == "fail":
					w.whenMatched = s
				default:
					return nil, mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field '$merge.whenMatched' is not a valid value.", s)
				}
			case "whenNotMatched":
				s, ok := val.StringValueOK()
				if !ok {
					return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$merge.whenNotMatched' is the wrong type '%s', expected type 'string'", typeName(val.Type))
				}
				if s != "insert" && s != "discard" && s != "fail" {
					return nil, mongoerr.New(mongoerr.BadValue, "Enumeration value '%s' for field '$merge.whenNotMatched' is not a valid value.", s)
				}
				w.whenNotMatched = s
			case "let":
				d, ok := val.DocumentOK()
				if !ok {
					return nil, mongoerr.New(mongoerr.TypeMismatch, "BSON field '$merge.let' is the wrong type '%s', expected type 'object'", typeName(val.Type))
				}
				w.let = map[string]bson.RawValue{}
				for _, le := range mustElements(d) {
					x, err := query.CompileExpression(le.Value())
					if err != nil {
						return nil, err
					}
					// let constants only: a reference to the source
					// document is $$new, bound per document.
					cv, err := x.Evaluate(bson.Raw{5, 0, 0, 0, 0})
					if err != nil {
						return nil, err
					}
					w.let[le.Key()] = cv
				}
			default:
				return nil, mongoerr.New(40415, "BSON field '$merge.%s' is an unknown field.", e.Key())
			}
		}
	default:
		return nil, mongoerr.New(51182, "$merge requires a string or object argument, but found %s", typeName(v.Type))
	}
	if into.Type == 0 {
		return nil, mongoerr.New(40414, "BSON field '$merge.into' is missing but a required field")
	}
	coll, err := targetNS(into, db, "$merge", "coll")
	if err != nil {
		return nil, err
	}
	if err := checkTarget("$merge", db, coll); err != nil {
		return nil, err
	}
	w.coll = coll
	if w.let != nil && w.whenMatched != "pipeline" {
		return nil, mongoerr.New(51199, "Cannot use 'let' variables with 'whenMatched: %s' mode", w.whenMatched)
	}
	return w, nil
}

// run writes the pipeline's output.
func (w *aggWriter) run(ctx context.Context, h *Handler, db string, it query.Iterator) error {
	defer it.Close()
	if h.opts.ReadOnly {
		return mongoerr.New(mongoerr.IllegalOperation, "Cannot execute a write operation in read-only mode: this node serves a snapshot")
	}
	if h.opts.Repl != nil {
		if err := h.opts.Repl.CheckWritable(); err != nil {
			return err
		}
	}
	st, release, err := h.store(db, true)
	if err != nil {
		return err
	}
	defer release()
	if w.stage == "$out" {
		return w.runOut(ctx, st, it)
	}
	return w.runMerge(ctx, st, it)
}

// runOut writes into a temporary collection with the target's indexes,
// then renames it over the target, as mongod does: readers see the old
// contents or the new ones, and a failure leaves the target unchanged.
func (w *aggWriter) runOut(ctx context.Context, st *docstore.Store, it query.Iterator) error {
	old := st.Collection(w.coll)
	if old != nil && old.Options.Capped {
		return mongoerr.New(17152, "namespace '%s.%s' is capped so it can't be used for $out", st.Name(), w.coll)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := "tmp.agg_out." + hex.EncodeToString(rnd[:])
	var opts docstore.CollOptions
	if old != nil {
		opts = old.Options
	}
	if _, err := st.CreateCollectionWithOptions(tmp, opts); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = st.DropCollection(tmp)
		}
	}()
	if old != nil {
		for _, ix := range old.Indexes {
			if ix.ID == 0 {
				continue // _id
			}
			if _, err := st.CreateIndex(ctx, tmp, docstore.IndexSpec{Name: ix.Name, Key: ix.Key, Unique: ix.Unique, Text: ix.Text}); err != nil {
				return err
			}
		}
	}
	for {
		batch, done, err := nextBatch(ctx, it)
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			err = st.Write(ctx, func(wr *docstore.Writer) error {
				wr.SkipValidation = w.bypass
				coll := wr.Collection(tmp)
				if coll == nil {
					return mongoerr.New(mongoerr.NamespaceNotFound, "$out's temporary collection was dropped")
				}
				for _, d := range batch {
					d, err := withID(d)
					if err != nil {
						return err
					}
					if err := wr.Insert(coll, d); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if done {
			break
		}
	}
	if err := st.RenameCollection(tmp, w.coll, true); err != nil {
		return err
	}
	ok = true
	return nil
}

func nextBatch(ctx context.Context, it query.Iterator) ([]bson.Raw, bool, error) {
	var out []bson.Raw
	for len(out) < aggWriteBatch {
		d, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, d)
	}
	return out, false, nil
}

// runMerge merges the results into the target. The results are read to
// the end first, so a $merge into the collection being aggregated never
// sees its own writes.
func (w *aggWriter) runMerge(ctx context.Context, st *docstore.Store, it query.Iterator) error {
	var docs []bson.Raw
	for {
		batch, done, err := nextBatch(ctx, it)
		if err != nil {
			return err
		}
		docs = append(docs, batch...)
		if done {
			break
		}
	}
	coll := st.Collection(w.coll)
	if coll == nil {
		var err error
		if coll, err = st.EnsureCollection(w.coll); err != nil {
			return err
		}
	}
	if !(len(w.on) == 1 && w.on[0] == "_id") && !hasUniqueIndex(coll, w.on) {
		return mongoerr.New(51183, "Cannot find index to verify that join fields will be unique")
	}
	for start := 0; start < len(docs); start += aggWriteBatch {
		end := min(start+aggWriteBatch, len(docs))
		err := st.Write(ctx, func(wr *docstore.Writer) error {
			wr.SkipValidation = w.bypass
			c := wr.Collection(w.coll)
			if c == nil {
				return mongoerr.New(mongoerr.NamespaceNotFound, "$merge target %s was dropped", w.coll)
			}
			for _, d := range docs[start:end] {
				if err := w.mergeOne(wr, c, d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func hasUniqueIndex(c *docstore.Collection, on []string) bool {
	for _, ix := range c.Indexes {
		if !ix.Unique || len(ix.Key) != len(on) {
			continue
		}
		all := true
		for _, k := range ix.Key {
			found := false
			for _, f := range on {
				found = found || f == k.Key
			}
			all = all && found
		}
		if all {
			return true
		}
	}
	return false
}

func (w *aggWriter) mergeOne(wr *docstore.Writer, c *docstore.Collection, d bson.Raw) error {
	// The "on" fields: present, not null, not arrays.
	filter := bson.D{}
	for _, f := range w.on {
		v, err := bson.Raw(d).LookupErr(splitDots(f)...)
		if err != nil || v.Type == bson.TypeNull || v.Type == bson.TypeUndefined || v.Type == bson.TypeArray {
			return mongoerr.New(51132, "$merge write error: 'on' field '%s' cannot be missing, null, undefined or an array", f)
		}
		filter = append(filter, bson.E{Key: f, Value: v})
	}
	var target bson.Raw
	if len(w.on) == 1 && w.on[0] == "_id" {
		t, found, err := wr.Get(c, filter[0].Value.(bson.RawValue))
		if err != nil {
			return err
		}
		if found {
			target = t
		}
	} else {
		fraw, err := bson.Marshal(filter)
		if err != nil {
			return err
		}
		m, err := query.Compile(fraw)
		if err != nil {
			return err
		}
		if target, err = firstMatch(wr, c, fraw, m, nil); err != nil {
			return err
		}
	}
	if target == nil {
		switch w.whenNotMatched {
		case "discard":
			return nil
		case "fail":
			return mongoerr.New(13113, "$merge could not find a matching document in the target collection for at least one document in the source collection")
		}
		nd, err := withID(d)
		if err != nil {
			return err
		}
		return wr.Insert(c, nd)
	}
	var nd bson.Raw
	switch w.whenMatched {
	case "keepExisting":
		return nil
	case "fail":
		return mongoerr.New(mongoerr.DuplicateKey, "$merge failed due to a DuplicateKey error: a document in %s matches on %v", w.coll, w.on)
	case "replace":
		nd = withTargetID(d, target)
	case "merge":
		nd = mergeTop(target, d)
	case "pipeline":
		vars := map[string]bson.RawValue{"new": {Type: bson.TypeEmbeddedDocument, Value: d}}
		for k, v := range w.let {
			vars[k] = v
		}
		stages, err := query.RewriteLetPipeline(w.matchedPipe, vars)
		if err != nil {
			return err
		}
		p, err := query.CompilePipeline(stages, nil)
		if err != nil {
			return err
		}
		out, err := p.Run(context.Background(), query.NewSliceIterator([]bson.Raw{target}))
		if err != nil {
			return err
		}
		res, err := out.Next(context.Background())
		out.Close()
		if err != nil {
			return err
		}
		nd = withTargetID(res, target)
	}
	if err := validateInsertDoc(nd); err != nil {
		return err
	}
	return wr.Replace(c, target, nd)
}

func splitDots(p string) []string {
	var out []string
	start := 0
	for i := 0; i < len(p); i++ {
		if p[i] == '.' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return append(out, p[start:])
}

// withTargetID returns d with the target's _id (first), as a replacement
// keeps the matched document's identity.
func withTargetID(d, target bson.Raw) bson.Raw {
	id := target.Lookup("_id")
	out := bson.D{{Key: "_id", Value: id}}
	for _, e := range mustElements(d) {
		if e.Key() != "_id" {
			out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	raw, _ := bson.Marshal(out)
	return raw
}

// mergeTop is whenMatched "merge": the target's fields, with the new
// document's top-level fields replacing or added.
func mergeTop(target, d bson.Raw) bson.Raw {
	out := bson.D{}
	seen := map[string]bool{}
	for _, e := range mustElements(target) {
		v := e.Value()
		if nv, err := d.LookupErr(e.Key()); err == nil && e.Key() != "_id" {
			v = nv
		}
		seen[e.Key()] = true
		out = append(out, bson.E{Key: e.Key(), Value: v})
	}
	for _, e := range mustElements(d) {
		if !seen[e.Key()] {
			out = append(out, bson.E{Key: e.Key(), Value: e.Value()})
		}
	}
	raw, _ := bson.Marshal(out)
	return raw
}
