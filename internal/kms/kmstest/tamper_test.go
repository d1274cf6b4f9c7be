package kmstest

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
)

var flipped = regexp.MustCompile(`^byte (\d+) bit \d flipped$`)

// flippedBytes returns the positions the tamperings flip a bit of.
func flippedBytes(t *testing.T, ts []tampering) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, tc := range ts {
		if m := flipped.FindStringSubmatch(tc.what); m != nil {
			i, err := strconv.Atoi(m[1])
			if err != nil {
				t.Fatal(err)
			}
			out[i]++
		}
	}
	return out
}

// TestTamperingsSample checks the sampled tamperings of remote providers:
// the same on every run, far fewer than the exhaustive ones, and hitting
// the first and last bytes, the tag region and every eighth of the
// ciphertext.
func TestTamperingsSample(t *testing.T) {
	for _, n := range []int{1, 2, 12, 16, 17, 28, 44, 60, 256, 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ct := Canary(n)
			sampled := tamperings(ct, false)
			again := tamperings(ct, false)
			if len(sampled) != len(again) {
				t.Fatalf("two samples of the same length differ: %d vs %d tamperings", len(sampled), len(again))
			}
			for i := range sampled {
				if sampled[i].what != again[i].what {
					t.Fatalf("two samples differ at %d: %q vs %q", i, sampled[i].what, again[i].what)
				}
			}
			hit := flippedBytes(t, sampled)
			must := []int{0, n - 1}
			if n >= tagLen {
				must = append(must, n-tagLen)
			}
			for _, i := range must {
				if hit[i] == 0 {
					t.Errorf("byte %d of %d not tampered with (sampled %v)", i, n, hit)
				}
			}
			for r := range 8 {
				lo, hi := r*n/8, (r+1)*n/8
				found := hi == lo
				for i := lo; i < hi; i++ {
					found = found || hit[i] > 0
				}
				if !found {
					t.Errorf("no byte of region [%d,%d) of %d tampered with", lo, hi, n)
				}
			}
			for _, tc := range sampled {
				if string(tc.ct) == string(ct) {
					t.Errorf("%s: the copy equals the original", tc.what)
				}
			}
			full := tamperings(ct, true)
			if got := flippedBytes(t, full); len(got) != n {
				t.Errorf("exhaustive: %d bytes flipped, want %d", len(got), n)
			}
			if want := n*8 + n + n + 4; len(full) != want {
				t.Errorf("exhaustive: %d tamperings, want %d", len(full), want)
			}
			if n >= 60 && len(sampled)*4 > len(full) {
				t.Errorf("sampled %d tamperings of %d bytes: not much fewer than the %d exhaustive ones", len(sampled), n, len(full))
			}
		})
	}
}
