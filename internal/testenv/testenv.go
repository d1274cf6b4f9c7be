// Package testenv adapts tests to the machine they run on: deadlines that
// scale with a factor from the environment (a slow or loaded CI machine
// sets CMKDB_TEST_TIMEOUT_SCALE), waiting for an observed condition instead
// of sleeping, and a RAM-backed directory for tests and fuzz targets whose
// per-input work would otherwise wait on fsync.
//
// Deadlines bound waits; no test measures anything with them.
package testenv

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// ScaleEnv names the variable that multiplies every scaled deadline
// (a positive number; 3 triples them).
const ScaleEnv = "CMKDB_TEST_TIMEOUT_SCALE"

// raceFactor is how much longer deadlines are under the race detector,
// which makes code several times slower.
const raceFactor = 2

// Scale returns the factor deadlines are multiplied by: CMKDB_TEST_TIMEOUT_SCALE
// (1 when unset or not a positive number), doubled under the race detector.
func Scale() float64 {
	f := 1.0
	if v, err := strconv.ParseFloat(os.Getenv(ScaleEnv), 64); err == nil && v > 0 && v < 1e6 {
		f = v
	}
	if race {
		f *= raceFactor
	}
	return f
}

// Timeout returns d scaled by Scale.
func Timeout(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Scale())
}

// Context returns a context whose deadline is Timeout(d) from now,
// cancelled when the test ends.
func Context(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout(d))
	tb.Cleanup(cancel)
	return ctx
}

// Poll calls cond until it returns nil and returns nil then, or returns
// cond's last error once Timeout(d) has passed or ctx ends. It polls
// quickly at first and backs off to a few times a second, so a condition
// that holds soon is seen soon and a long wait costs little CPU.
func Poll(ctx context.Context, d time.Duration, cond func() error) error {
	d = Timeout(d)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	interval := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not true within %s: %w", d, err)
		case <-time.After(interval):
		}
		interval = min(interval*2, 250*time.Millisecond)
	}
}

// Eventually polls cond (see Poll) and fails the test with cond's last
// error if it does not hold within Timeout(d).
func Eventually(tb testing.TB, d time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Poll(context.Background(), d, cond); err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
}
