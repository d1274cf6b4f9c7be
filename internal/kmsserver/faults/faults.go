// Package faults is the one set of fault switches every faithful KMS server
// in internal/kmsserver injects: throttling, server errors, an unavailable
// service, stalls and denied permissions. Tests and `cmkdb dev kms-server`
// turn them on and off the same way for every provider; each server only
// decides where in its request path it consults them and how its service
// spells the answer (a 429, a ThrottlingException, RESOURCE_EXHAUSTED...).
package faults

import (
	"context"
	"sync"
)

// Failure is a server error every request meets; zero is none. Servers may
// define further values of their own (a gRPC code).
type Failure int

const (
	None Failure = iota
	// Internal is the service's "internal error" (HTTP 500, INTERNAL).
	Internal
	// Unavailable is the service's "try again later" (HTTP 503, UNAVAILABLE).
	Unavailable
)

// Switches holds the faults. The zero value has none; it is safe for
// concurrent use.
type Switches struct {
	mu       sync.Mutex
	throttle bool
	fail     Failure
	// stall is non-nil while requests stall; closing it releases them.
	stall  chan struct{}
	denied map[string]bool
	// closed releases stalled requests for good (the server stops).
	closed    chan struct{}
	closeOnce sync.Once
}

// State is what a request meets at the front of a server.
type State struct {
	Throttled bool
	Failure   Failure
}

// Throttle makes every request answer the service's rate-limit error.
func (s *Switches) Throttle(on bool) { s.mu.Lock(); s.throttle = on; s.mu.Unlock() }

// Fail makes every request fail with f; None stops it.
func (s *Switches) Fail(f Failure) { s.mu.Lock(); s.fail = f; s.mu.Unlock() }

// Stall makes every request hang until Stall(false) releases it (then it is
// answered, if its client still waits) or the server closes.
func (s *Switches) Stall(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on && s.stall == nil {
		s.stall = make(chan struct{})
	}
	if !on && s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
}

// Deny refuses (or with false, grants back) a permission, named as the
// service names it ("kms:Decrypt", "unwrapKey",
// "cloudkms.cryptoKeyVersions.useToDecrypt").
func (s *Switches) Deny(perm string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.denied == nil {
		s.denied = map[string]bool{}
	}
	if on {
		s.denied[perm] = true
	} else {
		delete(s.denied, perm)
	}
}

// Denied reports whether perm is refused.
func (s *Switches) Denied(perm string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.denied[perm]
}

// Reset lifts every fault and releases stalled requests.
func (s *Switches) Reset() {
	s.Stall(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle, s.fail = false, None
	clear(s.denied)
}

// Close releases every stalled request for good; WaitStall answers false
// from now on while a stall is on.
func (s *Switches) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		if s.closed == nil {
			s.closed = make(chan struct{})
		}
		close(s.closed)
		s.mu.Unlock()
	})
}

// WaitStall holds a request while a stall is on. It reports whether the
// request may go on: false when ctx ended or the server closed first.
func (s *Switches) WaitStall(ctx context.Context) bool {
	s.mu.Lock()
	stall := s.stall
	if s.closed == nil {
		s.closed = make(chan struct{})
	}
	closed := s.closed
	s.mu.Unlock()
	if stall == nil {
		return true
	}
	select {
	case <-stall:
		return true
	case <-ctx.Done():
	case <-closed:
	}
	return false
}

// State returns the throttle and failure switches at once.
func (s *Switches) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{Throttled: s.throttle, Failure: s.fail}
}
