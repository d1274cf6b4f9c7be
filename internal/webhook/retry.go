package webhook

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// retryable reports whether a response status is worth another attempt:
// server errors and rate limiting are transient; any other 4xx (and 3xx,
// which is not followed because it would turn the POST into a GET) will
// fail the same way again.
func retryable(status int) bool {
	return status == http.StatusTooManyRequests || status >= 500
}

// jitterCeiling is the upper bound of the wait after failed attempt n
// (1-based): base·2^(n-1), capped at max.
func jitterCeiling(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// fullJitter draws the wait uniformly from [0, ceiling] so that many
// deliveries failing together (a receiver outage) do not retry in lockstep.
func fullJitter(base, max time.Duration, attempt int) time.Duration {
	return rand.N(jitterCeiling(base, max, attempt) + 1)
}

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
