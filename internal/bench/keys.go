package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// keyChooser picks the index of the record an operation touches.
type keyChooser interface {
	next(r *rand.Rand) int64
}

type uniform struct{ n int64 }

func (u uniform) next(r *rand.Rand) int64 { return r.Int64N(u.n) }

// zipfian is YCSB's ZipfianGenerator (Gray et al., "Quickly generating
// billion-record synthetic databases", SIGMOD 1994): item 0 is the most
// popular, with skew theta (YCSB's default 0.99). math/rand's Zipf needs
// s > 1 and cannot express it.
type zipfian struct {
	n                        int64
	theta, alpha, zetan, eta float64
	zeta2theta, halfPowTheta float64
}

func newZipfian(n int64, theta float64) *zipfian {
	z := &zipfian{n: n, theta: theta}
	z.zetan = zeta(n, theta)
	z.zeta2theta = zeta(2, theta)
	z.alpha = 1 / (1 - theta)
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - z.zeta2theta/z.zetan)
	z.halfPowTheta = 1 + math.Pow(0.5, theta)
	return z
}

func zeta(n int64, theta float64) float64 {
	var sum float64
	for i := int64(1); i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

func (z *zipfian) next(r *rand.Rand) int64 {
	u := r.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < z.halfPowTheta {
		return 1
	}
	v := int64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(v, z.n-1)
}

// scrambledZipfian spreads the zipfian ranks over the key space with a
// hash, as YCSB's ScrambledZipfianGenerator does, so the hot records are not
// all neighbours (which would favour one storage block).
type scrambledZipfian struct{ z *zipfian }

func (s scrambledZipfian) next(r *rand.Rand) int64 {
	return int64(fnv64(uint64(s.z.next(r))) % uint64(s.z.n))
}

// fnv64 is FNV-1a over the 8 bytes of v, as YCSB's Utils.fnvhash64.
func fnv64(v uint64) uint64 {
	h := uint64(0xCBF29CE484222325)
	for range 8 {
		h ^= v & 0xff
		h *= 1099511628211
		v >>= 8
	}
	return h
}

func newChooser(dist string, n int64) (keyChooser, error) {
	switch dist {
	case "uniform":
		return uniform{n: n}, nil
	case "zipfian", "":
		return scrambledZipfian{z: newZipfian(n, 0.99)}, nil
	}
	return nil, fmt.Errorf("unknown distribution %q (want zipfian or uniform)", dist)
}

// keyName is the _id of record i: YCSB's "user" prefix, fixed width so
// keys sort like their numbers.
func keyName(i int64) string { return fmt.Sprintf("user%012d", i) }
