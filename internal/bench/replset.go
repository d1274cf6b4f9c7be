package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
)

// ReplSetConfig describes a replica-set benchmark: the same workloads
// against an encrypted replica set, a plaintext one and an encrypted
// single node, every write with w: "majority".
type ReplSetConfig struct {
	// Config is the workload shape; its Workload is replaced by each of
	// Workloads in turn.
	Config
	// Workloads run one after the other on the same loaded records.
	Workloads []string
	// Members is the sets' size (`cmkdb up --nodes`).
	Members int
	// Binary is the cmkdb executable to start the servers from.
	Binary string
	// Rounds is how many measured runs each server gets per workload, in
	// an order that rotates every round.
	Rounds int
	// WarmupOps run against each server before each workload's rounds.
	WarmupOps int64
	// KeepDirs leaves the data directories in place.
	KeepDirs bool
	// Progress, if set, receives one line per phase and round.
	Progress io.Writer
}

// ReplSetWorkload is one workload's outcome on the three servers.
type ReplSetWorkload struct {
	Workload  string `json:"workload"`
	Encrypted Side   `json:"encryptedSet"`
	Plaintext Side   `json:"plaintextSet"`
	Single    Side   `json:"encryptedSingleNode"`
	// Ratio is encrypted set / plaintext set throughput over all rounds;
	// MedianRoundRatio the median of the per-round ratios.
	Ratio            float64 `json:"ratio"`
	MedianRoundRatio float64 `json:"medianRoundRatio"`
	// SetVsSingle is encrypted set / encrypted single node throughput:
	// what replicating every write to a majority costs.
	SetVsSingle            float64 `json:"setVsSingle"`
	MedianRoundSetVsSingle float64 `json:"medianRoundSetVsSingle"`
}

// ReplSetResult is the outcome of ReplSet.
type ReplSetResult struct {
	Config       Config            `json:"config"`
	Members      int               `json:"members"`
	Rounds       int               `json:"rounds"`
	WriteConcern string            `json:"writeConcern"`
	Workloads    []ReplSetWorkload `json:"workloads"`
}

// ReplSet starts three servers from cfg.Binary, each on its own
// temporary directory — an encrypted cfg.Members-member replica set, the
// same set with --insecure-no-encryption, and an encrypted single node —
// loads each once, then for every workload runs cfg.Rounds rounds against
// each in rotating order, all with write concern "majority", and compares
// the encrypted set with the plaintext one and with the single node.
func ReplSet(ctx context.Context, cfg ReplSetConfig) (ReplSetResult, error) {
	res := ReplSetResult{Config: cfg.Config, Members: cfg.Members, Rounds: cfg.Rounds, WriteConcern: "majority"}
	if len(cfg.Workloads) == 0 {
		return res, errors.New("no workload to run")
	}
	for _, w := range cfg.Workloads {
		c := cfg.Config
		c.Workload = w
		if err := c.Validate(); err != nil {
			return res, err
		}
	}
	switch {
	case cfg.Rounds < 1:
		return res, errors.New("--rounds must be at least 1")
	case cfg.Members < 3 || cfg.Members%2 == 0:
		return res, errors.New("--members must be odd and at least 3")
	}
	progress := progressFunc(cfg.Progress)
	nodes := strconv.Itoa(cfg.Members)
	// The Sides each workload fills; the targets point at the current
	// workload's (set below).
	var enc, plain, single Side
	targets := []*target{
		// A long key-check interval: no scheduled check inside the measurement.
		{name: "encrypted", args: []string{"--key-check-interval", "24h", "--nodes", nodes}, res: &enc},
		{name: "plaintext", args: []string{"--key-check-interval", "24h", "--nodes", nodes, "--insecure-no-encryption"}, res: &plain},
		{name: "single", args: []string{"--key-check-interval", "24h"}, res: &single},
	}
	// Every write waits for a majority; on the single node that is the
	// node itself, so the difference is the replication. Retryable reads
	// and writes are on, as drivers default for replica sets: an election
	// on a loaded machine costs a retry, not a failed operation.
	connect := func(ctx context.Context, uri string) (*mongo.Client, error) {
		return connectWith(ctx, clientOptions(uri, cfg.Clients).SetWriteConcern(writeconcern.Majority()).
			SetRetryWrites(true).SetRetryReads(true))
	}
	// Three members start and elect a primary: give them longer than one node.
	stop, err := startTargets(ctx, cfg.Binary, targets, 3*time.Minute, cfg.KeepDirs, connect, progress)
	defer stop()
	if err != nil {
		return res, err
	}
	// A set that silently ran as one node would measure nothing of
	// replication: check what each server says it is.
	for _, t := range targets {
		n, err := replicaSetSize(ctx, t.cl)
		if err != nil {
			return res, fmt.Errorf("%s server: %w", t.name, err)
		}
		want := cfg.Members
		if t.res == &single {
			want = 0
		}
		if n != want {
			return res, fmt.Errorf("the %s server has %d replica set members, want %d", t.name, n, want)
		}
	}
	load := cfg.Config
	load.Workload = cfg.Workloads[0]
	if err := loadTargets(ctx, load, targets, progress); err != nil {
		return res, err
	}
	loads := []LoadResult{enc.Load, plain.Load, single.Load}
	for _, w := range cfg.Workloads {
		for i, t := range targets {
			*t.res = Side{Name: t.name, Dir: t.res.Dir, Load: loads[i]}
		}
		c := cfg.Config
		c.Workload = w
		perRound, err := runInterleaved(ctx, c, cfg.Rounds, cfg.WarmupOps, targets, progress)
		if err != nil {
			return res, err
		}
		rw := ReplSetWorkload{Workload: w, Encrypted: enc, Plaintext: plain, Single: single}
		rw.Ratio, rw.MedianRoundRatio = ratios(&enc, &plain, perRound)
		rw.SetVsSingle, rw.MedianRoundSetVsSingle = ratios(&enc, &single, perRound)
		res.Workloads = append(res.Workloads, rw)
		if !enc.Encrypted || plain.Encrypted || !single.Encrypted {
			return res, fmt.Errorf("the servers do not report the expected encryption (encrypted set: %v, plaintext set: %v, single node: %v)",
				enc.Encrypted, plain.Encrypted, single.Encrypted)
		}
	}
	return res, nil
}

// replicaSetSize is the number of hosts hello names (0: not a replica set).
func replicaSetSize(ctx context.Context, cl *mongo.Client) (int, error) {
	var hello struct {
		SetName string   `bson:"setName"`
		Hosts   []string `bson:"hosts"`
	}
	if err := cl.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return 0, fmt.Errorf("hello: %w", err)
	}
	if hello.SetName == "" {
		return 0, nil
	}
	return len(hello.Hosts), nil
}
