package query

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// TestDataDriven runs the query-semantics cases in testdata/semantics: one
// file per topic, each case a command, its input and the expected output
// (regenerate with -rewrite, then review the diff against MongoDB's
// documented behaviour). Documents are relaxed extended JSON, one a line.
//
//	match           first line a filter, then documents; prints per
//	                document "true" or "false", and for a match through
//	                an array the position a positional update would use
//	update          lines "doc:", "update:", optional "query:" (the
//	                filter that selected doc; positional updates need
//	                it) and "arrayFilters:"; prints the new document, or
//	                "unchanged", or the error
//	upsert          lines "query:" and "update:"; prints the inserted
//	                document (the filter should fix _id)
//	project         first line a projection, then documents
//	sort            first line a sort, then documents; prints them sorted
//	pipeline        lines "stage: {...}" (in order), "doc: {...}" (the
//	                input), "coll <name>: {...}" (a document of another
//	                collection, for $lookup/$unionWith); prints the
//	                output documents or the error
//	expr            first line an expression, then documents; prints the
//	                value per document (as {"v": value}; {} when missing)
//	implies         first line a partial index's filter, then query
//	                filters; prints per filter whether it implies the
//	                first (the planner may then use the partial index)
//
// Errors print as "error <code> (<codeName>): <message>".
func TestDataDriven(t *testing.T) {
	datadriven.Walk(t, "testdata/semantics", func(t *testing.T, path string) {
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			switch d.Cmd {
			case "match":
				return ddMatch(t, d)
			case "update":
				return ddUpdate(t, d)
			case "upsert":
				return ddUpsert(t, d)
			case "project":
				return ddProject(t, d)
			case "sort":
				return ddSort(t, d)
			case "pipeline":
				return ddPipeline(t, d)
			case "expr":
				return ddExpr(t, d)
			case "implies":
				return ddImplies(t, d)
			}
			d.Fatalf(t, "unknown command %q", d.Cmd)
			return ""
		})
	})
}

// ddNow is the clock of every data-driven update.
var ddNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func ddLines(d *datadriven.TestData) []string {
	var out []string
	for _, l := range strings.Split(d.Input, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// ddFields reads "name: json" lines.
func ddFields(t *testing.T, d *datadriven.TestData, allowed ...string) map[string]string {
	out := map[string]string{}
	for _, l := range ddLines(d) {
		k, v, ok := strings.Cut(l, ":")
		k = strings.TrimSpace(k)
		if !ok || !contains(allowed, k) {
			d.Fatalf(t, "bad line %q: want one of %v followed by ':'", l, allowed)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out
}

func ddDoc(t *testing.T, d *datadriven.TestData, js string) bson.Raw {
	var r bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(js), false, &r); err != nil {
		d.Fatalf(t, "bad JSON %s: %v", js, err)
	}
	return r
}

func ddJSON(t *testing.T, doc bson.Raw) string {
	b, err := bson.MarshalExtJSON(doc, false, false)
	if err != nil {
		t.Fatalf("MarshalExtJSON: %v", err)
	}
	return string(b)
}

func ddErr(err error) string {
	c := mongoerr.CodeOf(err)
	return fmt.Sprintf("error %d (%s): %s", int32(c), c.Name(), err.Error())
}

func ddMatch(t *testing.T, d *datadriven.TestData) string {
	lines := ddLines(d)
	m, err := Compile(ddDoc(t, d, lines[0]))
	if err != nil {
		return ddErr(err) + "\n"
	}
	var b strings.Builder
	for _, l := range lines[1:] {
		ok, pos := m.MatchPosition(ddDoc(t, d, l))
		if ok != m.Match(ddDoc(t, d, l)) {
			d.Fatalf(t, "Match and MatchPosition disagree on %s", l)
		}
		fmt.Fprint(&b, ok)
		if pos >= 0 {
			fmt.Fprintf(&b, " at %d", pos)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func ddUpdate(t *testing.T, d *datadriven.TestData) string {
	f := ddFields(t, d, "doc", "update", "query", "arrayFilters")
	var filters []bson.Raw
	if js, ok := f["arrayFilters"]; ok {
		var err error
		filters, err = ArrayFiltersArg(ddDoc(t, d, `{"v": `+js+`}`).Lookup("v"), "arrayFilters")
		if err != nil {
			return ddErr(err) + "\n"
		}
	}
	u, err := CompileUpdateWithFilters(ddDoc(t, d, f["update"]), filters)
	if err != nil {
		return ddErr(err) + "\n"
	}
	opts := ApplyOptions{Now: ddNow}
	doc := ddDoc(t, d, f["doc"])
	if q, ok := f["query"]; ok {
		if opts.Query, err = Compile(ddDoc(t, d, q)); err != nil {
			return ddErr(err) + "\n"
		}
		if !opts.Query.Match(doc) {
			d.Fatalf(t, "query %s does not match doc %s", q, f["doc"])
		}
	}
	out, changed, err := u.Apply(doc, opts)
	switch {
	case err != nil:
		return ddErr(err) + "\n"
	case !changed:
		return "unchanged\n"
	}
	return ddJSON(t, out) + "\n"
}

func ddUpsert(t *testing.T, d *datadriven.TestData) string {
	f := ddFields(t, d, "query", "update", "arrayFilters")
	var filters []bson.Raw
	if js, ok := f["arrayFilters"]; ok {
		var err error
		if filters, err = ArrayFiltersArg(ddDoc(t, d, `{"v": `+js+`}`).Lookup("v"), "arrayFilters"); err != nil {
			return ddErr(err) + "\n"
		}
	}
	u, err := CompileUpdateWithFilters(ddDoc(t, d, f["update"]), filters)
	if err != nil {
		return ddErr(err) + "\n"
	}
	out, err := UpsertDocument(ddDoc(t, d, f["query"]), u, ApplyOptions{Now: ddNow})
	if err != nil {
		return ddErr(err) + "\n"
	}
	return ddJSON(t, out) + "\n"
}

func ddProject(t *testing.T, d *datadriven.TestData) string {
	lines := ddLines(d)
	p, err := CompileProjection(ddDoc(t, d, lines[0]))
	if err != nil {
		return ddErr(err) + "\n"
	}
	var b strings.Builder
	for _, l := range lines[1:] {
		out, err := p.Apply(ddDoc(t, d, l))
		if err != nil {
			b.WriteString(ddErr(err) + "\n")
			continue
		}
		b.WriteString(ddJSON(t, out) + "\n")
	}
	return b.String()
}

func ddSort(t *testing.T, d *datadriven.TestData) string {
	lines := ddLines(d)
	s, err := CompileSort(ddDoc(t, d, lines[0]))
	if err != nil {
		return ddErr(err) + "\n"
	}
	docs := make([]bson.Raw, 0, len(lines)-1)
	keys := make([][]bson.RawValue, 0, len(lines)-1)
	for _, l := range lines[1:] {
		doc := ddDoc(t, d, l)
		docs = append(docs, doc)
		keys = append(keys, s.Key(doc))
	}
	idx := make([]int, len(docs))
	for i := range idx {
		idx[i] = i
	}
	// A stable insertion sort: the cases are small, and ties keep input
	// order so the expected output is deterministic.
	for i := 1; i < len(idx); i++ {
		for j := i; j > 0 && s.CompareKeys(keys[idx[j]], keys[idx[j-1]]) < 0; j-- {
			idx[j], idx[j-1] = idx[j-1], idx[j]
		}
	}
	var b strings.Builder
	for _, i := range idx {
		b.WriteString(ddJSON(t, docs[i]) + "\n")
	}
	return b.String()
}

func ddPipeline(t *testing.T, d *datadriven.TestData) string {
	var stages, docs []bson.Raw
	src := mapSource{}
	for _, l := range ddLines(d) {
		k, v, ok := strings.Cut(l, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case !ok:
			d.Fatalf(t, "bad line %q", l)
		case k == "stage":
			stages = append(stages, ddDoc(t, d, v))
		case k == "doc":
			docs = append(docs, ddDoc(t, d, v))
		case strings.HasPrefix(k, "coll "):
			name := strings.TrimSpace(strings.TrimPrefix(k, "coll "))
			src[name] = append(src[name], ddDoc(t, d, v))
		default:
			d.Fatalf(t, "bad line %q: want stage:, doc: or coll <name>:", l)
		}
	}
	p, err := CompilePipeline(stages, src)
	if err != nil {
		return ddErr(err) + "\n"
	}
	it, err := p.Run(context.Background(), NewSliceIterator(docs))
	if err != nil {
		return ddErr(err) + "\n"
	}
	defer it.Close()
	out, err := drain(context.Background(), it)
	if err != nil {
		return ddErr(err) + "\n"
	}
	var b strings.Builder
	for _, o := range out {
		b.WriteString(ddJSON(t, o) + "\n")
	}
	if len(out) == 0 {
		b.WriteString("(no documents)\n")
	}
	return b.String()
}

func ddExpr(t *testing.T, d *datadriven.TestData) string {
	lines := ddLines(d)
	x, err := CompileExpression(ddDoc(t, d, `{"e": `+lines[0]+`}`).Lookup("e"))
	if err != nil {
		return ddErr(err) + "\n"
	}
	docs := lines[1:]
	if len(docs) == 0 {
		docs = []string{"{}"}
	}
	var b strings.Builder
	for _, l := range docs {
		v, err := x.Evaluate(ddDoc(t, d, l))
		if err != nil {
			b.WriteString(ddErr(err) + "\n")
			continue
		}
		b.WriteString(ddJSON(t, docWithKey("v", v)) + "\n")
	}
	return b.String()
}

func ddImplies(t *testing.T, d *datadriven.TestData) string {
	lines := ddLines(d)
	cond := ddDoc(t, d, lines[0])
	var b strings.Builder
	for _, l := range lines[1:] {
		fmt.Fprintln(&b, Implies(ddDoc(t, d, l), cond))
	}
	return b.String()
}
