package repl

import (
	"io"
	"sync"
	"time"
)

// SyncProgress is a member's initial sync (or any snapshot it installs),
// as replSetGetStatus's initialSyncStatus reports it.
type SyncProgress struct {
	// Active is true from the first byte of the snapshot received until
	// it is restored into the member's databases.
	Active bool
	// BytesCopied of BytesTotal is the snapshot stream received over the
	// members' mutual TLS transport; DocumentsCopied counts the records
	// (documents and index entries) restored under this member's keys.
	BytesCopied     int64
	BytesTotal      int64
	DocumentsCopied int64
	Started         time.Time
	Finished        time.Time
}

// Remaining is the estimated time left, from the rate so far (0 when
// unknown or done).
func (p SyncProgress) Remaining(now time.Time) time.Duration {
	if !p.Active || p.BytesCopied == 0 || p.BytesTotal <= p.BytesCopied {
		return 0
	}
	el := now.Sub(p.Started)
	return time.Duration(float64(el) * float64(p.BytesTotal-p.BytesCopied) / float64(p.BytesCopied))
}

// syncTracker holds a member's sync progress. Invariant: a snapshot's
// counters are reset when its first byte arrives, so they never mix two
// snapshots.
type syncTracker struct {
	mu sync.Mutex
	p  SyncProgress
}

func (s *syncTracker) get() (SyncProgress, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p, !s.p.Started.IsZero()
}

// receiving starts a snapshot's progress and counts r's bytes.
func (s *syncTracker) receiving(r io.Reader, total int64) io.Reader {
	s.mu.Lock()
	s.p = SyncProgress{Active: true, BytesTotal: total, Started: time.Now()}
	s.mu.Unlock()
	return &countingReader{r: r, s: s}
}

func (s *syncTracker) document() {
	s.mu.Lock()
	s.p.DocumentsCopied++
	s.mu.Unlock()
}

func (s *syncTracker) finished() {
	s.mu.Lock()
	s.p.Active, s.p.Finished = false, time.Now()
	if s.p.Started.IsZero() {
		s.p.Started = s.p.Finished
	}
	s.mu.Unlock()
}

type countingReader struct {
	r io.Reader
	s *syncTracker
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.s.mu.Lock()
		c.s.p.BytesCopied += int64(n)
		c.s.mu.Unlock()
	}
	return n, err
}
