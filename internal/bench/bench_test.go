package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestZipfianIsSkewedAndInRange(t *testing.T) {
	const n = 1000
	z := newZipfian(n, 0.99)
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, n)
	const draws = 200000
	for range draws {
		v := z.next(r)
		if v < 0 || v >= n {
			t.Fatalf("zipfian drew %d, outside [0, %d)", v, n)
		}
		counts[v]++
	}
	// Item 0 gets about 1/zeta(n) of the draws (~13% for n=1000, theta .99);
	// the top 10% of items take most of them.
	if p0 := float64(counts[0]) / draws; p0 < 0.08 || p0 > 0.20 {
		t.Errorf("item 0 drawn %.3f of the time, want about 0.13", p0)
	}
	top := 0
	for _, c := range counts[:n/10] {
		top += c
	}
	if frac := float64(top) / draws; frac < 0.5 {
		t.Errorf("top 10%% of items drawn %.2f of the time, want a majority", frac)
	}
	if counts[0] <= counts[1] || counts[1] <= counts[10] || counts[10] <= counts[500] {
		t.Errorf("popularity not decreasing: %d %d %d %d", counts[0], counts[1], counts[10], counts[500])
	}
}

func TestScrambledAndUniformInRange(t *testing.T) {
	for _, dist := range []string{"zipfian", "uniform"} {
		for _, n := range []int64{1, 2, 7, 1000} {
			ch, err := newChooser(dist, n)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(3, 4))
			seen := map[int64]bool{}
			for range 10000 {
				v := ch.next(r)
				if v < 0 || v >= n {
					t.Fatalf("%s(%d) drew %d", dist, n, v)
				}
				seen[v] = true
			}
			if n <= 7 && int64(len(seen)) < n && dist == "uniform" {
				t.Errorf("uniform(%d) drew only %d distinct keys", n, len(seen))
			}
		}
	}
	if _, err := newChooser("latest", 10); err == nil {
		t.Error("an unknown distribution was accepted")
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := summarize(ds)
	if l.Count != 100 || l.P50 != 51*time.Millisecond || l.P95 != 95*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Errorf("summarize: %+v", l)
	}
	if (summarize(nil) != Latency{}) {
		t.Error("summarize(nil) is not zero")
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mut := range map[string]func(*Config){
		"workload":     func(c *Config) { c.Workload = "b" },
		"distribution": func(c *Config) { c.Distribution = "hotspot" },
		"records":      func(c *Config) { c.Records = 0 },
		"ops":          func(c *Config) { c.Ops = 0 },
		"clients":      func(c *Config) { c.Clients = 0 },
		"fields":       func(c *Config) { c.Fields = 0 },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("invalid %s accepted", name)
		}
	}
}

func TestKeyNamesSortLikeNumbers(t *testing.T) {
	if keyName(9) >= keyName(10) || keyName(999999) >= keyName(1000000) {
		t.Error("key names do not sort like their numbers")
	}
}
