package handlers

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/cmkdb/cmkdb/internal/docstore"
	"github.com/cmkdb/cmkdb/internal/mongoerr"
	"github.com/cmkdb/cmkdb/internal/oplog"
	"github.com/cmkdb/cmkdb/internal/wire"
)

// dbStats, collStats and dataSize measure databases and collections from
// storage: document counts and BSON sizes are read from the documents'
// records, storage and index sizes are Pebble's estimates of the bytes its
// files hold for each key range (docstore.Stats), and a database's total is
// its files' size on disk.

// parseScale reads a stats command's scale as mongod does: a number is
// truncated to an integer and must be at least 1 (else BadValue with
// tooSmall); any other true value is BadValue notNumber; false, null or no
// field is 1.
func parseScale(a args, tooSmall, notNumber string) (int64, error) {
	v, ok := a.value("scale")
	if !ok {
		return 1, nil
	}
	switch v.Type {
	case bson.TypeInt32, bson.TypeInt64, bson.TypeDouble, bson.TypeDecimal128:
		f, ok := numberAsFloat(v)
		if !ok || math.IsNaN(f) {
			f = 0
		}
		f = math.Trunc(f)
		if f < 1 {
			return 0, mongoerr.New(mongoerr.BadValue, "%s", tooSmall)
		}
		if f > math.MaxInt32 {
			f = math.MaxInt32 // mongod reads the scale as an int
		}
		return int64(f), nil
	}
	if truthy(v) {
		return 0, mongoerr.New(mongoerr.BadValue, "%s", notNumber)
	}
	return 1, nil
}

// numberAsFloat is a numeric value as a float64.
func numberAsFloat(v bson.RawValue) (float64, bool) {
	if v.Type == bson.TypeDecimal128 {
		f, err := strconv.ParseFloat(v.Decimal128().String(), 64)
		return f, err == nil
	}
	return v.AsFloat64OK()
}

func (h *Handler) dbStats(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	if err := checkFields(a, "dbStats"); err != nil {
		return nil, err
	}
	scale, err := parseScale(a, "scale has to be > 0", "scale has to be a number > 0")
	if err != nil {
		return nil, err
	}
	if free, err := a.bool("freeStorage", false); err != nil {
		return nil, err
	} else if free {
		return nil, mongoerr.New(mongoerr.NotImplemented, "dbStats with freeStorage is not supported: Pebble does not track reusable space per collection")
	}
	st, release, err := h.store(req.DB, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var colls, objects, indexes, dataSize, storageSize, indexSize, diskUsage int64
	if st != nil {
		for _, coll := range st.Collections() {
			cs, err := st.Stats(ctx, coll)
			if err != nil {
				return nil, err
			}
			colls++
			objects += cs.Count
			dataSize += cs.DataSize
			storageSize += cs.StorageSize
			indexes += int64(len(coll.Indexes))
			for _, n := range cs.IndexSizes {
				indexSize += n
			}
		}
		diskUsage = st.DiskUsage()
	}
	avg := 0.0
	if objects > 0 {
		avg = float64(dataSize) / float64(objects)
	}
	// The files hold more than the collections' key ranges (the catalog,
	// the write-ahead log, the manifest): totalSize is what the database
	// takes on disk, never less than its parts.
	total := max(diskUsage, storageSize+indexSize)
	fsUsed, fsTotal, err := h.fsSizes()
	if err != nil {
		return nil, err
	}
	return marshal(bson.D{
		{Key: "db", Value: req.DB},
		{Key: "collections", Value: intValue(colls)},
		{Key: "views", Value: int32(0)},
		{Key: "objects", Value: intValue(objects)},
		{Key: "avgObjSize", Value: avg},
		{Key: "dataSize", Value: intValue(dataSize / scale)},
		{Key: "storageSize", Value: intValue(storageSize / scale)},
		{Key: "indexes", Value: intValue(indexes)},
		{Key: "indexSize", Value: intValue(indexSize / scale)},
		{Key: "totalSize", Value: intValue(total / scale)},
		{Key: "scaleFactor", Value: intValue(scale)},
		{Key: "fsUsedSize", Value: intValue(fsUsed / scale)},
		{Key: "fsTotalSize", Value: intValue(fsTotal / scale)},
		{Key: "ok", Value: 1.0},
	})
}

// fsSizes are the used and total bytes of the file system holding the
// node's databases.
func (h *Handler) fsSizes() (used, total int64, err error) {
	eng, _, release, err := h.node.Acquire()
	if err != nil {
		return 0, 0, acquireError(err)
	}
	dir := eng.Dir()
	release()
	return fsUsage(dir)
}

func (h *Handler) collStats(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	a := newArgs(req.Command)
	collName, err := a.collection()
	if err != nil {
		return nil, err
	}
	if err := checkFields(a, "collStats"); err != nil {
		return nil, err
	}
	scale, err := parseScale(a, "scale has to be >= 1", "scale has to be a number >= 1")
	if err != nil {
		return nil, err
	}
	ns := req.DB + "." + collName
	fields, exists, err := h.storageStats(ctx, req.DB, collName, scale)
	if err != nil {
		return nil, err
	}
	if !exists {
		// mongod 7.0 answers ok with zeros for a collection that does not
		// exist (its NamespaceNotFound is not an error for collStats).
		return marshal(bson.D{
			{Key: "ns", Value: ns},
			{Key: "size", Value: int32(0)},
			{Key: "count", Value: int32(0)},
			{Key: "storageSize", Value: int32(0)},
			{Key: "totalSize", Value: int32(0)},
			{Key: "nindexes", Value: int32(0)},
			{Key: "totalIndexSize", Value: int32(0)},
			{Key: "indexDetails", Value: bson.D{}},
			{Key: "indexSizes", Value: bson.D{}},
			{Key: "scaleFactor", Value: intValue(scale)},
			{Key: "ok", Value: 1.0},
		})
	}
	reply := append(bson.D{{Key: "ns", Value: ns}}, fields...)
	return marshal(append(reply, bson.E{Key: "ok", Value: 1.0}))
}

// storageStats measures a collection as collStats and $collStats'
// storageStats report it: size, count, avgObjSize, storageSize, capped
// (max, maxSize), nindexes, indexDetails, indexBuilds, totalIndexSize,
// totalSize, indexSizes, scaleFactor. exists is false (and the fields
// nil) for a collection that does not exist.
func (h *Handler) storageStats(ctx context.Context, db, collName string, scale int64) (fields bson.D, exists bool, err error) {
	if isOplogNS(db, collName) && h.opts.Repl != nil {
		fields, err := h.oplogStats(scale)
		return fields, err == nil, err
	}
	st, release, err := h.store(db, false)
	if err != nil {
		return nil, false, err
	}
	defer release()
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	if coll == nil {
		return nil, false, nil
	}
	cs, err := st.Stats(ctx, coll)
	if err != nil {
		return nil, false, err
	}
	var indexTotal int64
	sizes := bson.D{}
	for i, ix := range coll.Indexes {
		indexTotal += cs.IndexSizes[i]
		sizes = append(sizes, bson.E{Key: ix.Name, Value: intValue(cs.IndexSizes[i] / scale)})
	}
	var avg int64
	if cs.Count > 0 {
		avg = cs.DataSize / cs.Count // not scaled, as mongod
	}
	fields = bson.D{
		{Key: "size", Value: intValue(cs.DataSize / scale)},
		{Key: "count", Value: intValue(cs.Count)},
		{Key: "avgObjSize", Value: intValue(avg)},
		{Key: "storageSize", Value: intValue(cs.StorageSize / scale)},
		{Key: "capped", Value: coll.Capped()},
	}
	if coll.Capped() {
		fields = append(fields,
			bson.E{Key: "max", Value: intValue(coll.Options.Max)},
			bson.E{Key: "maxSize", Value: intValue(coll.Options.Size / scale)})
	}
	fields = append(fields,
		bson.E{Key: "nindexes", Value: int32(len(coll.Indexes))},
		bson.E{Key: "indexDetails", Value: bson.D{}},
		bson.E{Key: "indexBuilds", Value: bson.A{}},
		bson.E{Key: "totalIndexSize", Value: intValue(indexTotal / scale)},
		bson.E{Key: "totalSize", Value: intValue((cs.StorageSize + indexTotal) / scale)},
		bson.E{Key: "indexSizes", Value: sizes},
		bson.E{Key: "scaleFactor", Value: intValue(scale)})
	return fields, true, nil
}

// dataSize answers {dataSize: "db.coll", keyPattern, min, max, estimate}:
// the documents' BSON sizes, all of them or those whose keyPattern values
// lie in [min, max) (mongod walks an index with that key pattern, which
// must exist). estimate: true is answered exactly (counting is as cheap).
func (h *Handler) dataSize(ctx context.Context, c *wire.ConnState, req *wire.Request) (bson.Raw, error) {
	started := time.Now()
	a := newArgs(req.Command)
	if err := checkFields(a, "dataSize"); err != nil {
		return nil, err
	}
	ns, err := a.string(a.name)
	if err != nil {
		return nil, err
	}
	dbName, collName, ok := strings.Cut(ns, ".")
	if !ok || dbName == "" || collName == "" {
		return nil, mongoerr.New(mongoerr.InvalidNamespace, "Invalid namespace specified '%s'", ns)
	}
	keyPattern, err := a.doc("keyPattern")
	if err != nil {
		return nil, err
	}
	minDoc, err := a.doc("min")
	if err != nil {
		return nil, err
	}
	maxDoc, err := a.doc("max")
	if err != nil {
		return nil, err
	}
	if _, err := a.bool("estimate", false); err != nil {
		return nil, err
	}
	if (len(minDoc) > 5) != (len(maxDoc) > 5) {
		return nil, mongoerr.New(mongoerr.BadValue, "only one of min or max specified")
	}
	ranged := len(minDoc) > 5
	st, release, err := h.store(dbName, false)
	if err != nil {
		return nil, err
	}
	defer release()
	var coll *docstore.Collection
	if st != nil {
		coll = st.Collection(collName)
	}
	var size, n int64
	if coll != nil && !ranged {
		cs, err := st.Stats(ctx, coll)
		if err != nil {
			return nil, err
		}
		size, n = cs.DataSize, cs.Count
	} else if coll != nil {
		var pattern bson.D
		if len(keyPattern) > 5 {
			if err := bson.Unmarshal(keyPattern, &pattern); err != nil {
				return nil, err
			}
		} else {
			// mongod infers {field: 1, …} from min's fields.
			elems, _ := minDoc.Elements()
			for _, e := range elems {
				pattern = append(pattern, bson.E{Key: e.Key(), Value: int32(1)})
			}
		}
		if !hasIndexPrefixedBy(coll, pattern) {
			return nil, mongoerr.New(mongoerr.BadValue, "couldn't find valid index containing key pattern")
		}
		lo, err := boundValues(minDoc, pattern)
		if err != nil {
			return nil, err
		}
		hi, err := boundValues(maxDoc, pattern)
		if err != nil {
			return nil, err
		}
		err = st.Documents(ctx, coll, pattern, lo, hi, func(doc bson.Raw) error {
			size += int64(len(doc))
			n++
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return marshal(bson.D{
		{Key: "estimate", Value: false},
		{Key: "size", Value: intValue(size)},
		{Key: "numObjects", Value: intValue(n)},
		{Key: "millis", Value: intValue(time.Since(started).Milliseconds())},
		{Key: "ok", Value: 1.0},
	})
}

// hasIndexPrefixedBy reports whether an index's key starts with pattern's
// fields (mongod's dataSize needs one to walk).
func hasIndexPrefixedBy(coll *docstore.Collection, pattern bson.D) bool {
	if len(pattern) == 0 {
		return false
	}
	for _, ix := range coll.Indexes {
		if len(ix.Key) < len(pattern) {
			continue
		}
		ok := true
		for i, e := range pattern {
			if ix.Key[i].Key != e.Key {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// boundValues reads a min or max document's values in pattern's order: it
// must name exactly the pattern's fields.
func boundValues(bound bson.Raw, pattern bson.D) ([]bson.RawValue, error) {
	elems, err := bound.Elements()
	if err != nil {
		return nil, err
	}
	if len(elems) != len(pattern) {
		return nil, mongoerr.New(mongoerr.BadValue, "min and max must have the key pattern's fields, in its order")
	}
	vals := make([]bson.RawValue, len(elems))
	for i, e := range elems {
		if e.Key() != pattern[i].Key {
			return nil, mongoerr.New(mongoerr.BadValue, "min and max must have the key pattern's fields, in its order")
		}
		vals[i] = e.Value()
	}
	return vals, nil
}

// oplogStats is collStats of a member's local.oplog.rs: its entries' count
// and size, the sstables they take, and its size cap (maxSize). It has no
// indexes (MongoDB's oplog has none either) and no document cap.
func (h *Handler) oplogStats(scale int64) (bson.D, error) {
	var size, count, disk, maxSize int64
	err := h.withOplog(func(l *oplog.Log) error {
		var err error
		if size, count, _, err = l.Stats(); err != nil {
			return err
		}
		if disk, err = l.DiskUsage(); err != nil {
			return err
		}
		maxSize = l.Limits().MaxBytes
		return nil
	})
	if err != nil {
		return nil, err
	}
	var avg int64
	if count > 0 {
		avg = size / count
	}
	return bson.D{
		{Key: "size", Value: intValue(size / scale)},
		{Key: "count", Value: intValue(count)},
		{Key: "avgObjSize", Value: intValue(avg)},
		{Key: "storageSize", Value: intValue(disk / scale)},
		{Key: "capped", Value: true},
		{Key: "max", Value: int32(0)},
		{Key: "maxSize", Value: intValue(maxSize / scale)},
		{Key: "nindexes", Value: int32(0)},
		{Key: "indexDetails", Value: bson.D{}},
		{Key: "indexBuilds", Value: bson.A{}},
		{Key: "totalIndexSize", Value: int32(0)},
		{Key: "totalSize", Value: intValue(disk / scale)},
		{Key: "indexSizes", Value: bson.D{}},
		{Key: "scaleFactor", Value: intValue(scale)},
	}, nil
}
