package storage

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// The benchmarks compare the same engine with encryption on and off, in one
// run, so benchstat can put the two side by side:
//
//	go test -run=^$ -bench=. -count=10 ./internal/storage | tee /tmp/b.txt
//	benchstat -col /mode /tmp/b.txt

var modes = []struct {
	name      string
	plaintext bool
}{{"plain", true}, {"encrypted", false}}

func benchNode(b *testing.B, plaintext bool, cache int64) (*Engine, *keys.Keystore) {
	b.Helper()
	dir := b.TempDir()
	cmkPath := filepath.Join(dir, "cmk.json")
	if _, err := local.Create(cmkPath); err != nil {
		b.Fatal(err)
	}
	cmk, _ := local.Open(cmkPath)
	ks, err := keys.Create(context.Background(), filepath.Join(dir, "node"), cmk)
	if err != nil {
		b.Fatal(err)
	}
	eng, err := Open(Options{Dir: filepath.Join(dir, "node", "db"), Plaintext: plaintext, CacheSize: cache}, ks)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close(); ks.Close() })
	return eng, ks
}

func benchKey(i int) []byte { return []byte(fmt.Sprintf("user%012d", i)) }

func benchValue(r *mrand.Rand, n int) []byte {
	v := make([]byte, n)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(v[i:], r.Uint64())
	}
	return v
}

// BenchmarkWrite measures write throughput: batches of 100 1-KiB values,
// committed without sync (the sync cost is the disk's, not the cipher's),
// through memtable flushes and compactions.
func BenchmarkWrite(b *testing.B) {
	for _, m := range modes {
		b.Run("mode="+m.name, func(b *testing.B) {
			eng, _ := benchNode(b, m.plaintext, 64<<20)
			db, err := eng.CreateDatabase("bench")
			if err != nil {
				b.Fatal(err)
			}
			r := mrand.New(mrand.NewPCG(1, 1))
			val := benchValue(r, 1024)
			b.SetBytes(100 * 1024)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				batch := db.NewBatch()
				for j := 0; j < 100; j++ {
					batch.Set(benchKey(r.IntN(1<<30)), val, nil)
				}
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRead measures random point reads of 1 KiB values in two
// regimes: a working set that fits the block cache (64 MiB of data, the
// default 128 MiB cache: reads touch no file), and one eight times the
// cache (256 MiB of data, 32 MiB cache: most reads miss and decrypt a block
// from the file, whose ciphertext the OS page cache holds).
func BenchmarkRead(b *testing.B) {
	regimes := []struct {
		name    string
		records int
		cache   int64
	}{
		{"fits-cache", 64 << 10, 128 << 20},
		{"8x-cache", 256 << 10, 32 << 20},
	}
	for _, rg := range regimes {
		for _, m := range modes {
			b.Run("working="+rg.name+"/mode="+m.name, func(b *testing.B) {
				n := rg.records
				eng, _ := benchNode(b, m.plaintext, rg.cache)
				db, err := eng.CreateDatabase("bench")
				if err != nil {
					b.Fatal(err)
				}
				r := mrand.New(mrand.NewPCG(2, 2))
				val := benchValue(r, 1024)
				for i := 0; i < n; i += 1000 {
					batch := db.NewBatch()
					for j := i; j < min(i+1000, n); j++ {
						batch.Set(benchKey(j), val, nil)
					}
					batch.Commit(pebble.NoSync)
				}
				db.Flush()
				db.Compact(context.Background(), benchKey(0), benchKey(n), true)
				// Warm the block cache (and the OS page cache) first.
				for i := 0; i < n; i++ {
					if _, closer, err := db.Get(benchKey(i)); err == nil {
						closer.Close()
					}
				}
				b.SetBytes(1024)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					v, closer, err := db.Get(benchKey(r.IntN(n)))
					if err != nil || len(v) != 1024 {
						b.Fatalf("get: %v", err)
					}
					closer.Close()
				}
			})
		}
	}
}

// BenchmarkScan measures a full sequential scan of 64 MiB.
func BenchmarkScan(b *testing.B) {
	const n = 64 << 10
	for _, m := range modes {
		b.Run("mode="+m.name, func(b *testing.B) {
			eng, _ := benchNode(b, m.plaintext, 8<<20)
			db, _ := eng.CreateDatabase("bench")
			r := mrand.New(mrand.NewPCG(3, 3))
			val := benchValue(r, 1024)
			for i := 0; i < n; i += 1000 {
				batch := db.NewBatch()
				for j := i; j < min(i+1000, n); j++ {
					batch.Set(benchKey(j), val, nil)
				}
				batch.Commit(pebble.NoSync)
			}
			db.Flush()
			db.Compact(context.Background(), benchKey(0), benchKey(n), true)
			b.SetBytes(int64(n) * 1024)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				it, _ := db.NewIter(nil)
				count := 0
				for it.First(); it.Valid(); it.Next() {
					count++
				}
				it.Close()
				if count != n {
					b.Fatalf("scanned %d", count)
				}
			}
		})
	}
}

// BenchmarkAESGCM is the physical limit: raw AES-256-GCM sealing and
// opening on this CPU, at encfs's chunk size and larger.
func BenchmarkAESGCM(b *testing.B) {
	key := make([]byte, 32)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	for _, size := range []int{4068, 64 << 10} {
		pt := make([]byte, size)
		ct := aead.Seal(nil, nonce, pt, nil)
		b.Run("op=seal/size="+strconv.Itoa(size), func(b *testing.B) {
			out := make([]byte, 0, size+16)
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				aead.Seal(out[:0], nonce, pt, nil)
			}
		})
		b.Run("op=open/size="+strconv.Itoa(size), func(b *testing.B) {
			out := make([]byte, 0, size)
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				if _, err := aead.Open(out[:0], nonce, ct, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRotateMasterKey measures node master-key rotation next to a
// database holding a given amount of data. Rotation re-wraps database keys
// only, so the time must not depend on the data size. The default size is
// 100 MiB; CMKDB_BENCH_DATA_MB adds a larger one (e.g. 10240 for 10 GiB).
func BenchmarkRotateMasterKey(b *testing.B) {
	sizes := []int{100}
	if s, err := strconv.Atoi(os.Getenv("CMKDB_BENCH_DATA_MB")); err == nil && s > 0 {
		sizes = append(sizes, s)
	}
	for _, mb := range sizes {
		b.Run(fmt.Sprintf("data=%dMB", mb), func(b *testing.B) {
			eng, ks := benchNode(b, false, 64<<20)
			for d := 0; d < 10; d++ {
				eng.CreateDatabase("db" + strconv.Itoa(d))
			}
			db, _ := eng.Database("db0")
			r := mrand.New(mrand.NewPCG(4, 4))
			val := benchValue(r, 4096)
			start := time.Now()
			for i := 0; i < mb*256; i += 256 {
				batch := db.NewBatch()
				for j := i; j < i+256; j++ {
					batch.Set(benchKey(j), val, nil)
				}
				batch.Commit(pebble.NoSync)
			}
			db.Flush()
			b.Logf("loaded %d MiB in %v; %d MiB on disk", mb, time.Since(start), dirSize(b, eng.opts.Dir)>>20)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := ks.RotateMasterKey(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func dirSize(b *testing.B, dir string) int64 {
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}
