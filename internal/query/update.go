package query

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/mongoerr"
)

// Update is a compiled update: either a replacement document or a list of
// update operators. It is immutable and safe for concurrent use.
type Update struct {
	replacement *mdoc
	// pipeline is a pipeline-style update's stages (updatepipeline.go).
	pipeline *Pipeline
	ops      []*updateOp
	// positional says some path has a "$" component, which Apply
	// replaces with the array position the query matched.
	positional bool
	// arrayOps says some path has "$", "$[]" or "$[<id>]": targets are
	// only known per document, so conflicts are checked per document too.
	arrayOps bool
	filters  map[string]*arrayFilter
}

// ApplyOptions control one application of an Update.
type ApplyOptions struct {
	// Insert says the update is building a new document for an upsert:
	// $setOnInsert applies and _id may be set freely.
	Insert bool
	// Now is the clock for $currentDate; zero means time.Now().
	Now time.Time
	// Query is the filter that selected the document; a positional ($)
	// update asks it which array element matched. Without it (or when
	// inserting an upsert's document) a positional update fails as in
	// MongoDB.
	Query *Matcher
}

type opKind int8

const (
	opSet opKind = iota
	opSetOnInsert
	opUnset
	opInc
	opMul
	opMin
	opMax
	opRename
	opPush
	opAddToSet
	opPull
	opPullAll
	opPop
	opCurrentDate
	opBit
)

var opKinds = map[string]opKind{
	"$set": opSet, "$setOnInsert": opSetOnInsert, "$unset": opUnset, "$inc": opInc,
	"$mul": opMul, "$min": opMin, "$max": opMax, "$rename": opRename, "$push": opPush,
	"$addToSet": opAddToSet, "$pull": opPull, "$pullAll": opPullAll, "$pop": opPop,
	"$currentDate": opCurrentDate, "$bit": opBit,
}

// creates reports whether an operator materialises missing path elements.
func (k opKind) creates() bool {
	switch k {
	case opUnset, opPull, opPullAll, opPop:
		return false
	}
	return true
}

type updateOp struct {
	kind  opKind
	name  string
	path  string
	parts []string
	arg   bson.RawValue

	positional bool // parts has "$"
	arrayOps   bool // parts has "$", "$[]" or "$[<id>]"

	dest      []string // $rename target
	destPath  string
	push      *pushSpec
	each      []bson.RawValue // $addToSet values
	pull      func(bson.RawValue) bool
	timestamp bool // $currentDate {$type: "timestamp"}
	bitOps    []bitOp
}

type pushSpec struct {
	each     []bson.RawValue
	slice    *int
	position *int
	sort     *pushSort
}

type pushSort struct {
	whole bool
	desc  bool
	spec  *Sort
}

type bitOp struct {
	op  string
	val num
}

func failedToParse(format string, args ...any) error {
	return mongoerr.New(mongoerr.FailedToParse, format, args...)
}

// IsReplacement reports whether the update is a replacement document.
func (u *Update) IsReplacement() bool { return u.replacement != nil }

// CompileUpdate compiles an update document: either all top-level keys are
// update operators, or none is and the document replaces the target.
func CompileUpdate(update bson.Raw) (*Update, error) {
	return CompileUpdateWithFilters(update, nil)
}

// CompileUpdateWithFilters is CompileUpdate with the arrayFilters option
// (see ArrayFiltersArg): every "$[<id>]" in an update path needs a filter
// for <id>, and every filter must be used. A replacement ignores them, as
// in MongoDB.
func CompileUpdateWithFilters(update bson.Raw, arrayFilters []bson.Raw) (*Update, error) {
	filters, err := compileArrayFilters(arrayFilters)
	if err != nil {
		return nil, err
	}
	if len(update) == 0 {
		return &Update{replacement: &mdoc{}}, nil
	}
	if err := validateDoc(update); err != nil {
		return nil, badValue("invalid update document: %v", err)
	}
	es := elems(update)
	if len(es) == 0 || !strings.HasPrefix(es[0].key, "$") {
		for _, e := range es {
			if strings.HasPrefix(e.key, "$") {
				return nil, mongoerr.New(mongoerr.DollarPrefixedFieldName, "The dollar ($) prefixed field '%s' in '%s' is not allowed in the context of an update's replacement document. Consider using an aggregation pipeline with $replaceWith.", e.key, e.key)
			}
		}
		d, err := decodeDoc(update)
		if err != nil {
			return nil, err
		}
		return &Update{replacement: d}, nil
	}
	u := &Update{filters: filters}
	used := map[string]bool{}
	for _, e := range es {
		kind, ok := opKinds[e.key]
		if !ok {
			return nil, failedToParse("Unknown modifier: %s. Expected a valid update modifier or pipeline-style update specified as an array", e.key)
		}
		if e.val.Type != bson.TypeEmbeddedDocument {
			return nil, failedToParse("Modifiers operate on fields but we found type %s instead. For example: {$mod: {<field>: ...}} not {%s: %s}", TypeName(e.val.Type), e.key, debugString(e.val))
		}
		for _, f := range elems(e.val.Value) {
			op, err := compileOp1(kind, e.key, f.key, f.val, filters, used)
			if err != nil {
				return nil, err
			}
			u.ops = append(u.ops, op)
			u.positional = u.positional || op.positional
			u.arrayOps = u.arrayOps || op.arrayOps
		}
	}
	// MongoDB names the first unused filter in identifier order.
	ids := make([]string, 0, len(filters))
	for id := range filters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if !used[id] {
			return nil, failedToParse("The array filter for identifier '%s' was not used in the update %s", id, renderUpdate(update))
		}
	}
	if err := checkConflicts(u.ops); err != nil {
		return nil, err
	}
	// MongoDB 5.0+ applies operators in path order (numeric components
	// numerically), which fixes the position of newly created fields.
	sort.SliceStable(u.ops, func(i, j int) bool { return comparePaths(u.ops[i].parts, u.ops[j].parts) < 0 })
	return u, nil
}

func comparePaths(a, b []string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ai, aok := arrayIndex(a[i])
		bi, bok := arrayIndex(b[i])
		if aok && bok {
			if c := cmpInt(ai, bi); c != 0 {
				return c
			}
			continue
		}
		if c := strings.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmpInt(len(a), len(b))
}

// maxUpdatePathParts bounds an update path like a FieldPath: a document
// cannot be nested deeper than this, so a longer path cannot address or
// create anything storable, and refusing it before splitting bounds the
// work a hostile path costs.
const maxUpdatePathParts = maxFieldPathParts

// updatePath is a validated update path and what it uses.
type updatePath struct {
	parts      []string
	positional bool // has "$"
	arrayOps   bool // has "$", "$[]" or "$[<id>]"
}

// validateUpdatePath checks a dotted update path the way MongoDB's update
// parser does, and records which array filters it uses.
func validateUpdatePath(path string, filters map[string]*arrayFilter, used map[string]bool) (updatePath, error) {
	var up updatePath
	if path == "" {
		return up, mongoerr.New(mongoerr.EmptyFieldName, "An empty update path is not valid.")
	}
	if pathParts(path) > maxUpdatePathParts {
		return up, mongoerr.New(mongoerr.Overflow, "The update path is too long: more than %d components", maxUpdatePathParts)
	}
	parts := splitPath(path)
	for _, p := range parts {
		if p == "" {
			return up, mongoerr.New(mongoerr.EmptyFieldName, "The update path '%s' contains an empty field name, which is not allowed.", path)
		}
	}
	positionals := 0
	for i, p := range parts {
		if p == "$" {
			if positionals++; positionals > 1 {
				return up, badValue("Too many positional (i.e. '$') elements found in path '%s'", path)
			}
		}
		if p == "$" && i == 0 {
			return up, badValue("Cannot have positional (i.e. '$') element in the first position in path '%s'", path)
		}
	}
	for i, p := range parts {
		switch {
		case p == "$":
			up.positional, up.arrayOps = true, true
		case isArrayFilterPart(p):
			if i == 0 {
				return up, badValue("Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in path '%s'", path)
			}
			id := p[2 : len(p)-1]
			if id != "" {
				if _, ok := filters[id]; !ok {
					return up, badValue("No array filter found for identifier '%s' in path '%s'", id, path)
				}
				used[id] = true
			}
			up.arrayOps = true
		case strings.HasPrefix(p, "$"):
			return up, mongoerr.New(mongoerr.DollarPrefixedFieldName, "The dollar ($) prefixed field '%s' in '%s' is not valid for storage.", p, path)
		}
	}
	up.parts = parts
	return up, nil
}

func compileOp1(kind opKind, name, path string, arg bson.RawValue, filters map[string]*arrayFilter, used map[string]bool) (*updateOp, error) {
	up, err := validateUpdatePath(path, filters, used)
	if err != nil {
		return nil, err
	}
	parts := up.parts
	op := &updateOp{kind: kind, name: name, path: path, parts: parts, arg: arg, positional: up.positional, arrayOps: up.arrayOps}
	switch kind {
	case opInc, opMul:
		if !isNumeric(arg.Type) {
			verb := "increment"
			if kind == opMul {
				verb = "multiply"
			}
			return nil, mongoerr.New(mongoerr.TypeMismatch, "Cannot %s with non-numeric argument: {%s: %s}", verb, path, debugString(arg))
		}
	case opRename:
		if arg.Type != bson.TypeString {
			return nil, badValue("The 'to' field for $rename must be a string: %s: %s", path, debugString(arg))
		}
		to := stringish(arg)
		if to == path {
			return nil, badValue("The source and target field for $rename must differ: %s: %q", path, to)
		}
		if strings.HasPrefix(to, path+".") || strings.HasPrefix(path, to+".") {
			return nil, badValue("The source and target field for $rename must not be on the same path: %s: %q", path, to)
		}
		dup, err := validateUpdatePath(to, filters, used)
		if err != nil {
			return nil, err
		}
		if up.positional || dup.positional {
			return nil, badValue("The source and target field for $rename must not contain positional operators.")
		}
		if up.arrayOps || dup.arrayOps {
			return nil, badValue("The source and target field for $rename must not contain array filters.")
		}
		op.dest, op.destPath = dup.parts, to
	case opPush:
		ps, err := compilePush(arg)
		if err != nil {
			return nil, err
		}
		op.push = ps
	case opAddToSet:
		op.each = []bson.RawValue{arg}
		if arg.Type == bson.TypeEmbeddedDocument && firstKey(arg.Value) == "$each" {
			es := elems(arg.Value)
			if len(es) > 1 {
				return nil, badValue("Found unexpected fields after $each in $addToSet: %s", debugString(arg))
			}
			if es[0].val.Type != bson.TypeArray {
				return nil, mongoerr.New(mongoerr.TypeMismatch, "The argument to $each in $addToSet must be an array but it was of type %s", TypeName(es[0].val.Type))
			}
			op.each = arrayValues(es[0].val.Value)
		}
	case opPull:
		pred, err := compilePull(arg)
		if err != nil {
			return nil, err
		}
		op.pull = pred
	case opPullAll:
		if arg.Type != bson.TypeArray {
			return nil, badValue("$pullAll requires an array argument but was given a %s", TypeName(arg.Type))
		}
		vals := arrayValues(arg.Value)
		op.pull = func(v bson.RawValue) bool {
			for _, x := range vals {
				if Compare(v, x) == 0 {
					return true
				}
			}
			return false
		}
	case opPop:
		f := 0.0
		if isNumeric(arg.Type) {
			f = toNum(arg).float()
		}
		if f != 1 && f != -1 {
			return nil, failedToParse("$pop expects 1 or -1, found: %s", debugString(arg))
		}
	case opCurrentDate:
		switch {
		case arg.Type == bson.TypeBoolean:
		case arg.Type == bson.TypeEmbeddedDocument:
			es := elems(arg.Value)
			if len(es) != 1 || es[0].key != "$type" || es[0].val.Type != bson.TypeString ||
				(stringish(es[0].val) != "date" && stringish(es[0].val) != "timestamp") {
				return nil, badValue("The '$type' string field is required to be 'date' or 'timestamp': {$currentDate: {field : {$type: 'date'}}}")
			}
			op.timestamp = stringish(es[0].val) == "timestamp"
		default:
			return nil, badValue("%s is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).", TypeName(arg.Type))
		}
	case opBit:
		if arg.Type != bson.TypeEmbeddedDocument {
			return nil, badValue("The $bit modifier is not compatible with a %s. You must pass in an embedded document: {$bit: {field: {and/or/xor: #}}", TypeName(arg.Type))
		}
		for _, e := range elems(arg.Value) {
			if e.key != "and" && e.key != "or" && e.key != "xor" {
				return nil, badValue("The $bit modifier only supports 'and', 'or', and 'xor', not '%s' which is an unknown operator: {%s: %s}", e.key, e.key, debugString(e.val))
			}
			if e.val.Type != bson.TypeInt32 && e.val.Type != bson.TypeInt64 {
				return nil, badValue("The $bit modifier field must be an Integer(32/64 bit); a '%s' is not supported here: {%s: %s}", TypeName(e.val.Type), e.key, debugString(e.val))
			}
			op.bitOps = append(op.bitOps, bitOp{e.key, toNum(e.val)})
		}
		if len(op.bitOps) == 0 {
			return nil, badValue("You must pass in at least one bitwise operation. The format is: {$bit: {field: {and/or/xor: #}}")
		}
	}
	return op, nil
}

func compilePush(arg bson.RawValue) (*pushSpec, error) {
	ps := &pushSpec{each: []bson.RawValue{arg}}
	if arg.Type != bson.TypeEmbeddedDocument {
		return ps, nil
	}
	if _, hasEach := lookup(arg.Value, "$each"); !hasEach {
		return ps, nil
	}
	toInt := func(v bson.RawValue, what string) (int, error) {
		if !isNumeric(v.Type) {
			return 0, badValue("The value for %s must be an integer value but was given type: %s", what, TypeName(v.Type))
		}
		f := toNum(v).float()
		if f != float64(int64(f)) || f > 1<<31 || f < -(1<<31) {
			return 0, badValue("The value for %s must be an integer value but was given: %s", what, debugString(v))
		}
		return int(f), nil
	}
	for _, e := range elems(arg.Value) {
		switch e.key {
		case "$each":
			if e.val.Type != bson.TypeArray {
				return nil, badValue("The argument to $each in $push must be an array but it was of type: %s", TypeName(e.val.Type))
			}
			ps.each = arrayValues(e.val.Value)
		case "$slice":
			n, err := toInt(e.val, "$slice")
			if err != nil {
				return nil, err
			}
			ps.slice = &n
		case "$position":
			n, err := toInt(e.val, "$position")
			if err != nil {
				return nil, err
			}
			ps.position = &n
		case "$sort":
			s := &pushSort{}
			switch {
			case isNumeric(e.val.Type) && (toNum(e.val).float() == 1 || toNum(e.val).float() == -1):
				s.whole, s.desc = true, toNum(e.val).float() == -1
			case e.val.Type == bson.TypeEmbeddedDocument && len(docBody(e.val.Value)) > 0:
				spec, err := CompileSort(e.val.Value)
				if err != nil {
					return nil, badValue("The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")
				}
				s.spec = spec
			default:
				return nil, badValue("The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} to sort embedded fields")
			}
			ps.sort = s
		default:
			return nil, badValue("Unrecognized clause in $push: %s", e.key)
		}
	}
	return ps, nil
}

// compilePull mirrors MongoDB's PullNode: a plain document is a query run
// against document elements, an operator document or regex is a predicate
// on each element, anything else is an equality test.
func compilePull(arg bson.RawValue) (func(bson.RawValue) bool, error) {
	switch {
	case arg.Type == bson.TypeEmbeddedDocument && !isOperatorDoc(arg):
		m, err := parseFilterDoc(arg.Value, 1)
		if err != nil {
			return nil, err
		}
		return func(v bson.RawValue) bool {
			return v.Type == bson.TypeEmbeddedDocument && m.matches(v, nil)
		}, nil
	case arg.Type == bson.TypeEmbeddedDocument || arg.Type == bson.TypeRegex:
		var n node
		var err error
		if arg.Type == bson.TypeRegex {
			n, err = parseField(nil, arg, 1)
		} else {
			n, err = parseOps(nil, arg.Value, 1)
		}
		if err != nil {
			return nil, err
		}
		return func(v bson.RawValue) bool { return n.matches(v, nil) }, nil
	}
	return func(v bson.RawValue) bool { return Compare(v, arg) == 0 }, nil
}

// checkConflicts rejects updates where one path is equal to or a prefix of
// another (ConflictingUpdateOperators), naming the conflict as MongoDB's
// update parser does: it adds the paths in order to a tree of fields and
// fails on the first path that meets a leaf or ends on an existing node.
// The tree keeps the check linear in the number of path components, where
// comparing every pair would let a large update cost quadratic time.
func checkConflicts(ops []*updateOp) error {
	type trie struct {
		leaf bool
		kids map[string]*trie
	}
	root := &trie{}
	add := func(parts []string) error {
		n := root
		for i, p := range parts {
			if n.leaf {
				return mongoerr.New(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", strings.Join(parts, "."), strings.Join(parts[:i], "."))
			}
			if n.kids == nil {
				n.kids = map[string]*trie{}
			}
			c := n.kids[p]
			if c == nil {
				c = &trie{}
				n.kids[p] = c
			}
			n = c
		}
		if n.leaf || len(n.kids) > 0 {
			full := strings.Join(parts, ".")
			return mongoerr.New(mongoerr.ConflictingUpdateOperators, "Updating the path '%s' would create a conflict at '%s'", full, full)
		}
		n.leaf = true
		return nil
	}
	for _, op := range ops {
		if err := add(op.parts); err != nil {
			return err
		}
		if op.dest != nil {
			if err := add(op.dest); err != nil {
				return err
			}
		}
	}
	return nil
}

// Apply applies the update to doc and returns the new document and whether
// it differs from the input (MongoDB's nModified; a no-op update returns
// the input bytes unchanged).
func (u *Update) Apply(doc bson.Raw, opts ApplyOptions) (bson.Raw, bool, error) {
	if len(doc) == 0 {
		doc = emptyDoc()
	}
	if err := validateDoc(doc); err != nil {
		return nil, false, badValue("invalid document: %v", err)
	}
	root, err := decodeDoc(doc)
	if err != nil {
		return nil, false, err
	}
	oldID, hadID := root.get("_id")
	if u.replacement != nil {
		root, err = u.replace(root, oldID, hadID, opts)
		if err != nil {
			return nil, false, err
		}
	} else if u.pipeline != nil {
		root, err = u.runPipeline(doc, oldID, hadID, opts)
		if err != nil {
			return nil, false, err
		}
	} else {
		a := &applier{root: root, opts: opts}
		if a.opts.Now.IsZero() {
			a.opts.Now = time.Now()
		}
		if err := a.applyOps(u, doc); err != nil {
			return nil, false, err
		}
		if hadID && !opts.Insert {
			newID, ok := root.get("_id")
			if !ok || !rawEqual(nodeRaw(oldID), nodeRaw(newID)) {
				return nil, false, mongoerr.New(mongoerr.ImmutableField, "Performing an update on the path '_id' would modify the immutable field '_id'")
			}
		}
	}
	if err := validateID(root); err != nil {
		return nil, false, err
	}
	if d := treeDepth(root, 0); d > maxStorageDepth && d > rawDepth(doc, 0) {
		return nil, false, mongoerr.New(mongoerr.Overflow, "Document exceeds maximum nesting depth of %d", maxStorageDepth)
	}
	out := root.encode()
	if bytes.Equal(out, doc) {
		return doc, false, nil
	}
	return out, true, nil
}

func emptyDoc() bson.Raw { return bson.Raw{5, 0, 0, 0, 0} }

// maxStorageDepth is MongoDB's nesting limit for stored documents
// (BSONDepth's maximum less the 20 levels it reserves for the system). An
// update may not make a document deeper than this; a stored document that
// already is (cmkdb's inserts allow the wire limit) may still be updated.
const maxStorageDepth = 180

// treeDepth returns the deepest element level below a tree node, counted
// as MongoDB's storage validation does: a top-level field is at level 1,
// a field of its embedded document at level 2, and so on; level is the
// level of the element that holds n.
func treeDepth(n any, level int) int {
	best := level
	switch n := n.(type) {
	case *mdoc:
		for _, f := range n.fields {
			best = max(best, treeDepth(f.val, level+1))
		}
	case *marr:
		for _, e := range n.elems {
			best = max(best, treeDepth(e, level+1))
		}
	}
	return best
}

// rawDepth is treeDepth for encoded BSON.
func rawDepth(doc []byte, level int) int {
	best := level
	forEachElem(doc, func(_ []byte, v bson.RawValue) bool {
		best = max(best, level+1)
		if v.Type == bson.TypeEmbeddedDocument || v.Type == bson.TypeArray {
			best = max(best, rawDepth(v.Value, level+1))
		}
		return false
	})
	return best
}

func errNoPositionalMatch() error {
	return badValue("The positional operator did not find the match needed from the query.")
}

// applyOps applies the operators in path order. An update with array
// operators first replaces "$" with the array position the query matched
// and expands "$[]" and "$[<id>]" into concrete targets, all against the
// document before any change, then checks that no two operators reach the
// same place, then applies.
func (a *applier) applyOps(u *Update, doc bson.Raw) error {
	skip := func(op *updateOp) bool { return op.kind == opSetOnInsert && !a.opts.Insert }
	if !u.arrayOps {
		for _, op := range u.ops {
			if skip(op) {
				continue
			}
			if err := a.applyTo(op, target{rest: op.parts}); err != nil {
				return err
			}
		}
		return nil
	}
	var pos string
	if u.positional {
		if a.opts.Insert || a.opts.Query == nil {
			return errNoPositionalMatch()
		}
		ok, i := a.opts.Query.MatchPosition(doc)
		if !ok || i < 0 {
			return errNoPositionalMatch()
		}
		pos = strconv.Itoa(i)
	}
	// Concrete paths are only needed when two operators could meet.
	active := 0
	for _, op := range u.ops {
		if !skip(op) {
			active++
		}
	}
	targets := make([][]target, len(u.ops))
	for i, op := range u.ops {
		if skip(op) {
			continue
		}
		if op.kind == opRename {
			targets[i] = []target{{path: op.path}, {path: op.destPath}}
			continue
		}
		parts := op.parts
		if op.positional {
			parts = make([]string, len(op.parts))
			for k, p := range op.parts {
				if p == "$" {
					p = pos
				}
				parts[k] = p
			}
		}
		ts, err := a.expand(parts, u.filters, active > 1)
		if err != nil {
			return err
		}
		targets[i] = ts
	}
	if err := checkTargetConflicts(targets); err != nil {
		return err
	}
	for i, op := range u.ops {
		if skip(op) {
			continue
		}
		if op.kind == opRename {
			// Its two targets are only for the conflict check.
			if err := a.rename(op); err != nil {
				return err
			}
			continue
		}
		leaf := a.leafFor(op)
		for _, t := range targets[i] {
			if err := a.applyAt(op, t, leaf); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkTargetConflicts is checkConflicts for the concrete paths of one
// document, as MongoDB finds when it merges array operators' nodes:
// "a.$[].b" and "a.$[i].b" conflict only on the elements both select.
// Paths are sorted with a separator that sorts below every byte of a
// field name, so a path is directly followed by any path it prefixes.
func checkTargetConflicts(targets [][]target) error {
	withTargets := 0
	for _, ts := range targets {
		if len(ts) > 0 {
			withTargets++
		}
	}
	if withTargets < 2 {
		return nil // one operator's targets are distinct elements
	}
	type entry struct {
		key string
		op  int
	}
	var all []entry
	for i, ts := range targets {
		for _, t := range ts {
			all = append(all, entry{strings.ReplaceAll(t.path, ".", "\x00"), i})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].key < all[j].key })
	for i := 1; i < len(all); i++ {
		p, c := all[i-1], all[i]
		if p.op != c.op && (c.key == p.key || strings.HasPrefix(c.key, p.key+"\x00")) {
			return mongoerr.New(mongoerr.ConflictingUpdateOperators, "Update created a conflict at '%s'", strings.ReplaceAll(p.key, "\x00", "."))
		}
	}
	return nil
}

// validateID rejects _id values MongoDB refuses to store.
func validateID(root *mdoc) error {
	id, ok := root.get("_id")
	if !ok {
		return nil
	}
	switch nodeType(id) {
	case bson.TypeArray, bson.TypeRegex, bson.TypeUndefined:
		return mongoerr.New(mongoerr.InvalidIdField, "The '_id' value cannot be of type %s", TypeName(nodeType(id)))
	}
	return nil
}

func (u *Update) replace(old *mdoc, oldID any, hadID bool, opts ApplyOptions) (*mdoc, error) {
	return replaceDoc(cloneNode(u.replacement).(*mdoc), oldID, hadID, opts)
}

// replaceDoc makes nd the new version of a document whose _id was oldID
// (if hadID): nd keeps that _id when it has none and may not change it.
func replaceDoc(nd *mdoc, oldID any, hadID bool, opts ApplyOptions) (*mdoc, error) {
	if newID, ok := nd.get("_id"); ok {
		if hadID && !opts.Insert && !rawEqual(nodeRaw(oldID), nodeRaw(newID)) {
			return nil, mongoerr.New(mongoerr.ImmutableField, "After applying the update, the (immutable) field '_id' was found to have been altered to _id: %s", debugString(nodeRaw(newID)))
		}
		moveIDFirst(nd)
		return nd, nil
	}
	if hadID {
		nd.fields = append([]mfield{{key: "_id", val: oldID}}, nd.fields...)
	}
	return nd, nil
}

func moveIDFirst(d *mdoc) {
	i := d.index("_id")
	if i <= 0 {
		return
	}
	f := d.fields[i]
	copy(d.fields[1:i+1], d.fields[:i])
	d.fields[0] = f
}

// applier carries the state of one Apply call.
type applier struct {
	root *mdoc
	opts ApplyOptions
}

// idString renders the document's _id for error messages, as MongoDB
// includes it ("{_id: 1} has the field ...").
func (a *applier) idString() string {
	id, ok := a.root.get("_id")
	if !ok {
		return "{}"
	}
	return "{_id: " + debugString(nodeRaw(id)) + "}"
}

// slot addresses one field of a document or one array position.
type slot struct {
	parent any // *mdoc or *marr
	key    string
}

func (s slot) get() (any, bool) {
	switch p := s.parent.(type) {
	case *mdoc:
		return p.get(s.key)
	case *marr:
		i, ok := arrayIndex(s.key)
		if !ok || i >= len(p.elems) {
			return nil, false
		}
		return p.elems[i], true
	}
	return nil, false
}

func (s slot) set(v any) {
	switch p := s.parent.(type) {
	case *mdoc:
		p.set(s.key, v)
	case *marr:
		i, _ := arrayIndex(s.key)
		for len(p.elems) <= i {
			p.elems = append(p.elems, rvNull)
		}
		p.elems[i] = v
	}
}

// remove deletes a field; removing an array position sets it to null, as
// $unset does in MongoDB.
func (s slot) remove() {
	switch p := s.parent.(type) {
	case *mdoc:
		p.remove(s.key)
	case *marr:
		if i, ok := arrayIndex(s.key); ok && i < len(p.elems) {
			p.elems[i] = rvNull
		}
	}
}

// maxArrayPad bounds how far an update may extend an array by index, so a
// path like "a.99999999" cannot allocate gigabytes.
const maxArrayPad = 1 << 20

// resolve walks parts from the root and calls leaf for the slot the path
// designates. With create set, missing intermediate documents are
// created; otherwise a missing path is a no-op.
func (a *applier) resolve(parts []string, create bool, leaf func(slot) error) error {
	return a.walk(a.root, "", parts, create, leaf)
}

func (a *applier) walk(cur any, curKey string, parts []string, create bool, leaf func(slot) error) error {
	key := parts[0]
	last := len(parts) == 1
	switch c := cur.(type) {
	case *mdoc:
		if last {
			return leaf(slot{c, key})
		}
		child, ok := c.get(key)
		if !ok {
			if !create {
				return nil
			}
			child = &mdoc{}
			c.set(key, child)
		}
		return a.walk(child, key, parts[1:], create, leaf)
	case *marr:
		i, ok := arrayIndex(key)
		if !ok {
			if !create {
				return nil
			}
			return mongoerr.New(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s: %s}", key, curKey, debugString(nodeRaw(c)))
		}
		if i >= len(c.elems) && create && i-len(c.elems) > maxArrayPad {
			return badValue("can't backfill array to larger than %d elements", maxArrayPad)
		}
		if last {
			return leaf(slot{c, key})
		}
		if i >= len(c.elems) {
			if !create {
				return nil
			}
			(slot{c, key}).set(&mdoc{})
		}
		return a.walk(c.elems[i], key, parts[1:], create, leaf)
	default:
		if !create {
			return nil
		}
		return mongoerr.New(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s: %s}", key, curKey, debugString(nodeRaw(cur)))
	}
}

// applyTo applies one operator at one target.
func (a *applier) applyTo(op *updateOp, t target) error {
	if op.kind == opRename {
		return a.rename(op)
	}
	return a.applyAt(op, t, a.leafFor(op))
}

// leafFor returns the function that applies op at the slot its path ends
// on.
func (a *applier) leafFor(op *updateOp) func(slot) error {
	create := op.kind.creates()
	return func(s slot) error {
		if _, isArr := s.parent.(*marr); isArr && create {
			if _, ok := arrayIndex(s.key); !ok {
				return mongoerr.New(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s}", s.key, debugString(nodeRaw(s.parent)))
			}
		}
		return a.applyLeaf(op, s)
	}
}

// applyAt walks from a target to the slot its path ends on and applies
// leaf there.
func (a *applier) applyAt(op *updateOp, t target, leaf func(slot) error) error {
	create := op.kind.creates()
	switch {
	case t.start.parent == nil:
		return a.walk(a.root, "", t.rest, create, leaf)
	case len(t.rest) == 0:
		return leaf(t.start)
	}
	cur, _ := t.start.get()
	return a.walk(cur, t.start.key, t.rest, create, leaf)
}

func (a *applier) applyLeaf(op *updateOp, s slot) error {
	cur, exists := s.get()
	switch op.kind {
	case opSet, opSetOnInsert:
		s.set(mustDecode(op.arg))
	case opUnset:
		if exists {
			s.remove()
		}
	case opInc, opMul:
		arg := toNum(op.arg)
		if !exists {
			if op.kind == opInc {
				s.set(op.arg)
			} else {
				zero, _ := arith('*', arg, num{kind: bson.TypeInt32})
				s.set(zero.raw())
			}
			return nil
		}
		cv := nodeRaw(cur)
		if !isNumeric(cv.Type) {
			return mongoerr.New(mongoerr.TypeMismatch, "Cannot apply %s to a value of non-numeric type. %s has the field '%s' of non-numeric type %s", op.name, a.idString(), s.key, TypeName(cv.Type))
		}
		o := byte('+')
		if op.kind == opMul {
			o = '*'
		}
		r, overflow := arith(o, toNum(cv), arg)
		if overflow {
			return badValue("Failed to apply %s operations to current value (%s) for document %s", op.name, debugString(cv), a.idString())
		}
		s.set(r.raw())
	case opMin, opMax:
		if !exists {
			s.set(mustDecode(op.arg))
			return nil
		}
		c := Compare(op.arg, nodeRaw(cur))
		if (op.kind == opMin && c < 0) || (op.kind == opMax && c > 0) {
			s.set(mustDecode(op.arg))
		}
	case opCurrentDate:
		if op.timestamp {
			s.set(rvTimestamp(uint32(a.opts.Now.Unix()), 1))
		} else {
			s.set(rvDate(a.opts.Now.UnixMilli()))
		}
	case opPush:
		return a.push(op, s, cur, exists)
	case opAddToSet:
		var arr *marr
		if !exists {
			arr = &marr{}
		} else if x, ok := cur.(*marr); ok {
			arr = x
		} else {
			return badValue("Cannot apply $addToSet to non-array field. Field named '%s' has non-array type %s", s.key, TypeName(nodeType(cur)))
		}
		for _, v := range op.each {
			dup := false
			for _, e := range arr.elems {
				if Compare(nodeRaw(e), v) == 0 {
					dup = true
					break
				}
			}
			if !dup {
				arr.elems = append(arr.elems, mustDecode(v))
			}
		}
		if !exists {
			s.set(arr)
		}
	case opPull, opPullAll:
		if !exists {
			return nil
		}
		arr, ok := cur.(*marr)
		if !ok {
			return badValue("Cannot apply %s to a non-array value", op.name)
		}
		kept := arr.elems[:0:0]
		for _, e := range arr.elems {
			if !op.pull(nodeRaw(e)) {
				kept = append(kept, e)
			}
		}
		arr.elems = kept
	case opPop:
		if !exists {
			return nil
		}
		arr, ok := cur.(*marr)
		if !ok {
			return mongoerr.New(mongoerr.TypeMismatch, "Path '%s' contains an element of non-array type '%s'", op.path, TypeName(nodeType(cur)))
		}
		if len(arr.elems) == 0 {
			return nil
		}
		if toNum(op.arg).float() == 1 {
			arr.elems = arr.elems[:len(arr.elems)-1]
		} else {
			arr.elems = arr.elems[1:]
		}
	case opBit:
		v := num{kind: bson.TypeInt32}
		if exists {
			cv := nodeRaw(cur)
			if cv.Type != bson.TypeInt32 && cv.Type != bson.TypeInt64 {
				return badValue("Cannot apply $bit to a value of non-integral type.%s has the field %s of non-integer type %s", a.idString(), s.key, TypeName(cv.Type))
			}
			v = toNum(cv)
		}
		for _, b := range op.bitOps {
			switch b.op {
			case "and":
				v.i &= b.val.i
			case "or":
				v.i |= b.val.i
			case "xor":
				v.i ^= b.val.i
			}
			if b.val.kind == bson.TypeInt64 {
				v.kind = bson.TypeInt64
			}
		}
		if v.kind == bson.TypeInt32 {
			v.i = int64(int32(v.i))
		}
		s.set(v.raw())
	}
	return nil
}

func (a *applier) push(op *updateOp, s slot, cur any, exists bool) error {
	var arr *marr
	if !exists {
		arr = &marr{}
	} else if x, ok := cur.(*marr); ok {
		arr = x
	} else {
		return badValue("The field '%s' must be an array but is of type %s in document %s", op.path, TypeName(nodeType(cur)), a.idString())
	}
	ps := op.push
	vals := make([]any, len(ps.each))
	for i, v := range ps.each {
		vals[i] = mustDecode(v)
	}
	pos := len(arr.elems)
	if ps.position != nil {
		pos = *ps.position
		if pos < 0 {
			pos = max(len(arr.elems)+pos, 0)
		}
		pos = min(pos, len(arr.elems))
	}
	elemsOut := make([]any, 0, len(arr.elems)+len(vals))
	elemsOut = append(elemsOut, arr.elems[:pos]...)
	elemsOut = append(elemsOut, vals...)
	elemsOut = append(elemsOut, arr.elems[pos:]...)
	if ps.sort != nil {
		sortNodes(elemsOut, ps.sort)
	}
	if ps.slice != nil {
		n := *ps.slice
		switch {
		case n >= 0 && n < len(elemsOut):
			elemsOut = elemsOut[:n]
		case n < 0 && -n < len(elemsOut):
			elemsOut = elemsOut[len(elemsOut)+n:]
		}
	}
	arr.elems = elemsOut
	if !exists {
		s.set(arr)
	}
	return nil
}

func sortNodes(ns []any, ps *pushSort) {
	raws := make([]bson.RawValue, len(ns))
	for i, n := range ns {
		raws[i] = nodeRaw(n)
	}
	idx := make([]int, len(ns))
	for i := range idx {
		idx[i] = i
	}
	var keys [][]bson.RawValue
	if !ps.whole {
		keys = make([][]bson.RawValue, len(ns))
		for i, r := range raws {
			if r.Type == bson.TypeEmbeddedDocument {
				keys[i] = ps.spec.Key(r.Value)
			} else {
				keys[i] = ps.spec.Key(emptyDoc())
			}
		}
	}
	sort.SliceStable(idx, func(x, y int) bool {
		i, j := idx[x], idx[y]
		if ps.whole {
			c := Compare(raws[i], raws[j])
			if ps.desc {
				c = -c
			}
			return c < 0
		}
		return ps.spec.CompareKeys(keys[i], keys[j]) < 0
	})
	out := make([]any, len(ns))
	for k, i := range idx {
		out[k] = ns[i]
	}
	copy(ns, out)
}

// rename moves a value; neither path may traverse an array.
func (a *applier) rename(op *updateOp) error {
	src, err := a.plainSlot(op.parts, false, "source")
	if err != nil || src == nil {
		return err
	}
	v, ok := src.get()
	if !ok {
		return nil
	}
	dst, err := a.plainSlot(op.dest, true, "destination")
	if err != nil {
		return err
	}
	src.remove()
	dst.set(v)
	return nil
}

// plainSlot resolves a path through documents only.
func (a *applier) plainSlot(parts []string, create bool, what string) (*slot, error) {
	var cur any = a.root
	for i, p := range parts {
		d, ok := cur.(*mdoc)
		if !ok {
			if _, isArr := cur.(*marr); isArr {
				return nil, badValue("The %s field cannot be an array element, '%s' in doc with %s has an array field called '%s'", what, strings.Join(parts, "."), a.idString(), parts[i-1])
			}
			if !create {
				return nil, nil
			}
			return nil, mongoerr.New(mongoerr.PathNotViable, "Cannot create field '%s' in element {%s: %s}", p, parts[i-1], debugString(nodeRaw(cur)))
		}
		if i == len(parts)-1 {
			return &slot{d, p}, nil
		}
		child, ok := d.get(p)
		if !ok {
			if !create {
				return nil, nil
			}
			child = &mdoc{}
			d.set(p, child)
		}
		cur = child
	}
	return nil, nil
}
