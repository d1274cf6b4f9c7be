package kms

import (
	"context"
	"sync/atomic"
)

// Counting wraps a Provider and counts its calls, so a node can show (and
// tests and benchmarks can prove) how few KMS calls it makes: one per node
// start, one per check, none per client operation.
type Counting struct {
	Provider
	wraps, unwraps, checks atomic.Int64
}

// NewCounting wraps p.
func NewCounting(p Provider) *Counting { return &Counting{Provider: p} }

func (c *Counting) Wrap(ctx context.Context, plaintext, aad []byte) (Wrapped, error) {
	c.wraps.Add(1)
	return c.Provider.Wrap(ctx, plaintext, aad)
}

func (c *Counting) Unwrap(ctx context.Context, w Wrapped, aad []byte) ([]byte, error) {
	c.unwraps.Add(1)
	return c.Provider.Unwrap(ctx, w, aad)
}

func (c *Counting) Check(ctx context.Context) Status {
	c.checks.Add(1)
	return c.Provider.Check(ctx)
}

// CallCounts is a snapshot of the counters.
type CallCounts struct{ Wrap, Unwrap, Check int64 }

// Total is the number of calls of every kind.
func (c CallCounts) Total() int64 { return c.Wrap + c.Unwrap + c.Check }

// Counts returns the calls made so far.
func (c *Counting) Counts() CallCounts {
	return CallCounts{Wrap: c.wraps.Load(), Unwrap: c.unwraps.Load(), Check: c.checks.Load()}
}
