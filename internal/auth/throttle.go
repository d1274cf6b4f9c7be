package auth

import (
	"container/list"
	"net"
	"sync"
	"time"
)

// Failed logins are throttled per (source address, database, user): the
// first FreeFailures failures cost nothing; each further one locks the key
// out for BaseLockout, doubling up to MaxLockout. While locked out, every
// attempt fails with the ordinary AuthenticationFailed — whether the user
// exists and whether the password was right are not revealed, and an
// attempt made while locked out is not checked at all. A success clears
// the key. The throttle is keyed by user as well as source so that one
// noisy client cannot lock a user out for everybody, and by source as
// well as user so that guessing from many users' names at one source is
// still bounded per name.
//
// Memory is bounded: at most MaxEntries keys are tracked, the least
// recently failed evicted first once it is no longer locked out. When
// every tracked key is locked out and a new one fails, the throttle fails
// closed: attempts on untracked keys are refused until lockouts expire,
// rather than letting a flood of names evict the keys it is holding back.

// ThrottleConfig bounds failed logins; zero fields take the defaults.
type ThrottleConfig struct {
	FreeFailures int
	BaseLockout  time.Duration
	MaxLockout   time.Duration
	// Forget is how long a key without failures is remembered.
	Forget     time.Duration
	MaxEntries int
	// Now is the clock (tests).
	Now func() time.Time
}

// Defaults of ThrottleConfig.
const (
	DefaultFreeFailures = 5
	DefaultBaseLockout  = time.Second
	DefaultMaxLockout   = 5 * time.Minute
	DefaultForget       = 15 * time.Minute
	DefaultMaxEntries   = 10000
)

// Throttle tracks failed logins. It is safe for concurrent use.
type Throttle struct {
	cfg ThrottleConfig

	mu      sync.Mutex
	entries map[throttleKey]*list.Element
	lru     *list.List // of *throttleEntry; front: most recent failure
	full    bool       // every tracked key is locked out: refuse new ones
}

type throttleKey struct{ source, db, user string }

type throttleEntry struct {
	key         throttleKey
	failures    int
	last        time.Time
	lockedUntil time.Time
}

// NewThrottle returns a throttle with cfg's bounds.
func NewThrottle(cfg ThrottleConfig) *Throttle {
	if cfg.FreeFailures <= 0 {
		cfg.FreeFailures = DefaultFreeFailures
	}
	if cfg.BaseLockout <= 0 {
		cfg.BaseLockout = DefaultBaseLockout
	}
	if cfg.MaxLockout <= 0 {
		cfg.MaxLockout = DefaultMaxLockout
	}
	cfg.MaxLockout = max(cfg.MaxLockout, cfg.BaseLockout)
	if cfg.Forget <= 0 {
		cfg.Forget = DefaultForget
	}
	cfg.Forget = max(cfg.Forget, cfg.MaxLockout)
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{cfg: cfg, entries: map[throttleKey]*list.Element{}, lru: list.New()}
}

// sourceOf is the part of a client address a throttle keys on: the IP,
// not the port (every connection has its own).
func sourceOf(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// allowed reports whether an attempt for k may be checked now.
func (t *Throttle) allowed(k throttleKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	t.expireLocked(now)
	el, ok := t.entries[k]
	if !ok {
		return !t.full
	}
	return !now.Before(el.Value.(*throttleEntry).lockedUntil)
}

// failed records a failed attempt for k.
func (t *Throttle) failed(k throttleKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.cfg.Now()
	t.expireLocked(now)
	el, ok := t.entries[k]
	if !ok {
		if len(t.entries) >= t.cfg.MaxEntries && !t.evictLocked(now) {
			t.full = true
			return
		}
		el = t.lru.PushFront(&throttleEntry{key: k})
		t.entries[k] = el
	}
	e := el.Value.(*throttleEntry)
	e.failures++
	e.last = now
	if over := e.failures - t.cfg.FreeFailures; over > 0 {
		lock := t.cfg.BaseLockout
		for i := 1; i < over && lock < t.cfg.MaxLockout; i++ {
			lock *= 2
		}
		e.lockedUntil = now.Add(min(lock, t.cfg.MaxLockout))
	}
	t.lru.MoveToFront(el)
}

// succeeded clears k.
func (t *Throttle) succeeded(k throttleKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.entries[k]; ok {
		t.lru.Remove(el)
		delete(t.entries, k)
	}
}

// expireLocked forgets keys whose last failure is older than Forget and
// whose lockout is over, oldest first.
func (t *Throttle) expireLocked(now time.Time) {
	for el := t.lru.Back(); el != nil; el = t.lru.Back() {
		e := el.Value.(*throttleEntry)
		if now.Sub(e.last) < t.cfg.Forget || now.Before(e.lockedUntil) {
			break
		}
		t.lru.Remove(el)
		delete(t.entries, e.key)
	}
	if t.full && len(t.entries) < t.cfg.MaxEntries {
		t.full = false
	}
	if t.full {
		t.full = !t.evictLocked(now) || len(t.entries) >= t.cfg.MaxEntries
	}
}

// evictLocked removes the least recently failed key that is not locked
// out, and reports whether it found one. It looks at a bounded number of
// the oldest keys so that a full table costs O(1) per attempt.
func (t *Throttle) evictLocked(now time.Time) bool {
	const scan = 16
	el := t.lru.Back()
	for i := 0; el != nil && i < scan; i++ {
		e := el.Value.(*throttleEntry)
		if !now.Before(e.lockedUntil) {
			t.lru.Remove(el)
			delete(t.entries, e.key)
			return true
		}
		el = el.Prev()
	}
	return false
}

// Len returns how many keys are tracked.
func (t *Throttle) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.entries)
}
