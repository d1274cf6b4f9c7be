package bench

import (
	"fmt"
	"io"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func writeLatency(w io.Writer, name string, l Latency) {
	if l.Count == 0 {
		return
	}
	fmt.Fprintf(w, "  %-7s %9d ops   p50 %-11s p95 %-11s p99 %-11s max %s\n", name, l.Count, ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max))
}

// WriteResult prints one run in words.
func WriteResult(w io.Writer, load *LoadResult, r Result) {
	if load != nil {
		fmt.Fprintf(w, "load:      %d records in %s (%.0f records/s)\n", load.Records, load.Elapsed.Round(time.Millisecond), float64(load.Records)/load.Elapsed.Seconds())
	}
	enc := "encrypted"
	if !r.Encrypted {
		enc = "NOT encrypted"
	}
	fmt.Fprintf(w, "workload:  %s (%s keys), %d clients, server %s\n", r.Workload, r.Distribution, r.Clients, enc)
	fmt.Fprintf(w, "run:       %d ops in %s: %.0f ops/s, %d errors\n", r.Ops, r.Elapsed.Round(time.Millisecond), r.OpsPerSec, r.Errors)
	writeLatency(w, "all", r.All)
	writeLatency(w, "read", r.Read)
	writeLatency(w, "update", r.Update)
	fmt.Fprintf(w, "KMS calls: %d during the run (wrap %d, unwrap %d, check %d): %.4f per operation\n",
		r.KMSCalls.total(), r.KMSCalls.Wrap, r.KMSCalls.Unwrap, r.KMSCalls.Check, r.KMSPerOp)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// WriteCompare prints a comparison in words.
func WriteCompare(w io.Writer, r CompareResult) {
	c := r.Config
	fmt.Fprintf(w, "workload %s (%s keys): %d records of %d x %d B, %d clients, %d rounds of %d ops per server, interleaved\n",
		c.Workload, c.Distribution, c.Records, c.Fields, c.ValueSize, c.Clients, r.Rounds, c.Ops)
	for _, s := range []Side{r.Encrypted, r.Plaintext} {
		fmt.Fprintf(w, "%-9s %9.0f ops/s  (%d ops in %s, %d errors; KMS calls %.4f per op)\n",
			s.Name, s.OpsPerSec, s.Ops, s.Elapsed.Round(time.Millisecond), s.Errors, s.KMSPerOp)
		writeLatency(w, "median", s.All)
	}
	fmt.Fprintf(w, "ratio encrypted/plaintext: %.3f (%.1f%%); median of per-round ratios: %.3f\n", r.Ratio, 100*r.Ratio, r.MedianRoundRatio)
}

// WriteReplSet prints a replica-set benchmark in words.
func WriteReplSet(w io.Writer, r ReplSetResult) {
	c := r.Config
	fmt.Fprintf(w, "%d records of %d x %d B, %d clients, w: %q; %d rounds of %d ops per server and workload, in rotating order\n",
		c.Records, c.Fields, c.ValueSize, c.Clients, r.WriteConcern, r.Rounds, c.Ops)
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "workload %s (%s keys)\n", wl.Workload, c.Distribution)
		for _, s := range []struct {
			label string
			side  Side
		}{
			{fmt.Sprintf("encrypted, %d members", r.Members), wl.Encrypted},
			{fmt.Sprintf("plaintext, %d members", r.Members), wl.Plaintext},
			{"encrypted, one node", wl.Single},
		} {
			fmt.Fprintf(w, "  %-22s %9.0f ops/s  (%d ops in %s, %d errors; KMS calls %.4f per op)\n",
				s.label, s.side.OpsPerSec, s.side.Ops, s.side.Elapsed.Round(time.Millisecond), s.side.Errors, s.side.KMSPerOp)
			writeLatency(w, "median", s.side.All)
			for _, r := range s.side.Rounds {
				if r.FirstError != "" {
					fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
					break
				}
			}
		}
		fmt.Fprintf(w, "  ratio encrypted/plaintext (%d members): %.3f; median of per-round ratios: %.3f\n", r.Members, wl.Ratio, wl.MedianRoundRatio)
		fmt.Fprintf(w, "  ratio %d members/one node (encrypted):   %.3f; median of per-round ratios: %.3f\n", r.Members, wl.SetVsSingle, wl.MedianRoundSetVsSingle)
	}
}
