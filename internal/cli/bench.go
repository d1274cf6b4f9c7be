package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cmkdb/cmkdb/internal/bench"
)

func registerWorkloadFlags(fs *pflag.FlagSet, cfg *bench.Config) {
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "YCSB workload: a (50% read, 50% update) or c (100% read)")
	fs.StringVar(&cfg.Distribution, "distribution", cfg.Distribution, "key choice: zipfian or uniform")
	fs.Int64Var(&cfg.Records, "records", cfg.Records, "records loaded before the run")
	fs.Int64Var(&cfg.Ops, "ops", cfg.Ops, "operations per run")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients")
	fs.IntVar(&cfg.Fields, "fields", cfg.Fields, "fields per record")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per field")
	fs.StringVar(&cfg.Database, "db", cfg.Database, "database")
	fs.StringVar(&cfg.Collection, "collection", cfg.Collection, "collection")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
}

func writeJSON(w io.Writer, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", js)
	return err
}

// newBenchCmd is `cmkdb bench` (load and run a workload against a server)
// and `cmkdb bench compare` (encrypted versus plaintext, in one run).
func newBenchCmd(stdout io.Writer) *cobra.Command {
	cfg := bench.DefaultConfig()
	var uri, dir string
	var skipLoad, asJSON bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "YCSB-style load generator: load records and run workload A or C through the wire protocol",
		Long: "Loads --records records with insertMany, then runs --ops operations of the workload from\n" +
			"--clients concurrent clients with the official Go driver, and reports throughput, latency\n" +
			"percentiles and the KMS calls the server made per operation (from serverStatus).\n" +
			"The server is --uri, or the one `cmkdb up --dir DIR` runs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			if uri == "" {
				var err error
				if uri, err = uriFromUpFile(dir); err != nil {
					return err
				}
			}
			ctx := cmd.Context()
			client, err := bench.Connect(ctx, uri, cfg.Clients)
			if err != nil {
				return err
			}
			defer client.Disconnect(ctx)
			var load *bench.LoadResult
			if !skipLoad {
				lr, err := bench.Load(ctx, client, cfg)
				if err != nil {
					return err
				}
				load = &lr
			}
			res, err := bench.Run(ctx, client, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(stdout, struct {
					Load *bench.LoadResult `json:"load,omitempty"`
					Run  bench.Result      `json:"run"`
				}{load, res}); err != nil {
					return err
				}
			} else {
				bench.WriteResult(stdout, load, res)
			}
			if res.Errors > 0 {
				return fmt.Errorf("%d of %d operations failed; first: %s", res.Errors, res.Ops, res.FirstError)
			}
			return nil
		},
	}
	registerWorkloadFlags(cmd.Flags(), &cfg)
	cmd.Flags().StringVar(&uri, "uri", "", "connection string (default: the one in DIR/up.json)")
	cmd.Flags().StringVar(&dir, "dir", defaultDir, "data directory of a running `cmkdb up`, used when --uri is not given")
	cmd.Flags().BoolVar(&skipLoad, "skip-load", false, "run against records an earlier load wrote")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(newBenchCompareCmd(stdout), newBenchReplSetCmd(stdout))
	return cmd
}

func newBenchCompareCmd(stdout io.Writer) *cobra.Command {
	cc := bench.CompareConfig{Config: bench.DefaultConfig(), Rounds: 5}
	cc.Ops = 20000
	var asJSON bool
	var minRatio float64
	var warmup int64 = -1
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run a workload against an encrypted and a plaintext server of this binary and compare throughput",
		Long: "Starts two `cmkdb up` servers from this binary, each on its own temporary directory — one\n" +
			"encrypted, one with --insecure-no-encryption — loads both, then runs --rounds rounds of --ops\n" +
			"operations on each, alternating which goes first, and prints both throughputs and the ratio\n" +
			"encrypted/plaintext. With --min-ratio it fails when the ratio is lower.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cc.Binary, cc.WarmupOps, cc.Progress, err = childRunSetup(cc.Ops, warmup, asJSON, stdout); err != nil {
				return err
			}
			res, err := bench.Compare(cmd.Context(), cc)
			if err != nil {
				return err
			}
			if err := printBench(stdout, asJSON, res, func() { bench.WriteCompare(stdout, res) }); err != nil {
				return err
			}
			if n := res.Encrypted.Errors + res.Plaintext.Errors; n > 0 {
				return fmt.Errorf("%d operations failed", n)
			}
			if res.Ratio < minRatio {
				return fmt.Errorf("encrypted/plaintext throughput ratio %.3f is below --min-ratio %.3f", res.Ratio, minRatio)
			}
			return nil
		},
	}
	registerWorkloadFlags(cmd.Flags(), &cc.Config)
	cmd.Flags().IntVar(&cc.Rounds, "rounds", cc.Rounds, "measured rounds per server, interleaved")
	cmd.Flags().Int64Var(&warmup, "warmup-ops", warmup, "operations per server before the measured rounds (-1: --ops/5)")
	cmd.Flags().BoolVar(&cc.KeepDirs, "keep-dirs", false, "keep the two servers' data directories")
	cmd.Flags().Float64Var(&minRatio, "min-ratio", 0, "fail when encrypted/plaintext throughput is below this (e.g. 0.97)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// uriFromUpFile reads the connection string a running `cmkdb up` wrote.
func uriFromUpFile(dir string) (string, error) {
	js, err := os.ReadFile(filepath.Join(dir, "up.json"))
	if err != nil {
		return "", fmt.Errorf("no --uri and no running `cmkdb up` in %s: %w", dir, err)
	}
	var info upInfo
	if err := json.Unmarshal(js, &info); err != nil {
		return "", fmt.Errorf("%s/up.json: %w", dir, err)
	}
	if info.ConnectionString == "" {
		return "", errors.New(dir + "/up.json has no connection string")
	}
	return info.ConnectionString, nil
}

// childRunSetup is what the comparisons that start their own servers
// derive from their flags: this binary to start them from, the warm-up
// operations (warmup < 0: ops/5), and where progress lines go (nowhere
// with --json, which must print only the result).
func childRunSetup(ops, warmup int64, asJSON bool, stdout io.Writer) (bin string, warmupOps int64, progress io.Writer, err error) {
	if bin, err = os.Executable(); err != nil {
		return "", 0, nil, fmt.Errorf("locating the cmkdb binary: %w", err)
	}
	warmupOps = warmup
	if warmup < 0 {
		warmupOps = max(ops/5, 1)
	}
	if !asJSON {
		progress = stdout
	}
	return bin, warmupOps, progress, nil
}

// printBench prints res as JSON, or in words with text.
func printBench(stdout io.Writer, asJSON bool, res any, text func()) error {
	if asJSON {
		return writeJSON(stdout, res)
	}
	text()
	return nil
}
