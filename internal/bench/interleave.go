package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// target is one child server of a comparison and the totals of the runs
// against it.
type target struct {
	name string
	args []string // `cmkdb up` flags beyond the ones StartServer sets
	srv  *Server
	cl   *mongo.Client
	res  *Side
}

// progressFunc prints one line to w, or nothing when w is nil.
func progressFunc(w io.Writer) func(format string, args ...any) {
	return func(format string, args ...any) {
		if w != nil {
			fmt.Fprintf(w, format+"\n", args...)
		}
	}
}

// startTargets starts every target's server on its own temporary
// directory and connects to it with connect. The returned stop function
// disconnects, stops the servers and (unless keepDirs) removes their
// directories; it must be called even when startTargets fails.
func startTargets(ctx context.Context, bin string, targets []*target, timeout time.Duration, keepDirs bool,
	connect func(ctx context.Context, uri string) (*mongo.Client, error), progress func(string, ...any)) (stop func(), err error) {
	stop = func() {
		for _, t := range targets {
			if t.cl != nil {
				dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = t.cl.Disconnect(dctx)
				cancel()
			}
			if t.srv != nil {
				if err := t.srv.Stop(60 * time.Second); err != nil {
					progress("stopping the %s server: %v", t.name, err)
				}
				if !keepDirs {
					_ = os.RemoveAll(t.srv.Dir)
				}
			}
		}
	}
	for _, t := range targets {
		dir, err := os.MkdirTemp("", "cmkdb-bench-"+t.name+"-")
		if err != nil {
			return stop, err
		}
		t.srv, err = StartServer(ctx, t.name, bin, dir, timeout, t.args...)
		if err != nil {
			_ = os.RemoveAll(dir)
			return stop, err
		}
		t.res.Name = t.name
		if keepDirs {
			t.res.Dir = dir
		}
		if t.cl, err = connect(ctx, t.srv.URI); err != nil {
			return stop, fmt.Errorf("%s server: %w", t.name, err)
		}
		progress("%s server up at %s (%s)", t.name, t.srv.URI, dir)
	}
	return stop, nil
}

// loadTargets loads cfg's records into every target.
func loadTargets(ctx context.Context, cfg Config, targets []*target, progress func(string, ...any)) error {
	for _, t := range targets {
		lr, err := Load(ctx, t.cl, cfg)
		if err != nil {
			return fmt.Errorf("load %s: %w", t.name, err)
		}
		t.res.Load = lr
		progress("loaded %d records into the %s server in %s (%.0f records/s)", lr.Records, t.name,
			lr.Elapsed.Round(time.Millisecond), float64(lr.Records)/lr.Elapsed.Seconds())
	}
	return nil
}

// runInterleaved warms every target up with warmup operations, then runs
// rounds rounds of cfg against each. The order rotates every round (with
// three targets: X Y Z, Y Z X, Z X Y, …) so that each takes every position
// equally often and drifting machine noise falls on all of them. Every
// target gets the same operations in a round (the same seed). It returns
// each round's throughput by target name, and fills in the targets' Sides.
func runInterleaved(ctx context.Context, cfg Config, rounds int, warmup int64, targets []*target, progress func(string, ...any)) ([]map[string]float64, error) {
	if warmup > 0 {
		for _, t := range targets {
			w := cfg
			w.Ops = warmup
			w.Seed = cfg.Seed + 1_000_003
			if _, err := Run(ctx, t.cl, w); err != nil {
				return nil, fmt.Errorf("warm-up %s: %w", t.name, err)
			}
		}
		progress("workload %s: warmed up every server with %d operations", cfg.Workload, warmup)
	}
	var perRound []map[string]float64
	for round := range rounds {
		tput := map[string]float64{}
		for i := range targets {
			t := targets[(i+round)%len(targets)]
			rc := cfg
			rc.Seed = cfg.Seed + uint64(round) // the same operations on every server
			r, err := Run(ctx, t.cl, rc)
			if err != nil {
				return nil, fmt.Errorf("workload %s round %d on %s: %w", cfg.Workload, round+1, t.name, err)
			}
			t.res.Rounds = append(t.res.Rounds, r)
			tput[t.name] = r.OpsPerSec
			progress("workload %s round %d/%d %-10s %9.0f ops/s  p50 %-9s p99 %-9s errors %d", cfg.Workload, round+1, rounds, t.name,
				r.OpsPerSec, r.All.P50.Round(time.Microsecond), r.All.P99.Round(time.Microsecond), r.Errors)
		}
		perRound = append(perRound, tput)
	}
	for _, t := range targets {
		t.res.total(cfg.Ops)
	}
	return perRound, nil
}

// total sums the Side's rounds (ops is the operations asked per round).
func (s *Side) total(ops int64) {
	for _, r := range s.Rounds {
		s.Ops += r.All.Count
		s.Errors += r.Errors
		s.Elapsed += r.Elapsed
		s.KMSCalls.Wrap += r.KMSCalls.Wrap
		s.KMSCalls.Unwrap += r.KMSCalls.Unwrap
		s.KMSCalls.Check += r.KMSCalls.Check
		s.Encrypted = r.Encrypted
	}
	if s.Elapsed > 0 {
		s.OpsPerSec = float64(s.Ops) / s.Elapsed.Seconds()
	}
	if n := int64(len(s.Rounds)) * ops; n > 0 {
		s.KMSPerOp = float64(s.KMSCalls.total()) / float64(n)
	}
	s.All = mergeLatency(s.Rounds)
}

// ratios returns num/den over all rounds (from the Sides' totals) and the
// median of the per-round ratios, each taken between runs close in time:
// the figure least moved by machine noise.
func ratios(num, den *Side, perRound []map[string]float64) (overall, medianRound float64) {
	if den.OpsPerSec > 0 {
		overall = num.OpsPerSec / den.OpsPerSec
	}
	var rs []float64
	for _, m := range perRound {
		if m[den.Name] > 0 {
			rs = append(rs, m[num.Name]/m[den.Name])
		}
	}
	return overall, median(rs)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	m := len(v) / 2
	if len(v)%2 == 0 {
		return (v[m-1] + v[m]) / 2
	}
	return v[m]
}
