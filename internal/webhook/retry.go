package webhook

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/backoff"
)

// retryable reports whether a response status is worth another attempt:
// server errors and rate limiting are transient; any other 4xx (and 3xx,
// which is not followed because it would turn the POST into a GET) will
// fail the same way again.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// retryPolicy is the wait after failed attempt n: full jitter, uniform
// below min(max, base·2^(n-1)), so that many deliveries failing together
// (a receiver outage) do not retry in lockstep.
func retryPolicy(base, max time.Duration) backoff.Policy { return backoff.Full(base, max) }

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		// Clamp before multiplying so huge values cannot overflow.
		return time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
