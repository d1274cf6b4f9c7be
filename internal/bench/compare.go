package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// CompareConfig describes an encrypted-versus-plaintext comparison.
type CompareConfig struct {
	Config
	// Binary is the cmkdb executable to start the two servers from.
	Binary string
	// Rounds is how many measured runs each server gets; the servers
	// alternate (E P, P E, E P, ...) so drifting machine noise hits both.
	Rounds int
	// WarmupOps run against each server before the measured rounds.
	WarmupOps int64
	// KeepDirs leaves the two data directories in place.
	KeepDirs bool
	// Progress, if set, receives one line per phase and round.
	Progress io.Writer
}

// Side is one server's totals over all its rounds.
type Side struct {
	Name      string        `json:"name"`
	Dir       string        `json:"dir,omitempty"`
	Load      LoadResult    `json:"load"`
	Rounds    []Result      `json:"rounds"`
	Ops       int64         `json:"ops"`
	Errors    int64         `json:"errors"`
	Elapsed   time.Duration `json:"elapsedNanos"`
	OpsPerSec float64       `json:"opsPerSec"`
	All       Latency       `json:"all"`
	KMSCalls  KMSCalls      `json:"kmsCalls"`
	KMSPerOp  float64       `json:"kmsCallsPerOp"`
	Encrypted bool          `json:"encrypted"`
}

// CompareResult is the outcome of Compare.
type CompareResult struct {
	Config    Config `json:"config"`
	Rounds    int    `json:"rounds"`
	Encrypted Side   `json:"encrypted"`
	Plaintext Side   `json:"plaintext"`
	// Ratio is encrypted/plaintext throughput over all rounds.
	Ratio float64 `json:"ratio"`
	// MedianRoundRatio is the median of the per-round ratios, each taken
	// between back-to-back runs: the figure least moved by machine noise.
	MedianRoundRatio float64 `json:"medianRoundRatio"`
}

// Compare starts two servers from cfg.Binary — one encrypted, one with
// --insecure-no-encryption — each on its own temporary directory, loads
// both, then runs cfg.Rounds interleaved rounds of cfg.Ops operations on
// each and compares their throughput.
func Compare(ctx context.Context, cfg CompareConfig) (CompareResult, error) {
	if err := cfg.Validate(); err != nil {
		return CompareResult{}, err
	}
	if cfg.Rounds < 1 {
		return CompareResult{}, errors.New("--rounds must be at least 1")
	}
	progress := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	type side struct {
		name string
		args []string
		srv  *Server
		cl   *mongo.Client
		res  *Side
	}
	res := CompareResult{Config: cfg.Config, Rounds: cfg.Rounds}
	sides := []*side{
		// A long key-check interval: no scheduled check inside the measurement.
		{name: "encrypted", args: []string{"--key-check-interval", "24h"}, res: &res.Encrypted},
		{name: "plaintext", args: []string{"--key-check-interval", "24h", "--insecure-no-encryption"}, res: &res.Plaintext},
	}
	defer func() {
		for _, s := range sides {
			if s.cl != nil {
				dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = s.cl.Disconnect(dctx)
				cancel()
			}
			if s.srv != nil {
				if err := s.srv.Stop(60 * time.Second); err != nil {
					progress("stopping the %s server: %v", s.name, err)
				}
				if !cfg.KeepDirs {
					_ = os.RemoveAll(s.srv.Dir)
				}
			}
		}
	}()
	for _, s := range sides {
		dir, err := os.MkdirTemp("", "cmkdb-bench-"+s.name+"-")
		if err != nil {
			return res, err
		}
		s.srv, err = StartServer(ctx, s.name, cfg.Binary, dir, 2*time.Minute, s.args...)
		if err != nil {
			_ = os.RemoveAll(dir)
			return res, err
		}
		s.res.Name = s.name
		if cfg.KeepDirs {
			s.res.Dir = dir
		}
		if s.cl, err = Connect(ctx, s.srv.URI, cfg.Clients); err != nil {
			return res, err
		}
		progress("%s server up at %s (%s)", s.name, s.srv.URI, dir)
	}
	for _, s := range sides {
		lr, err := Load(ctx, s.cl, cfg.Config)
		if err != nil {
			return res, fmt.Errorf("load %s: %w", s.name, err)
		}
		s.res.Load = lr
		progress("loaded %d records into the %s server in %s (%.0f records/s)", lr.Records, s.name, lr.Elapsed.Round(time.Millisecond), float64(lr.Records)/lr.Elapsed.Seconds())
	}
	if cfg.WarmupOps > 0 {
		for _, s := range sides {
			w := cfg.Config
			w.Ops = cfg.WarmupOps
			w.Seed = cfg.Seed + 1_000_003
			if _, err := Run(ctx, s.cl, w); err != nil {
				return res, fmt.Errorf("warm-up %s: %w", s.name, err)
			}
		}
		progress("warmed up both servers with %d operations each", cfg.WarmupOps)
	}
	var roundRatios []float64
	for round := range cfg.Rounds {
		order := []*side{sides[0], sides[1]}
		if round%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		perRound := map[string]float64{}
		for _, s := range order {
			rc := cfg.Config
			rc.Seed = cfg.Seed + uint64(round) // the same operations on both servers
			r, err := Run(ctx, s.cl, rc)
			if err != nil {
				return res, fmt.Errorf("round %d on %s: %w", round+1, s.name, err)
			}
			s.res.Rounds = append(s.res.Rounds, r)
			perRound[s.name] = r.OpsPerSec
			progress("round %d/%d %-9s %9.0f ops/s  p50 %-9s p99 %-9s errors %d", round+1, cfg.Rounds, s.name, r.OpsPerSec,
				r.All.P50.Round(time.Microsecond), r.All.P99.Round(time.Microsecond), r.Errors)
		}
		if perRound["plaintext"] > 0 {
			roundRatios = append(roundRatios, perRound["encrypted"]/perRound["plaintext"])
		}
	}
	for _, s := range sides {
		for _, r := range s.res.Rounds {
			s.res.Ops += r.All.Count
			s.res.Errors += r.Errors
			s.res.Elapsed += r.Elapsed
			s.res.KMSCalls.Wrap += r.KMSCalls.Wrap
			s.res.KMSCalls.Unwrap += r.KMSCalls.Unwrap
			s.res.KMSCalls.Check += r.KMSCalls.Check
			s.res.Encrypted = r.Encrypted
		}
		if s.res.Elapsed > 0 {
			s.res.OpsPerSec = float64(s.res.Ops) / s.res.Elapsed.Seconds()
		}
		if n := int64(cfg.Rounds) * cfg.Ops; n > 0 {
			s.res.KMSPerOp = float64(s.res.KMSCalls.total()) / float64(n)
		}
		s.res.All = mergeLatency(s.res.Rounds)
	}
	if res.Plaintext.OpsPerSec > 0 {
		res.Ratio = res.Encrypted.OpsPerSec / res.Plaintext.OpsPerSec
	}
	if len(roundRatios) > 0 {
		slices.Sort(roundRatios)
		m := len(roundRatios) / 2
		res.MedianRoundRatio = roundRatios[m]
		if len(roundRatios)%2 == 0 {
			res.MedianRoundRatio = (roundRatios[m-1] + roundRatios[m]) / 2
		}
	}
	if !res.Encrypted.Encrypted || res.Plaintext.Encrypted {
		return res, fmt.Errorf("the servers do not report the expected encryption (encrypted server: %v, plaintext server: %v)",
			res.Encrypted.Encrypted, res.Plaintext.Encrypted)
	}
	return res, nil
}

// mergeLatency approximates the latency over several rounds by the median
// of each percentile across rounds (the per-operation samples are not kept
// across rounds).
func mergeLatency(rounds []Result) Latency {
	if len(rounds) == 0 {
		return Latency{}
	}
	pick := func(f func(Result) time.Duration) time.Duration {
		v := make([]time.Duration, len(rounds))
		for i, r := range rounds {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var l Latency
	for _, r := range rounds {
		l.Count += r.All.Count
		l.Max = max(l.Max, r.All.Max)
	}
	l.P50 = pick(func(r Result) time.Duration { return r.All.P50 })
	l.P95 = pick(func(r Result) time.Duration { return r.All.P95 })
	l.P99 = pick(func(r Result) time.Duration { return r.All.P99 })
	return l
}
