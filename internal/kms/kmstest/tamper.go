package kmstest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
)

// InProcessHarness is implemented by harnesses whose provider unwraps in
// this process (the local key file): an unwrap costs microseconds, so the
// suite tampers with every bit of a ciphertext. A remote provider (every
// other harness) pays a network round trip per unwrap, so the suite tries a
// fixed sample that still covers every region of the ciphertext; the
// exhaustive run of the in-process provider and of the in-memory provider
// of the suite's own tests keeps the tampering checks themselves honest.
type InProcessHarness interface {
	Harness
	// InProcess reports whether unwraps are in-process calls.
	InProcess() bool
}

// ExhaustiveEnv set to 1 makes the suite tamper exhaustively with every
// provider (a thorough run, slow against the remote test servers).
const ExhaustiveEnv = "CMKDB_KMSTEST_EXHAUSTIVE"

// tamperSampleSeed fixes the sample: the same positions are tried on every
// run, so a failure reproduces.
const tamperSampleSeed = 0x636d6b6462

// tagLen is the authentication tag of the AEADs KMSs use (AES-GCM and
// friends): the tail of a ciphertext that the sample always covers.
const tagLen = 16

// tampering is one altered copy of a ciphertext.
type tampering struct {
	what string
	ct   []byte
}

// thorough reports whether the suite runs its costly checks in full (every
// tampering, many concurrent operations): for in-process providers, or for
// all with CMKDB_KMSTEST_EXHAUSTIVE=1.
func (s *suite) thorough() bool {
	if os.Getenv(ExhaustiveEnv) == "1" {
		return true
	}
	h, ok := s.h.(InProcessHarness)
	return ok && h.InProcess()
}

// tamperings lists the altered copies of ct the suite unwraps: with
// exhaustive, every single-bit flip, every inverted byte and every
// truncation; otherwise a sample of them (see samplePositions), plus in
// both cases the empty, extended and doubled ciphertexts.
func tamperings(ct []byte, exhaustive bool) []tampering {
	var out []tampering
	add := func(what string, c []byte) { out = append(out, tampering{what, c}) }
	rng := rand.New(rand.NewPCG(tamperSampleSeed, uint64(len(ct))))
	positions := samplePositions(len(ct), rng)
	if exhaustive {
		positions = make([]int, len(ct))
		for i := range positions {
			positions[i] = i
		}
	}
	for _, i := range positions {
		bits := []int{rng.IntN(8)}
		if exhaustive {
			bits = []int{0, 1, 2, 3, 4, 5, 6, 7}
		}
		for _, bit := range bits {
			c := bytes.Clone(ct)
			c[i] ^= 1 << bit
			add(fmt.Sprintf("byte %d bit %d flipped", i, bit), c)
		}
		c := bytes.Clone(ct)
		c[i] = ^c[i]
		add(fmt.Sprintf("byte %d inverted", i), c)
	}
	lengths := sampleLengths(len(ct), rng)
	if exhaustive {
		lengths = make([]int, len(ct))
		for n := range lengths {
			lengths[n] = n
		}
	}
	for _, n := range lengths {
		add(fmt.Sprintf("truncated to %d", n), bytes.Clone(ct[:n]))
	}
	add("nil", nil)
	add("extended by 1", append(bytes.Clone(ct), 0))
	add("extended by 16", append(bytes.Clone(ct), make([]byte, 16)...))
	add("doubled", append(bytes.Clone(ct), ct...))
	return out
}

// samplePositions picks the byte positions a sampled run alters: the first
// and last bytes (where length prefixes, version bytes and tag ends are),
// the first bytes of the tag region, and one seeded position in each of
// eight equal regions, so a header, a nonce, a body and a tag are all hit
// whatever the provider's layout. Sorted, without duplicates.
func samplePositions(n int, rng *rand.Rand) []int {
	if n == 0 {
		return nil
	}
	var ps []int
	for _, p := range []int{0, 1, 2, 3, n - 1, n - 2, n - 3, n - 4, n - tagLen, n - tagLen + 1} {
		if p >= 0 && p < n {
			ps = append(ps, p)
		}
	}
	const regions = 8
	for r := range regions {
		lo, hi := r*n/regions, (r+1)*n/regions
		if hi > lo {
			ps = append(ps, lo+rng.IntN(hi-lo))
		}
	}
	slices.Sort(ps)
	return slices.Compact(ps)
}

// sampleLengths picks the truncations a sampled run tries: nothing left,
// one byte, the tag cut off or cut into, one byte short, and a seeded
// length in between.
func sampleLengths(n int, rng *rand.Rand) []int {
	if n == 0 {
		return nil
	}
	ls := []int{0, n - 1}
	for _, l := range []int{1, n / 2, n - tagLen, n - tagLen + 1, n - tagLen - 1} {
		if l > 0 && l < n {
			ls = append(ls, l)
		}
	}
	ls = append(ls, rng.IntN(n))
	slices.Sort(ls)
	return slices.Compact(ls)
}
