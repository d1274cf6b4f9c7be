// Package bench is cmkdb's YCSB-style load generator: it loads records with
// insertMany and runs workload A (50% reads, 50% updates) or C (100% reads)
// through the MongoDB wire protocol with the official Go driver, from many
// concurrent clients, and reports throughput, latency percentiles and the
// KMS calls the server made per operation (from serverStatus).
//
// Compare runs the same workload against two child servers of the same
// binary, one encrypted and one with encryption switched off, in
// interleaved rounds, and reports the ratio of their throughputs. ReplSet
// does the same with writes at w: "majority" for an encrypted replica set,
// a plaintext one and an encrypted single node (every member its own
// process), reporting encrypted/plaintext and set/single-node ratios.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Config describes one workload.
type Config struct {
	// Workload is "a" (50% read, 50% update) or "c" (100% read).
	Workload string
	// Distribution of the keys operations touch: "zipfian" (default) or "uniform".
	Distribution string
	Records      int64 // records loaded
	Ops          int64 // operations per run
	Clients      int   // concurrent clients (goroutines sharing one driver pool)
	Fields       int   // fields per record (YCSB: 10)
	ValueSize    int   // bytes per field (YCSB: 100)
	Database     string
	Collection   string
	Seed         uint64
}

// DefaultConfig is YCSB's core workload shape, sized for a laptop.
func DefaultConfig() Config {
	return Config{
		Workload: "a", Distribution: "zipfian", Records: 10000, Ops: 50000, Clients: 8,
		Fields: 10, ValueSize: 100, Database: "ycsb", Collection: "usertable", Seed: 1,
	}
}

func (c Config) readProportion() (float64, error) {
	switch c.Workload {
	case "a", "A":
		return 0.5, nil
	case "c", "C":
		return 1, nil
	}
	return 0, fmt.Errorf("unknown workload %q (want a or c)", c.Workload)
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if _, err := c.readProportion(); err != nil {
		return err
	}
	if _, err := newChooser(c.Distribution, 1); err != nil {
		return err
	}
	switch {
	case c.Records < 1:
		return errors.New("--records must be at least 1")
	case c.Ops < 1:
		return errors.New("--ops must be at least 1")
	case c.Clients < 1:
		return errors.New("--clients must be at least 1")
	case c.Fields < 1:
		return errors.New("--fields must be at least 1")
	case c.ValueSize < 0:
		return errors.New("--value-size must not be negative")
	case c.Database == "" || c.Collection == "":
		return errors.New("database and collection names are required")
	}
	return nil
}

// Connect opens a driver client sized for cfg.Clients.
func Connect(ctx context.Context, uri string, clients int) (*mongo.Client, error) {
	return connectWith(ctx, clientOptions(uri, clients))
}

func clientOptions(uri string, clients int) *options.ClientOptions {
	return options.Client().ApplyURI(uri).
		SetMaxPoolSize(uint64(clients) + 2).
		SetConnectTimeout(20 * time.Second).
		SetServerSelectionTimeout(30 * time.Second).
		SetTimeout(60 * time.Second).
		SetRetryWrites(false)
}

func connectWith(ctx context.Context, opts *options.ClientOptions) (*mongo.Client, error) {
	uri := opts.GetURI()
	c, err := mongo.Connect(opts)
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx, nil); err != nil {
		_ = c.Disconnect(context.Background())
		return nil, fmt.Errorf("connect %s: %w", uri, err)
	}
	return c, nil
}

// values hands out pseudo-random printable field values without allocating
// per operation: slices of one random pool.
type values struct {
	pool []byte
	size int
}

func newValues(size int, seed uint64) values {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	pool := make([]byte, 64*1024+size)
	for i := range pool {
		pool[i] = byte(' ' + r.IntN(95))
	}
	return values{pool: pool, size: size}
}

func (v values) next(r *rand.Rand) string {
	off := r.IntN(len(v.pool) - v.size + 1)
	return string(v.pool[off : off+v.size])
}

func (c Config) record(i int64, v values, r *rand.Rand) bson.D {
	d := make(bson.D, 0, c.Fields+1)
	d = append(d, bson.E{Key: "_id", Value: keyName(i)})
	for f := range c.Fields {
		d = append(d, bson.E{Key: fmt.Sprintf("field%d", f), Value: v.next(r)})
	}
	return d
}

// LoadResult is the load phase's outcome.
type LoadResult struct {
	Records int64
	Elapsed time.Duration
}

// Load drops the collection and inserts cfg.Records records with
// insertMany, in batches, from cfg.Clients concurrent clients.
func Load(ctx context.Context, client *mongo.Client, cfg Config) (LoadResult, error) {
	if err := cfg.Validate(); err != nil {
		return LoadResult{}, err
	}
	coll := client.Database(cfg.Database).Collection(cfg.Collection)
	if err := coll.Drop(ctx); err != nil {
		return LoadResult{}, fmt.Errorf("drop %s.%s: %w", cfg.Database, cfg.Collection, err)
	}
	const batch = 500
	start := time.Now()
	var next atomic.Int64
	errc := make(chan error, cfg.Clients)
	var wg sync.WaitGroup
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1000))
			v := newValues(cfg.ValueSize, cfg.Seed+uint64(w))
			docs := make([]any, 0, batch)
			for {
				from := next.Add(batch) - batch
				if from >= cfg.Records || ctx.Err() != nil {
					return
				}
				docs = docs[:0]
				for i := from; i < min(from+batch, cfg.Records); i++ {
					docs = append(docs, cfg.record(i, v, r))
				}
				if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
					errc <- fmt.Errorf("insertMany: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return LoadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return LoadResult{}, err
	}
	return LoadResult{Records: cfg.Records, Elapsed: time.Since(start)}, nil
}

// Latency summarises one operation type's latencies.
type Latency struct {
	Count int64         `json:"count"`
	P50   time.Duration `json:"p50"`
	P95   time.Duration `json:"p95"`
	P99   time.Duration `json:"p99"`
	Max   time.Duration `json:"max"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[int(q*float64(len(ds)-1)+0.5)] }
	return Latency{Count: int64(len(ds)), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ds[len(ds)-1]}
}

// KMSCalls are serverStatus.encryptionAtRest.kmsCalls.
type KMSCalls struct {
	Wrap   int64 `bson:"wrap" json:"wrap"`
	Unwrap int64 `bson:"unwrap" json:"unwrap"`
	Check  int64 `bson:"check" json:"check"`
}

func (k KMSCalls) total() int64 { return k.Wrap + k.Unwrap + k.Check }

// ServerKMSCalls reads the server's KMS call counters and whether it
// encrypts.
func ServerKMSCalls(ctx context.Context, client *mongo.Client) (KMSCalls, bool, error) {
	var st struct {
		EAR struct {
			Enabled  bool     `bson:"enabled"`
			KMSCalls KMSCalls `bson:"kmsCalls"`
		} `bson:"encryptionAtRest"`
	}
	err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "serverStatus", Value: 1}}).Decode(&st)
	return st.EAR.KMSCalls, st.EAR.Enabled, err
}

// Result is one run's outcome.
type Result struct {
	Workload     string        `json:"workload"`
	Distribution string        `json:"distribution"`
	Clients      int           `json:"clients"`
	Ops          int64         `json:"ops"`
	Errors       int64         `json:"errors"`
	FirstError   string        `json:"firstError,omitempty"`
	Elapsed      time.Duration `json:"elapsedNanos"`
	OpsPerSec    float64       `json:"opsPerSec"`
	All          Latency       `json:"all"`
	Read         Latency       `json:"read"`
	Update       Latency       `json:"update"`
	Encrypted    bool          `json:"encrypted"`
	KMSCalls     KMSCalls      `json:"kmsCalls"` // during the run
	KMSPerOp     float64       `json:"kmsCallsPerOp"`
}

// Run runs cfg.Ops operations of the workload from cfg.Clients concurrent
// clients against records Load wrote.
func Run(ctx context.Context, client *mongo.Client, cfg Config) (Result, error) {
	readProp, err := cfg.readProportion()
	if err != nil {
		return Result{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	chooser, err := newChooser(cfg.Distribution, cfg.Records)
	if err != nil {
		return Result{}, err
	}
	coll := client.Database(cfg.Database).Collection(cfg.Collection)
	kmsBefore, encrypted, err := ServerKMSCalls(ctx, client)
	if err != nil {
		return Result{}, fmt.Errorf("serverStatus: %w", err)
	}

	type clientStats struct {
		reads, updates []time.Duration
		errors         int64
		firstErr       error
	}
	stats := make([]clientStats, cfg.Clients)
	var next atomic.Int64
	var wg sync.WaitGroup
	per := int(cfg.Ops/int64(cfg.Clients)) + 1
	start := time.Now()
	for w := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[w]
			st.reads = make([]time.Duration, 0, per)
			if readProp < 1 {
				st.updates = make([]time.Duration, 0, per)
			}
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			v := newValues(cfg.ValueSize, cfg.Seed^uint64(w+1)*0x9e3779b97f4a7c15)
			for next.Add(1) <= cfg.Ops && ctx.Err() == nil {
				key := keyName(chooser.next(r))
				read := readProp >= 1 || r.Float64() < readProp
				var opErr error
				t0 := time.Now()
				if read {
					_, opErr = coll.FindOne(ctx, bson.D{{Key: "_id", Value: key}}).Raw()
				} else {
					field := fmt.Sprintf("field%d", r.IntN(cfg.Fields))
					var res *mongo.UpdateResult
					res, opErr = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}},
						bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: v.next(r)}}}})
					if opErr == nil && res.MatchedCount != 1 {
						opErr = fmt.Errorf("update %s matched %d documents", key, res.MatchedCount)
					}
				}
				d := time.Since(t0)
				if opErr != nil {
					st.errors++
					if st.firstErr == nil {
						st.firstErr = fmt.Errorf("%s: %w", key, opErr)
					}
					continue
				}
				if read {
					st.reads = append(st.reads, d)
				} else {
					st.updates = append(st.updates, d)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	kmsAfter, _, err := ServerKMSCalls(ctx, client)
	if err != nil {
		return Result{}, fmt.Errorf("serverStatus: %w", err)
	}

	res := Result{
		Workload: cfg.Workload, Distribution: cfg.Distribution, Clients: cfg.Clients, Ops: cfg.Ops,
		Elapsed: elapsed, Encrypted: encrypted,
		KMSCalls: KMSCalls{Wrap: kmsAfter.Wrap - kmsBefore.Wrap, Unwrap: kmsAfter.Unwrap - kmsBefore.Unwrap, Check: kmsAfter.Check - kmsBefore.Check},
	}
	var reads, updates []time.Duration
	for _, st := range stats {
		reads = append(reads, st.reads...)
		updates = append(updates, st.updates...)
		res.Errors += st.errors
		if st.firstErr != nil && res.FirstError == "" {
			res.FirstError = st.firstErr.Error()
		}
	}
	all := append(append(make([]time.Duration, 0, len(reads)+len(updates)), reads...), updates...)
	res.Read, res.Update, res.All = summarize(reads), summarize(updates), summarize(all)
	if elapsed > 0 {
		res.OpsPerSec = float64(res.All.Count) / elapsed.Seconds()
	}
	res.KMSPerOp = float64(res.KMSCalls.total()) / float64(cfg.Ops)
	return res, nil
}
