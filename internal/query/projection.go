package query

import (
	"math"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Projection is a compiled find projection (or $project stage). It is
// immutable and safe for concurrent use.
type Projection struct {
	root      *projTree
	inclusion bool // otherwise exclusion
	excludeID bool
	identity  bool
}

type projTree struct {
	fields map[string]*projField
	order  []string
}

type projField struct {
	include   bool
	exclude   bool
	expr      expr
	slice     *sliceSpec
	elemMatch func(bson.RawValue) bool
	sub       *projTree
}

type sliceSpec struct {
	skip, limit int
	hasSkip     bool
}

func newProjTree() *projTree { return &projTree{fields: map[string]*projField{}} }

// hasExpr reports whether t (recursively) contains computed fields, which
// must be materialised even when the input lacks the parent field.
func (t *projTree) hasExpr() bool {
	for _, f := range t.fields {
		if f.expr != nil || (f.sub != nil && f.sub.hasExpr()) {
			return true
		}
	}
	return false
}

// CompileProjection compiles a find projection. It follows MongoDB 4.4+
// rules: 1/true include, 0/false exclude, other values are aggregation
// expressions (computed fields), $slice and $elemMatch operate on arrays.
// Inclusion and exclusion cannot be mixed except for _id.
func CompileProjection(spec bson.Raw) (*Projection, error) {
	return compileProjection(spec, false)
}

func compileProjection(spec bson.Raw, aggregation bool) (*Projection, error) {
	if err := validateDoc(spec); len(spec) > 0 && err != nil {
		return nil, badValue("invalid projection document: %v", err)
	}
	p := &Projection{root: newProjTree()}
	if len(docBody(spec)) == 0 {
		if aggregation {
			return nil, mongoerr.New(51272, "Invalid $project :: caused by :: projection specification must have at least one field")
		}
		p.identity = true
		return p, nil
	}
	b := &projBuilder{p: p, aggregation: aggregation}
	if err := b.addFields(nil, spec); err != nil {
		return nil, err
	}
	switch b.mode {
	case modeInclude:
		p.inclusion = true
	case modeExclude:
		p.inclusion = false
	default:
		// Only _id flags and/or $slice: {_id: 1} alone is an inclusion,
		// {_id: 0} or a lone $slice keeps everything else.
		p.inclusion = b.idIncluded
	}
	return p, nil
}

type projMode int8

const (
	modeUnset projMode = iota
	modeInclude
	modeExclude
)

type projBuilder struct {
	p           *Projection
	aggregation bool
	mode        projMode
	idIncluded  bool
}

func (b *projBuilder) setMode(m projMode, path string) error {
	if b.mode == modeUnset {
		b.mode = m
		return nil
	}
	if b.mode == m {
		return nil
	}
	if b.mode == modeInclude {
		return mongoerr.New(mongoerr.Location31254, "Cannot do exclusion on field %s in inclusion projection", path)
	}
	return mongoerr.New(mongoerr.Location31253, "Cannot do inclusion on field %s in exclusion projection", path)
}

func (b *projBuilder) addFields(prefix []string, doc []byte) error {
	for _, e := range elems(doc) {
		if e.key == "" {
			return mongoerr.New(15998, "FieldPath field names may not be empty strings.")
		}
		if strings.HasPrefix(e.key, "$") {
			return mongoerr.New(codeFieldNameDollar, "FieldPath field names may not start with '$'. Consider using $getField or $setField.")
		}
		if strings.HasSuffix(e.key, ".$") || strings.Contains(e.key, ".$.") {
			return mongoerr.New(mongoerr.NotImplemented, "positional projection ('%s') is not supported", e.key)
		}
		sub, err := splitFieldPath(len(prefix), e.key)
		if err != nil {
			return err
		}
		parts := append(append([]string{}, prefix...), sub...)
		for _, s := range parts {
			if s == "" {
				return mongoerr.New(15998, "FieldPath field names may not be empty strings.")
			}
		}
		path := strings.Join(parts, ".")
		isID := len(parts) == 1 && parts[0] == "_id"
		f := &projField{}
		v := e.val
		switch {
		case v.Type == bson.TypeBoolean || isNumeric(v.Type):
			if truthy(v) {
				f.include = true
				if isID {
					b.idIncluded = true
				} else if err := b.setMode(modeInclude, path); err != nil {
					return err
				}
			} else {
				f.exclude = true
				if isID {
					b.p.excludeID = true
				} else if err := b.setMode(modeExclude, path); err != nil {
					return err
				}
			}
		case v.Type == bson.TypeEmbeddedDocument && !isOperatorDoc(v):
			if len(docBody(v.Value)) == 0 {
				return mongoerr.New(51270, "An empty sub-projection is not a valid value. Found empty object at path")
			}
			if err := b.addFields(parts, v.Value); err != nil {
				return err
			}
			continue
		case isOperatorDoc(v) && !b.aggregation && (firstKey(v.Value) == "$slice" || firstKey(v.Value) == "$elemMatch"):
			op := firstKey(v.Value)
			arg, _ := lookup(v.Value, op)
			if op == "$slice" {
				s, err := parseSlice(arg)
				if err != nil {
					return err
				}
				f.slice = s
				f.include = true
			} else {
				if len(parts) != 1 {
					return mongoerr.New(31275, "Cannot use $elemMatch projection on a nested field.")
				}
				pred, err := elemMatchPred(arg, 0)
				if err != nil {
					return err
				}
				f.elemMatch = func(v bson.RawValue) bool { ok, _ := pred(v); return ok }
				f.include = true
				if err := b.setMode(modeInclude, path); err != nil {
					return err
				}
			}
		default:
			x, err := compileExpr(v, 0)
			if err != nil {
				return err
			}
			f.expr = x
			if !isID {
				if err := b.setMode(modeInclude, path); err != nil {
					return err
				}
			} else {
				b.idIncluded = true
			}
		}
		if err := b.insert(parts, f); err != nil {
			return err
		}
	}
	return nil
}

// insert places a leaf spec in the tree, rejecting paths that overlap.
func (b *projBuilder) insert(parts []string, f *projField) error {
	t := b.p.root
	for i, s := range parts {
		last := i == len(parts)-1
		cur, ok := t.fields[s]
		if last {
			if ok {
				return mongoerr.New(mongoerr.Location31250, "Path collision at %s", strings.Join(parts, "."))
			}
			t.fields[s] = f
			t.order = append(t.order, s)
			return nil
		}
		if !ok {
			cur = &projField{sub: newProjTree()}
			t.fields[s] = cur
			t.order = append(t.order, s)
		} else if cur.sub == nil {
			return mongoerr.New(mongoerr.Location31249, "Path collision at %s remaining portion %s", strings.Join(parts, "."), strings.Join(parts[i+1:], "."))
		}
		t = cur.sub
	}
	return nil
}

func parseSlice(arg bson.RawValue) (*sliceSpec, error) {
	toInt := func(v bson.RawValue) (int, bool) {
		if !isNumeric(v.Type) {
			return 0, false
		}
		f := toNum(v).float()
		if math.IsNaN(f) {
			return 0, false
		}
		if f > math.MaxInt32 {
			f = math.MaxInt32
		}
		if f < math.MinInt32 {
			f = math.MinInt32
		}
		return int(f), true
	}
	if arg.Type == bson.TypeArray {
		items := arrayValues(arg.Value)
		if len(items) != 2 {
			return nil, badValue("$slice array wrong size")
		}
		skip, ok1 := toInt(items[0])
		limit, ok2 := toInt(items[1])
		if !ok1 || !ok2 {
			return nil, badValue("$slice array elements must be numbers")
		}
		if limit <= 0 {
			return nil, badValue("$slice limit must be positive")
		}
		return &sliceSpec{skip: skip, limit: limit, hasSkip: true}, nil
	}
	n, ok := toInt(arg)
	if !ok {
		return nil, badValue("$slice only supports numbers and [skip, limit] arrays")
	}
	return &sliceSpec{limit: n}, nil
}

func (s *sliceSpec) apply(v bson.RawValue) bson.RawValue {
	if v.Type != bson.TypeArray {
		return v
	}
	vals := arrayValues(v.Value)
	n := len(vals)
	var from, to int
	if s.hasSkip {
		from = s.skip
		if from < 0 {
			from += n
			if from < 0 {
				from = 0
			}
		}
		if from > n {
			from = n
		}
		to = from + s.limit
		if to > n {
			to = n
		}
	} else if s.limit >= 0 {
		from, to = 0, min(s.limit, n)
	} else {
		from, to = max(n+s.limit, 0), n
	}
	return rvArray(buildArray(vals[from:to]))
}

// Apply projects doc. Errors come only from evaluating computed fields.
func (p *Projection) Apply(doc bson.Raw) (bson.Raw, error) {
	if p.identity {
		return doc, nil
	}
	root := rvDoc(doc)
	ec := &evalCtx{root: root, current: root}
	var out *mdoc
	var err error
	if p.inclusion {
		out, err = p.include(doc, p.root, true, ec)
	} else {
		out, err = p.exclude(doc, p.root, true, ec)
	}
	if err != nil {
		return nil, err
	}
	return out.encode(), nil
}

func (p *Projection) include(doc []byte, t *projTree, top bool, ec *evalCtx) (*mdoc, error) {
	out := &mdoc{}
	var err error
	forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		key := string(k)
		f := t.fields[key]
		if f == nil {
			if top && key == "_id" && !p.excludeID {
				out.set(key, v)
			}
			return false
		}
		switch {
		case f.exclude || f.expr != nil:
		case f.include:
			switch {
			case f.elemMatch != nil:
				if v.Type == bson.TypeArray {
					forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
						if f.elemMatch(rvArray(buildArray([]bson.RawValue{e}))) {
							out.set(key, rvArray(buildArray([]bson.RawValue{e})))
							return true
						}
						return false
					})
				}
			case f.slice != nil:
				out.set(key, f.slice.apply(v))
			default:
				out.set(key, v)
			}
		case f.sub != nil:
			var n any
			n, err = p.includeValue(v, f.sub, ec)
			if err != nil {
				return true
			}
			if n != nil {
				out.set(key, n)
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	// Computed fields go after the included ones, in specification order.
	for _, key := range t.order {
		f := t.fields[key]
		switch {
		case f.expr != nil:
			v, err := f.expr.eval(ec)
			if err != nil {
				return nil, err
			}
			if isMissing(v) {
				continue
			}
			out.set(key, v)
		case f.sub != nil && f.sub.hasExpr():
			if _, ok := out.get(key); ok {
				continue
			}
			sub, err := p.include(nil, f.sub, false, ec)
			if err != nil {
				return nil, err
			}
			out.set(key, sub)
		}
	}
	return out, nil
}

// includeValue applies a nested inclusion to a value: documents are
// projected, arrays element-wise (dropping scalars), scalars vanish.
func (p *Projection) includeValue(v bson.RawValue, t *projTree, ec *evalCtx) (any, error) {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		return p.include(v.Value, t, false, ec)
	case bson.TypeArray:
		arr := &marr{}
		var err error
		forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			var n any
			n, err = p.includeValue(e, t, ec)
			if err != nil {
				return true
			}
			if n != nil {
				arr.elems = append(arr.elems, n)
			}
			return false
		})
		return arr, err
	}
	if t.hasExpr() {
		return p.include(nil, t, false, ec)
	}
	return nil, nil
}

func (p *Projection) exclude(doc []byte, t *projTree, top bool, ec *evalCtx) (*mdoc, error) {
	out := &mdoc{}
	forEachElem(doc, func(k []byte, v bson.RawValue) bool {
		key := string(k)
		if top && key == "_id" && p.excludeID {
			return false
		}
		f := t.fields[key]
		switch {
		case f == nil:
			out.set(key, v)
		case f.exclude:
		case f.slice != nil:
			out.set(key, f.slice.apply(v))
		case f.sub != nil:
			out.set(key, p.excludeValue(v, f.sub, ec))
		default:
			out.set(key, v)
		}
		return false
	})
	return out, nil
}

func (p *Projection) excludeValue(v bson.RawValue, t *projTree, ec *evalCtx) any {
	switch v.Type {
	case bson.TypeEmbeddedDocument:
		d, _ := p.exclude(v.Value, t, false, ec)
		return d
	case bson.TypeArray:
		arr := &marr{}
		forEachElem(v.Value, func(_ []byte, e bson.RawValue) bool {
			arr.elems = append(arr.elems, p.excludeValue(e, t, ec))
			return false
		})
		return arr
	}
	return v
}
