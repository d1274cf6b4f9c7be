// Package backoff computes the wait between two attempts of a retried call
// — exponential, capped and jittered — for every retrying loop in cmkdb: the
// KMS providers' own retries, webhook deliveries and a node's long-poll of
// the control plane. One formula, with the jitter each caller needs, keeps
// them from drifting apart and keeps their documentation true.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff. After failed attempt n (1-based) the
// ceiling is c = Base·2^(n-1), capped at Max (no cap when Max is 0); the
// wait is drawn uniformly from [Low·c, High·c).
//
// Common jitters: full (Low 0, High 1) spreads clients that failed together
// over the whole interval; equal (½, 1) keeps at least half the ceiling;
// Low ≥ 1 adds jitter on top of the ceiling.
type Policy struct {
	Base, Max time.Duration
	Low, High float64
}

// Full is full jitter: waits in [0, c).
func Full(base, max time.Duration) Policy { return Policy{Base: base, Max: max, Low: 0, High: 1} }

// Ceiling is c for failed attempt n; n < 1 counts as 1.
func (p Policy) Ceiling(n int) time.Duration {
	c := p.Base
	for i := 1; i < n && c > 0; i++ {
		if p.Max > 0 && c >= p.Max {
			break
		}
		if c > (1<<62)/2 { // doubling would overflow
			break
		}
		c *= 2
	}
	if p.Max > 0 {
		c = min(c, p.Max)
	}
	return max(c, 0)
}

// Delay is the wait after failed attempt n.
func (p Policy) Delay(n int) time.Duration {
	c := float64(p.Ceiling(n))
	lo, hi := time.Duration(c*p.Low), time.Duration(c*p.High)
	if hi <= lo {
		return max(lo, 0)
	}
	return lo + rand.N(hi-lo)
}

// Wait sleeps d or until ctx ends, and reports whether the whole wait
// passed (false: ctx ended first).
func Wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
