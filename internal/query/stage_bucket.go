package query

import (
	"context"
	"math"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// isGroupByExpr is the shape $bucket and $bucketAuto accept for groupBy:
// a $-prefixed path or an operator object.
func isGroupByExpr(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeString:
		return strings.HasPrefix(stringish(v), "$")
	case bson.TypeEmbeddedDocument:
		return strings.HasPrefix(firstKey(v.Value), "$")
	}
	return false
}

// isConstantSpec reports whether v is a literal (no path, variable or
// operator anywhere in it).
func isConstantSpec(v bson.RawValue) bool {
	switch v.Type {
	case bson.TypeString:
		return !strings.HasPrefix(stringish(v), "$")
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		ok := true
		forEachElem(v.Value, func(k []byte, e bson.RawValue) bool {
			if v.Type == bson.TypeEmbeddedDocument && strings.HasPrefix(string(k), "$") {
				ok = false
			} else if !isConstantSpec(e) {
				ok = false
			}
			return !ok
		})
		return ok
	}
	return true
}

// $bucket desugars, as in mongod, into a $group whose _id is a $switch
// over the boundaries, and a $sort on _id.
func compileBucket(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40201, "Argument to $bucket stage must be an object, but found type: %s.", TypeName(arg.Type))
	}
	var groupBy, def, output bson.RawValue
	var bounds []bson.RawValue
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "groupBy":
			if !isGroupByExpr(e.val) {
				return nil, mongoerr.New(40202, "The $bucket 'groupBy' field must be defined as a $-prefixed path or an expression, but found: %s.", debugString(e.val))
			}
			groupBy = e.val
		case "boundaries":
			if e.val.Type != bson.TypeArray {
				return nil, mongoerr.New(40200, "The $bucket 'boundaries' field must be an array, but found type: %s.", TypeName(e.val.Type))
			}
			for _, b := range arrayValues(e.val.Value) {
				if !isConstantSpec(b) {
					return nil, mongoerr.New(40191, "The $bucket 'boundaries' field must be an array of constant values, but found value: %s.", debugString(b))
				}
				bounds = append(bounds, b)
			}
			if len(bounds) < 2 {
				return nil, mongoerr.New(40192, "The $bucket 'boundaries' field must have at least 2 values, but found %d value(s).", len(bounds))
			}
			for i := 1; i < len(bounds); i++ {
				lo, hi := bounds[i-1], bounds[i]
				if canonRank(lo.Type) != canonRank(hi.Type) {
					return nil, mongoerr.New(40193, "All values in the the 'boundaries' option to $bucket must have the same type. Found conflicting types %s and %s.", TypeName(lo.Type), TypeName(hi.Type))
				}
				if Compare(lo, hi) >= 0 {
					return nil, mongoerr.New(40194, "The 'boundaries' option to $bucket must be sorted, but elements %d and %d are not in ascending order (%s is not less than %s).", i-1, i, debugString(lo), debugString(hi))
				}
			}
		case "default":
			if !isConstantSpec(e.val) {
				return nil, mongoerr.New(40195, "The $bucket 'default' field must be a constant expression, but found: %s.", debugString(e.val))
			}
			def = e.val
		case "output":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(40196, "The $bucket 'output' field must be an object, but found type: %s.", TypeName(e.val.Type))
			}
			output = e.val
		default:
			return nil, mongoerr.New(40197, "Unrecognized option to $bucket: %s.", e.key)
		}
	}
	if isMissing(groupBy) || len(bounds) == 0 {
		return nil, mongoerr.New(40198, "$bucket requires 'groupBy' and 'boundaries' to be specified.")
	}
	if !isMissing(def) && canonRank(def.Type) == canonRank(bounds[0].Type) {
		if !(Compare(def, bounds[0]) < 0 || Compare(def, bounds[len(bounds)-1]) >= 0) {
			return nil, mongoerr.New(40199, "The $bucket 'default' field must be less than the lowest boundary or greater than or equal to the highest boundary.")
		}
	}
	lit := func(v bson.RawValue) bsoncore.Document {
		return bsoncore.NewDocumentBuilder().AppendValue("$literal", bsoncore.Value{Type: bsoncore.Type(v.Type), Data: v.Value}).Build()
	}
	cmp := func(op string, bound bson.RawValue) bsoncore.Document {
		arr := bsoncore.NewArrayBuilder().AppendValue(bsoncore.Value{Type: bsoncore.Type(groupBy.Type), Data: groupBy.Value}).AppendDocument(lit(bound)).Build()
		return bsoncore.NewDocumentBuilder().AppendArray(op, arr).Build()
	}
	branches := bsoncore.NewArrayBuilder()
	for i := 1; i < len(bounds); i++ {
		and := bsoncore.NewArrayBuilder().AppendDocument(cmp("$gte", bounds[i-1])).AppendDocument(cmp("$lt", bounds[i])).Build()
		branches.AppendDocument(bsoncore.NewDocumentBuilder().
			AppendDocument("case", bsoncore.NewDocumentBuilder().AppendArray("$and", and).Build()).
			AppendDocument("then", lit(bounds[i-1])).Build())
	}
	sw := bsoncore.NewDocumentBuilder().AppendArray("branches", branches.Build())
	if !isMissing(def) {
		sw.AppendDocument("default", lit(def))
	}
	g := bsoncore.NewDocumentBuilder().AppendDocument("_id", bsoncore.NewDocumentBuilder().AppendDocument("$switch", sw.Build()).Build())
	if isMissing(output) {
		g.AppendDocument("count", bsoncore.NewDocumentBuilder().AppendInt32("$sum", 1).Build())
	} else {
		for _, e := range elems(output.Value) {
			g.AppendValue(e.key, bsoncore.Value{Type: bsoncore.Type(e.val.Type), Data: e.val.Value})
		}
	}
	gs, err := compileGroup(rvDoc(g.Build()))
	if err != nil {
		return nil, err
	}
	s, err := CompileSort(bson.Raw(bsoncore.NewDocumentBuilder().AppendInt32("_id", 1).Build()))
	if err != nil {
		return nil, err
	}
	return seqStage{gs, sortStage{s}}, nil
}

// $bucketAuto: documents sorted by groupBy, split into about n buckets
// of equal size, equal values kept in one bucket.
type bucketAutoStage struct {
	groupBy expr
	n       int
	accs    []accSpec
}

func compileBucketAuto(arg bson.RawValue) (stage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(40240, "The argument to $bucketAuto must be an object, but found type: %s", TypeName(arg.Type))
	}
	b := &bucketAutoStage{}
	hasN := false
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "groupBy":
			if !isGroupByExpr(e.val) {
				return nil, mongoerr.New(40239, "The $bucketAuto 'groupBy' field must be defined as a $-prefixed path or an expression object, but found: %s", debugString(e.val))
			}
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return nil, err
			}
			b.groupBy = x
		case "buckets":
			if !isNumeric(e.val.Type) {
				return nil, mongoerr.New(40241, "The $bucketAuto 'buckets' field must be a numeric value, but found type: %s", TypeName(e.val.Type))
			}
			f := toNum(e.val).float()
			if f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
				return nil, mongoerr.New(40242, "The $bucketAuto 'buckets' field must be representable as a 32-bit integer, but found %v", f)
			}
			b.n, hasN = int(f), true
		case "output":
			if e.val.Type != bson.TypeEmbeddedDocument {
				return nil, mongoerr.New(40244, "The $bucketAuto 'output' field must be an object, but found type: %s", TypeName(e.val.Type))
			}
			for _, o := range elems(e.val.Value) {
				a, err := parseAccumulator(o.key, o.val)
				if err != nil {
					return nil, err
				}
				b.accs = append(b.accs, a)
			}
		case "granularity":
			if e.val.Type != bson.TypeString {
				return nil, mongoerr.New(40261, "The $bucketAuto 'granularity' field must be a string, but found type: %s", TypeName(e.val.Type))
			}
			return nil, mongoerr.New(mongoerr.NotImplemented, "$bucketAuto 'granularity' is not supported")
		default:
			return nil, mongoerr.New(40245, "Unrecognized option to $bucketAuto: %s", e.key)
		}
	}
	if b.groupBy == nil || !hasN {
		return nil, mongoerr.New(40246, "$bucketAuto requires 'groupBy' and 'buckets' to be specified")
	}
	if b.n <= 0 {
		return nil, mongoerr.New(40243, "The $bucketAuto 'buckets' field must be greater than 0, but found: %d", b.n)
	}
	if len(b.accs) == 0 {
		b.accs = []accSpec{{"count", "$sum", constExpr{rvInt32(1)}}}
	}
	return b, nil
}

func (b *bucketAutoStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drainBounded(ctx, in, "$bucketAuto")
	in.Close()
	if err != nil {
		return nil, err
	}
	keys := make([]bson.RawValue, len(docs))
	for i, d := range docs {
		v, err := b.groupBy.eval(&evalCtx{root: rvDoc(d), current: rvDoc(d)})
		if err != nil {
			return nil, err
		}
		if isMissing(v) {
			v = rvNull
		}
		keys[i] = v
	}
	idx := make([]int, len(docs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(x, y int) bool { return Compare(keys[idx[x]], keys[idx[y]]) < 0 })
	size := int(math.Round(float64(len(docs)) / float64(b.n)))
	if size < 1 {
		size = 1
	}
	var out []bson.Raw
	pos := 0
	for bucket := 0; bucket < b.n && pos < len(idx); bucket++ {
		states := newAccStates(len(b.accs))
		min := keys[idx[pos]]
		var max bson.RawValue
		add := func() error {
			i := idx[pos]
			ec := &evalCtx{root: rvDoc(docs[i]), current: rvDoc(docs[i])}
			for k, a := range b.accs {
				v, err := a.e.eval(ec)
				if err != nil {
					return err
				}
				accumulate(a.op, &states[k], v)
			}
			max = keys[i]
			pos++
			return nil
		}
		if err := add(); err != nil {
			return nil, err
		}
		if bucket == b.n-1 {
			for pos < len(idx) {
				if err := add(); err != nil {
					return nil, err
				}
			}
		} else {
			for j := 0; j < size-1 && pos < len(idx); j++ {
				if err := add(); err != nil {
					return nil, err
				}
			}
			for pos < len(idx) && Compare(keys[idx[pos]], max) == 0 {
				if err := add(); err != nil {
					return nil, err
				}
			}
			if pos < len(idx) {
				max = keys[idx[pos]] // the next bucket's minimum
			}
		}
		id := bsoncore.NewDocumentBuilder().
			AppendValue("min", bsoncore.Value{Type: bsoncore.Type(min.Type), Data: min.Value}).
			AppendValue("max", bsoncore.Value{Type: bsoncore.Type(max.Type), Data: max.Value}).Build()
		di, d := bsoncore.AppendDocumentStart(nil)
		d = bsoncore.AppendDocumentElement(d, "_id", id)
		for k, a := range b.accs {
			d = appendRawElement(d, a.field, finish(a.op, &states[k]))
		}
		d, _ = bsoncore.AppendDocumentEnd(d, di)
		out = append(out, d)
	}
	return NewSliceIterator(out), nil
}
