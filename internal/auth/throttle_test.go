package auth

import (
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/wire"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func connFrom(ip string) *wire.ConnState {
	return wire.NewConnState(1, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}, &net.TCPAddr{}, nil)
}

// TestThrottleFailedLogins drives whole SCRAM conversations: after the free
// failures a user+source is locked out — the right password fails too,
// with the same AuthenticationFailed an unknown user gets — and the
// lockout doubles, ends, and is cleared by a success.
func TestThrottleFailedLogins(t *testing.T) {
	type step struct {
		ip, user, password string
		advance            time.Duration // before the attempt
		ok                 bool
	}
	good, bad := "right-pass", "wrong"
	fails := func(ip, user string, n int) []step {
		var out []step
		for range n {
			out = append(out, step{ip: ip, user: user, password: bad})
		}
		return out
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"free failures then success", cat(fails("10.0.0.1", "alice", 3), []step{{ip: "10.0.0.1", user: "alice", password: good, ok: true}})},
		{"locked out after the free failures: the right password fails", cat(fails("10.0.0.1", "alice", 4),
			[]step{{ip: "10.0.0.1", user: "alice", password: good}})},
		{"the lockout ends", cat(fails("10.0.0.1", "alice", 4),
			[]step{{ip: "10.0.0.1", user: "alice", password: good, advance: time.Second, ok: true}})},
		{"attempts while locked out are refused and not counted", cat(fails("10.0.0.1", "alice", 6),
			[]step{{ip: "10.0.0.1", user: "alice", password: good, advance: time.Second, ok: true}})},
		{"the lockout doubles", cat(fails("10.0.0.1", "alice", 4),
			[]step{{ip: "10.0.0.1", user: "alice", password: bad, advance: time.Second},
				{ip: "10.0.0.1", user: "alice", password: good, advance: time.Second},
				{ip: "10.0.0.1", user: "alice", password: good, advance: time.Second, ok: true}})},
		{"a success clears the count", cat(fails("10.0.0.1", "alice", 3),
			[]step{{ip: "10.0.0.1", user: "alice", password: good, ok: true}}, fails("10.0.0.1", "alice", 3),
			[]step{{ip: "10.0.0.1", user: "alice", password: good, ok: true}})},
		{"another source is not locked out", cat(fails("10.0.0.1", "alice", 6),
			[]step{{ip: "10.0.0.2", user: "alice", password: good, ok: true}})},
		{"another user is not locked out", cat(fails("10.0.0.1", "mallory", 6),
			[]step{{ip: "10.0.0.1", user: "alice", password: good, ok: true}})},
		{"an unknown user is locked out the same way", cat(fails("10.0.0.1", "nobody", 4),
			[]step{{ip: "10.0.0.1", user: "nobody", password: good}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			store := NewMemoryStore()
			if err := store.AddUser("admin", "alice", good); err != nil {
				t.Fatal(err)
			}
			a := NewAuthenticatorThrottled(store, NewThrottle(ThrottleConfig{FreeFailures: 3, BaseLockout: time.Second, Now: clk.Now}))
			for i, s := range tt.steps {
				clk.Add(s.advance)
				_, err := converse(t, a, connFrom(s.ip), "admin", SCRAMSHA256, s.user, s.password, false)
				if s.ok && err != nil {
					t.Fatalf("step %d (%+v): %v", i, s, err)
				}
				if !s.ok && !isAuthFailed(err) {
					t.Fatalf("step %d (%+v): %v, want AuthenticationFailed", i, s, err)
				}
			}
		})
	}
}

// TestThrottleBounded: a flood of names keeps the table at MaxEntries;
// while every tracked key is locked out, untracked keys are refused (fail
// closed), and they are accepted again once the lockouts end.
func TestThrottleBounded(t *testing.T) {
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := NewThrottle(ThrottleConfig{FreeFailures: 1, BaseLockout: time.Minute, MaxEntries: 8, Now: clk.Now})
	for i := range 100 {
		k := throttleKey{source: "10.0.0.1", db: "admin", user: "u" + strconv.Itoa(i)}
		th.failed(k)
		th.failed(k) // locked out
		if n := th.Len(); n > 8 {
			t.Fatalf("%d keys tracked, bound 8", n)
		}
	}
	fresh := throttleKey{source: "10.0.0.9", db: "admin", user: "alice"}
	if th.allowed(fresh) {
		t.Fatal("a new key was allowed while every tracked key is locked out")
	}
	clk.Add(2 * time.Minute)
	if !th.allowed(fresh) {
		t.Fatal("a new key is still refused after the lockouts ended")
	}
	// Keys that are not locked out are evicted, oldest first, to make room.
	for i := range 20 {
		th.failed(throttleKey{source: "10.0.0.2", user: "v" + strconv.Itoa(i)})
	}
	if n := th.Len(); n > 8 || !th.allowed(fresh) {
		t.Fatalf("%d keys tracked; fresh allowed %v", n, th.allowed(fresh))
	}
}
