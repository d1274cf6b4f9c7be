package query

import (
	"context"
	"math"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

type accSpec struct {
	field string
	op    string
	e     expr
}

type groupStage struct {
	id   expr
	accs []accSpec
}

func compileGroup(arg bson.RawValue) (*groupStage, error) {
	if arg.Type != bson.TypeEmbeddedDocument {
		return nil, mongoerr.New(15947, "a group's fields must be specified in an object")
	}
	g := &groupStage{}
	hasID := false
	for _, e := range elems(arg.Value) {
		if e.key == "_id" {
			x, err := compileExpr(e.val, 0)
			if err != nil {
				return nil, err
			}
			g.id, hasID = x, true
			continue
		}
		a, err := parseAccumulator(e.key, e.val)
		if err != nil {
			return nil, err
		}
		g.accs = append(g.accs, a)
	}
	if !hasID {
		return nil, mongoerr.New(15955, "a group specification must include an _id")
	}
	return g, nil
}

// parseAccumulator compiles one output field of $group (and of $bucket,
// $bucketAuto): {field: {$op: expr}}.
func parseAccumulator(field string, v bson.RawValue) (accSpec, error) {
	if v.Type != bson.TypeEmbeddedDocument {
		return accSpec{}, mongoerr.New(40234, "The field '%s' must be an accumulator object", field)
	}
	es := elems(v.Value)
	if len(es) != 1 {
		return accSpec{}, mongoerr.New(40238, "The field '%s' must specify one accumulator", field)
	}
	switch es[0].key {
	case "$sum", "$avg", "$min", "$max", "$first", "$last", "$push", "$addToSet", "$count", "$stdDevPop", "$stdDevSamp":
	default:
		return accSpec{}, mongoerr.New(15952, "unknown group operator '%s'", es[0].key)
	}
	var x expr = constExpr{rvInt32(1)}
	if es[0].key != "$count" {
		var err error
		if x, err = compileExpr(es[0].val, 0); err != nil {
			return accSpec{}, err
		}
	}
	return accSpec{field, es[0].key, x}, nil
}

// newAccStates returns the initial states of n accumulators.
func newAccStates(n int) []accState {
	s := make([]accState, n)
	for i := range s {
		s[i].sum = num{kind: bson.TypeInt32}
	}
	return s
}

type accState struct {
	sum      num
	sumSeen  bool
	count    int64
	val      bson.RawValue
	set      bool
	list     []bson.RawValue
	nonFloat bool
	// $stdDevPop, $stdDevSamp: Welford's running mean and sum of squares.
	devN           int64
	devMean, devM2 float64
	// $covariancePop, $covarianceSamp (window functions): running means
	// and co-moment of [x, y] pairs.
	covMeanX, covMeanY, covC float64
}

type group struct {
	id   bson.RawValue
	accs []accState
}

func (g *groupStage) run(ctx context.Context, _ *Pipeline, in Iterator) (Iterator, error) {
	docs, err := drain(ctx, in)
	in.Close()
	if err != nil {
		return nil, err
	}
	var order []*group
	// Groups are keyed by the index encoding of _id, which is equal exactly
	// when Compare says the values are equal (so 1 and 1.0 group together).
	byKey := map[string]*group{}
	for _, d := range docs {
		ec := &evalCtx{root: rvDoc(d), current: rvDoc(d)}
		id, err := g.id.eval(ec)
		if err != nil {
			return nil, err
		}
		if isMissing(id) {
			id = rvNull
		}
		k := string(EncodeValue(nil, id))
		gr := byKey[k]
		if gr == nil {
			gr = &group{id: id, accs: newAccStates(len(g.accs))}
			byKey[k] = gr
			order = append(order, gr)
		}
		for i, a := range g.accs {
			v, err := a.e.eval(ec)
			if err != nil {
				return nil, err
			}
			accumulate(a.op, &gr.accs[i], v)
		}
	}
	if len(docs) == 0 {
		return NewSliceIterator(nil), nil
	}
	out := make([]bson.Raw, 0, len(order))
	for _, gr := range order {
		idx, dst := bsoncore.AppendDocumentStart(nil)
		dst = appendRawElement(dst, "_id", gr.id)
		for i, a := range g.accs {
			dst = appendRawElement(dst, a.field, finish(a.op, &gr.accs[i]))
		}
		dst, _ = bsoncore.AppendDocumentEnd(dst, idx)
		out = append(out, dst)
	}
	return NewSliceIterator(out), nil
}

func accumulate(op string, s *accState, v bson.RawValue) {
	switch op {
	case "$sum", "$avg", "$count":
		if isNumeric(v.Type) {
			s.sum = addPromote('+', s.sum, toNum(v))
			s.count++
		}
	case "$stdDevPop", "$stdDevSamp":
		if isNumeric(v.Type) {
			x := toNum(v).float()
			s.devN++
			d := x - s.devMean
			s.devMean += d / float64(s.devN)
			s.devM2 += d * (x - s.devMean)
		}
	case "$covariancePop", "$covarianceSamp":
		if v.Type != bson.TypeArray {
			return
		}
		xy := arrayValues(v.Value)
		if len(xy) != 2 || !isNumeric(xy[0].Type) || !isNumeric(xy[1].Type) {
			return
		}
		x, y := toNum(xy[0]).float(), toNum(xy[1]).float()
		s.devN++
		dx := x - s.covMeanX
		s.covMeanX += dx / float64(s.devN)
		s.covMeanY += (y - s.covMeanY) / float64(s.devN)
		s.covC += dx * (y - s.covMeanY)
	case "$min", "$max":
		if isNullish(v) {
			return
		}
		if !s.set {
			s.val, s.set = v, true
			return
		}
		c := Compare(v, s.val)
		if (op == "$min" && c < 0) || (op == "$max" && c > 0) {
			s.val = v
		}
	case "$first":
		if !s.set {
			s.val, s.set = v, true
		}
	case "$last":
		s.val, s.set = v, true
	case "$push":
		if !isMissing(v) {
			s.list = append(s.list, v)
		}
	case "$addToSet":
		if isMissing(v) {
			return
		}
		for _, x := range s.list {
			if Compare(x, v) == 0 {
				return
			}
		}
		s.list = append(s.list, v)
	}
}

func finish(op string, s *accState) bson.RawValue {
	switch op {
	case "$sum", "$count":
		return s.sum.raw()
	case "$avg":
		if s.count == 0 {
			return rvNull
		}
		if s.sum.kind == bson.TypeDecimal128 {
			r, _ := evalDivide([]bson.RawValue{s.sum.raw(), rvInt64(s.count)})
			return r
		}
		return rvDouble(s.sum.float() / float64(s.count))
	case "$stdDevPop", "$stdDevSamp":
		n := s.devN
		if op == "$stdDevSamp" {
			n--
		}
		if n <= 0 {
			return rvNull
		}
		return rvDouble(math.Sqrt(s.devM2 / float64(n)))
	case "$covariancePop", "$covarianceSamp":
		n := s.devN
		if op == "$covarianceSamp" {
			n--
		}
		if n <= 0 {
			return rvNull
		}
		return rvDouble(s.covC / float64(n))
	case "$min", "$max", "$first", "$last":
		if !s.set || isMissing(s.val) {
			return rvNull
		}
		return s.val
	}
	return rvArray(buildArray(s.list))
}
