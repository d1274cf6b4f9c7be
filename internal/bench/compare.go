package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	progress := progressFunc(cfg.Progress)
	res := CompareResult{Config: cfg.Config, Rounds: cfg.Rounds}
	targets := []*target{
		// A long key-check interval: no scheduled check inside the measurement.
		{name: "encrypted", args: []string{"--key-check-interval", "24h"}, res: &res.Encrypted},
		{name: "plaintext", args: []string{"--key-check-interval", "24h", "--insecure-no-encryption"}, res: &res.Plaintext},
	}
	connect := func(ctx context.Context, uri string) (*mongo.Client, error) { return Connect(ctx, uri, cfg.Clients) }
	stop, err := startTargets(ctx, cfg.Binary, targets, 2*time.Minute, cfg.KeepDirs, connect, progress)
	defer stop()
	if err != nil {
		return res, err
	}
	if err := loadTargets(ctx, cfg.Config, targets, progress); err != nil {
		return res, err
	}
	perRound, err := runInterleaved(ctx, cfg.Config, cfg.Rounds, cfg.WarmupOps, targets, progress)
	if err != nil {
		return res, err
	}
	res.Ratio, res.MedianRoundRatio = ratios(&res.Encrypted, &res.Plaintext, perRound)
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
