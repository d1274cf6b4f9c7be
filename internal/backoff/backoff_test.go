package backoff

import (
	"context"
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	ms := time.Millisecond
	cases := map[string]struct {
		p      Policy
		n      int
		lo, hi time.Duration // the wait lies in [lo, hi)
	}{
		"full jitter, first retry":     {Full(100*ms, time.Second), 1, 0, 100 * ms},
		"full jitter, third retry":     {Full(100*ms, time.Second), 3, 0, 400 * ms},
		"full jitter, capped":          {Full(100*ms, time.Second), 10, 0, time.Second},
		"equal jitter":                 {Policy{Base: 200 * ms, Max: 5 * time.Second, Low: 0.5, High: 1}, 2, 200 * ms, 400 * ms},
		"jitter above the ceiling":     {Policy{Base: 100 * ms, Low: 1, High: 1.5}, 3, 400 * ms, 600 * ms},
		"uncapped, many retries":       {Policy{Base: 100 * ms, Low: 1, High: 1}, 70, 1 << 61, 1<<62 + 1},
		"doubling up to a cap":         {Policy{Base: 250 * ms, Max: 10 * time.Second, Low: 1, High: 2}, 9, 10 * time.Second, 20 * time.Second},
		"attempt 0 counts as 1":        {Full(time.Second, time.Minute), 0, 0, time.Second},
		"zero base":                    {Full(0, time.Second), 5, 0, 1},
		"cap below base caps the base": {Full(time.Second, 100*ms), 1, 0, 100 * ms},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			for range 1000 {
				d := c.p.Delay(c.n)
				if d < c.lo || d >= c.hi {
					t.Fatalf("Delay(%d) = %s, want in [%s, %s)", c.n, d, c.lo, c.hi)
				}
			}
		})
	}
}

// TestDelayIsSpread: full jitter actually spreads the waits (clients that
// failed together do not retry together).
func TestDelayIsSpread(t *testing.T) {
	p := Full(time.Second, time.Second)
	low, high := 0, 0
	for range 1000 {
		if d := p.Delay(1); d < 250*time.Millisecond {
			low++
		} else if d >= 750*time.Millisecond {
			high++
		}
	}
	if low == 0 || high == 0 {
		t.Fatalf("1000 waits: %d in the lowest quarter, %d in the highest", low, high)
	}
}

func TestWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Wait(ctx, time.Microsecond) {
		t.Fatal("a short wait did not pass")
	}
	cancel()
	if Wait(ctx, time.Hour) {
		t.Fatal("a wait passed after its context ended")
	}
	if Wait(ctx, 0) {
		t.Fatal("a zero wait passed after its context ended")
	}
}
