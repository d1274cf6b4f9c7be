package gcp

import (
	"context"
	"errors"

	"github.com/cmkdb/cmkdb/internal/backoff"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// retry runs attempt until it succeeds, fails with anything but an
// UNREACHABLE-class *kms.Error, runs out of attempts, or ctx ends. An
// INVALID answer is final: asking again would only delay the verdict.
func (p *Provider) retry(ctx context.Context, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil || !retryable(err) || n >= p.maxAttempts || ctx.Err() != nil {
			return err
		}
		if !backoff.Wait(ctx, p.backoff().Delay(n)) {
			// The last answer says more than "the deadline passed".
			return err
		}
	}
}

func retryable(err error) bool {
	var ke *kms.Error
	return errors.As(err, &ke) && ke.Validity() == kms.Unreachable
}

// backoff is full-jitter exponential: a random wait below
// maxBackoff/16 · 2^(n-1), capped at maxBackoff, so clients that failed
// together do not retry together.
func (p *Provider) backoff() backoff.Policy { return backoff.Full(p.maxBackoff/16, p.maxBackoff) }
