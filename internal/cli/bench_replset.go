package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cmkdb/cmkdb/internal/bench"
)

// newBenchReplSetCmd is `cmkdb bench replset`: workloads A and C with
// w: "majority" against an encrypted replica set, a plaintext one and an
// encrypted single node, in one run.
func newBenchReplSetCmd(stdout io.Writer) *cobra.Command {
	rc := bench.ReplSetConfig{Config: bench.DefaultConfig(), Members: 3, Rounds: 4}
	rc.Ops = 10000
	var workloads string
	var asJSON bool
	var minRatio float64
	var warmup int64 = -1
	cmd := &cobra.Command{
		Use:   "replset",
		Short: "Compare an encrypted replica set with a plaintext one and with one node, writes with w: \"majority\"",
		Long: "Starts three `cmkdb up` servers from this binary, each on its own temporary directory: an\n" +
			"encrypted --members-member replica set (every member its own process, as `up --nodes` runs\n" +
			"it), the same set with --insecure-no-encryption, and an encrypted single node. Loads each\n" +
			"once, then for every workload of --workloads runs --rounds rounds of --ops operations on\n" +
			"each, in an order that rotates every round, with write concern \"majority\". Prints, per\n" +
			"workload, the encrypted/plaintext ratio of the sets and the set/one-node ratio (what\n" +
			"majority writes cost). With --min-ratio it fails when an encrypted/plaintext ratio is lower.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if rc.Binary, rc.WarmupOps, rc.Progress, err = childRunSetup(rc.Ops, warmup, asJSON, stdout); err != nil {
				return err
			}
			rc.Workloads = strings.Split(workloads, ",")
			res, err := bench.ReplSet(cmd.Context(), rc)
			if err != nil {
				return err
			}
			if err := printBench(stdout, asJSON, res, func() { bench.WriteReplSet(stdout, res) }); err != nil {
				return err
			}
			for _, w := range res.Workloads {
				if n := w.Encrypted.Errors + w.Plaintext.Errors + w.Single.Errors; n > 0 {
					return fmt.Errorf("workload %s: %d operations failed", w.Workload, n)
				}
				if w.Ratio < minRatio {
					return fmt.Errorf("workload %s: encrypted/plaintext throughput ratio %.3f is below --min-ratio %.3f", w.Workload, w.Ratio, minRatio)
				}
			}
			return nil
		},
	}
	registerWorkloadFlags(cmd.Flags(), &rc.Config)
	// --workload names one; this mode runs several on the same records.
	_ = cmd.Flags().MarkHidden("workload")
	cmd.Flags().StringVar(&workloads, "workloads", "a,c", "YCSB workloads to run, comma-separated, in order")
	cmd.Flags().IntVar(&rc.Members, "members", rc.Members, "replica set members (3, 5 or 7)")
	cmd.Flags().IntVar(&rc.Rounds, "rounds", rc.Rounds, "measured rounds per server and workload, in rotating order")
	cmd.Flags().Int64Var(&warmup, "warmup-ops", warmup, "operations per server before each workload's rounds (-1: --ops/5)")
	cmd.Flags().BoolVar(&rc.KeepDirs, "keep-dirs", false, "keep the servers' data directories")
	cmd.Flags().Float64Var(&minRatio, "min-ratio", 0, "fail when an encrypted/plaintext throughput ratio is below this (e.g. 0.95)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
