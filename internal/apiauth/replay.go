package apiauth

import (
	"sync"
	"time"
)

// maxTrackedNonces bounds the replay table. An entry is ~40 bytes plus map
// overhead, so the default costs a few MiB at most.
const maxTrackedNonces = 100_000

type replayEntry struct {
	issued time.Time
	nc     uint32
}

// replayGuard remembers the highest nonce count accepted for each live
// nonce. Only requests whose digest already verified reach it, so an
// unauthenticated client cannot fill it.
//
// When full it evicts the oldest-inserted entry and raises floor to that
// entry's issue time: every nonce issued at or before floor is then treated
// as stale. Forgetting a nonce's history would otherwise let its old requests
// be replayed; forcing a fresh challenge instead keeps memory bounded without
// ever failing open.
type replayGuard struct {
	mu       sync.Mutex
	max      int
	lifetime time.Duration
	seen     map[nonceID]replayEntry
	order    []nonceID // insertion order; order[head:] is live
	head     int
	floor    time.Time
}

func newReplayGuard(max int, lifetime time.Duration) *replayGuard {
	return &replayGuard{max: max, lifetime: lifetime, seen: make(map[nonceID]replayEntry)}
}

// observe records nc for the nonce and returns ErrReplayedNonce if it is not
// strictly higher than the last accepted count, or ErrStaleNonce if the
// nonce's history may have been evicted.
func (g *replayGuard) observe(id nonceID, issued, now time.Time, nc uint32) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !issued.After(g.floor) {
		return ErrStaleNonce
	}
	if e, ok := g.seen[id]; ok {
		if nc <= e.nc {
			return ErrReplayedNonce
		}
		e.nc = nc
		g.seen[id] = e
		return nil
	}
	g.pruneExpired(now)
	for len(g.seen) >= g.max {
		g.evictOldest()
	}
	g.seen[id] = replayEntry{issued: issued, nc: nc}
	g.order = append(g.order, id)
	return nil
}

// pruneExpired drops entries from the front of the insertion order whose
// nonce has expired; expired nonces are refused before reaching the guard,
// so their history is no longer needed. Insertion order is close to issue
// order, so this reclaims nearly everything without a full scan.
func (g *replayGuard) pruneExpired(now time.Time) {
	for g.head < len(g.order) {
		e := g.seen[g.order[g.head]]
		if now.Sub(e.issued) <= g.lifetime {
			break
		}
		delete(g.seen, g.order[g.head])
		g.head++
	}
	g.compact()
}

func (g *replayGuard) evictOldest() {
	id := g.order[g.head]
	if e := g.seen[id]; e.issued.After(g.floor) {
		g.floor = e.issued
	}
	delete(g.seen, id)
	g.head++
	g.compact()
}

// compact reclaims the consumed prefix of order once it dominates the slice.
func (g *replayGuard) compact() {
	if g.head > 0 && g.head*2 >= len(g.order) {
		n := copy(g.order, g.order[g.head:])
		g.order = g.order[:n]
		g.head = 0
	}
}
