package docstore

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Index usage, for $indexStats: how many operations used each index (a
// scan planned on it: find, aggregate, count, distinct, and the reads of
// update, delete and findAndModify), since the index was created or, for
// indexes older than this process, since the process started — as in
// mongod, the counts live in memory and restart at zero.

// IndexUsage is one index's count.
type IndexUsage struct {
	Ops   int64
	Since time.Time
}

type usageEntry struct {
	ops   atomic.Int64
	since time.Time
}

var (
	usageStart = time.Now()
	usage      sync.Map // usageKey -> *usageEntry
)

func usageKey(c *Collection, ix *Index) string {
	return string(c.UUID.Data) + "\x00" + strconv.FormatUint(uint64(ix.ID), 10) + "\x00" + ix.Name
}

func usageOf(c *Collection, ix *Index) *usageEntry {
	if e, ok := usage.Load(usageKey(c, ix)); ok {
		return e.(*usageEntry)
	}
	e, _ := usage.LoadOrStore(usageKey(c, ix), &usageEntry{since: usageStart})
	return e.(*usageEntry)
}

// noteIndexCreated starts an index's count at zero, now.
func noteIndexCreated(c *Collection, ix *Index) {
	usage.Store(usageKey(c, ix), &usageEntry{since: time.Now()})
}

// IndexStats returns how many operations used ix of c.
func IndexStats(c *Collection, ix *Index) IndexUsage {
	e := usageOf(c, ix)
	return IndexUsage{Ops: e.ops.Load(), Since: e.since}
}
