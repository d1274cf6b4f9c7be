package kmstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/testenv"
)

// The suite's deadlines, scaled for the machine by testenv.Timeout
// (CMKDB_TEST_TIMEOUT_SCALE, the race detector).
const (
	// opTimeout bounds every call the suite expects to succeed or fail on
	// its own, so a hung provider fails the test instead of the whole run.
	opTimeout = 30 * time.Second
	// hangDeadline is the deadline of calls made while the harness
	// simulates a KMS that does not answer.
	hangDeadline = 200 * time.Millisecond
	// prompt is how long a call with a dead context may take: it should do
	// no work at all, the margin is for loaded CI machines.
	prompt = 5 * time.Second
)

// Run runs the conformance suite against the provider h builds.
func Run(t *testing.T, h Harness) {
	s := &suite{h: h}
	t.Run("RoundTrip", s.roundTrip)
	t.Run("EmptyAADIsNilAAD", s.emptyAAD)
	t.Run("WrappedSurvivesJSON", s.persisted)
	t.Run("WrongAAD", s.wrongAAD)
	t.Run("TamperedCiphertext", s.tampered)
	t.Run("TamperedKeyRef", s.tamperedRef)
	t.Run("OtherKeyCannotUnwrap", s.otherKey)
	t.Run("Randomized", s.randomized)
	t.Run("KeyRef", s.keyRef)
	t.Run("States", s.states)
	t.Run("Rotation", s.rotation)
	t.Run("DeadContext", s.deadContext)
	t.Run("Concurrent", s.concurrent)
}

type suite struct{ h Harness }

// ctxFor returns a context with the scaled deadline d, cancelled when the
// test ends.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	return testenv.Context(t, d)
}

func opCtx(t testing.TB) context.Context { return ctxFor(t, opTimeout) }

// secrets is what must never appear in errors: the caller's plaintexts plus
// the CMK material when the harness can see it.
func (s *suite) secrets(t testing.TB, plaintexts ...[]byte) [][]byte {
	out := append([][]byte(nil), plaintexts...)
	if sh, ok := s.h.(SecretHarness); ok {
		out = append(out, sh.Secrets(t)...)
	}
	return out
}

func (s *suite) hides(t testing.TB, where string, err error, plaintexts ...[]byte) {
	t.Helper()
	AssertErrorHidesSecrets(t, where, err, s.secrets(t, plaintexts...)...)
}

func mustWrap(t testing.TB, p kms.Provider, pt, aad []byte) kms.Wrapped {
	t.Helper()
	w, err := p.Wrap(opCtx(t), pt, aad)
	if err != nil {
		t.Fatalf("Wrap(%d bytes, aad %d bytes): %v", len(pt), len(aad), err)
	}
	return w
}

func mustUnwrap(t testing.TB, p kms.Provider, w kms.Wrapped, aad, want []byte) {
	t.Helper()
	got, err := p.Unwrap(opCtx(t), w, aad)
	if err != nil {
		t.Fatalf("Unwrap(%s): %v", w.Key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap(%s) returned different bytes than were wrapped", w.Key)
	}
}

func mustBeValid(t testing.TB, p kms.Provider) kms.Status {
	t.Helper()
	st := p.Check(opCtx(t))
	if st.Validity != kms.Valid || st.Reason != "" {
		t.Fatalf("Check = %v %s (%s), want VALID", st.Validity, st.Reason, st.Detail)
	}
	if st.Err() != nil {
		t.Fatalf("valid Status.Err() = %v", st.Err())
	}
	if st.CheckedAt.IsZero() {
		t.Errorf("Check did not set CheckedAt")
	}
	return st
}

func (s *suite) roundTrip(t *testing.T) {
	p := s.h.Provider(t)
	aads := []struct {
		name string
		aad  []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"text", []byte("cluster/c1/node/n1")},
		{"binary", []byte{0, 1, 0xff, 0, 0x80}},
		{"1KiB", Canary(1024)},
	}
	for _, size := range []int{16, 32, 64} {
		for _, a := range aads {
			t.Run(fmt.Sprintf("%dB/aad=%s", size, a.name), func(t *testing.T) {
				pt := Canary(size)
				ptCopy, aadCopy := bytes.Clone(pt), bytes.Clone(a.aad)
				w := mustWrap(t, p, pt, a.aad)
				if !bytes.Equal(pt, ptCopy) || !bytes.Equal(a.aad, aadCopy) {
					t.Fatal("Wrap modified the caller's plaintext or aad")
				}
				if bytes.Contains(w.Ciphertext, pt) {
					t.Fatal("ciphertext contains the plaintext")
				}
				if w.Key.Provider == "" || w.Key.KeyID == "" {
					t.Fatalf("Wrapped.Key = %+v: provider and key id are required", w.Key)
				}
				got, err := p.Unwrap(opCtx(t), w, a.aad)
				if err != nil {
					t.Fatalf("Unwrap: %v", err)
				}
				if !bytes.Equal(got, pt) {
					t.Fatal("Unwrap returned different bytes than were wrapped")
				}
				// The caller zeroes keys it drops; that must not reach any
				// state the provider keeps.
				clear(got)
				mustUnwrap(t, p, w, a.aad, pt)
				// Nor may the provider keep a reference to the caller's
				// plaintext.
				clear(pt)
				mustUnwrap(t, p, w, a.aad, ptCopy)
			})
		}
	}
}

// Go code does not distinguish a nil slice from an empty one; a provider
// that did would make unwrapping depend on how a record was decoded.
func (s *suite) emptyAAD(t *testing.T) {
	p := s.h.Provider(t)
	pt := Canary(32)
	mustUnwrap(t, p, mustWrap(t, p, pt, nil), []byte{}, pt)
	mustUnwrap(t, p, mustWrap(t, p, pt, []byte{}), nil, pt)
}

// The keystore persists Wrapped as JSON.
func (s *suite) persisted(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("db/orders")
	w := mustWrap(t, p, pt, aad)
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	var back kms.Wrapped
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	mustUnwrap(t, p, back, aad, pt)
}

// expectDecrypt asserts the outcome of unwrapping something altered: no
// data, an error matching kms.ErrDecrypt, and not a verdict on the key,
// which is fine.
func (s *suite) expectDecrypt(t testing.TB, what string, out []byte, err error, pt []byte) {
	t.Helper()
	if len(out) != 0 {
		t.Errorf("%s: Unwrap returned %d bytes", what, len(out))
	}
	if err == nil {
		t.Errorf("%s: Unwrap succeeded", what)
		return
	}
	if !errors.Is(err, kms.ErrDecrypt) {
		t.Errorf("%s: error %v does not match kms.ErrDecrypt", what, err)
	}
	if errors.Is(err, kms.ErrInvalid) {
		t.Errorf("%s: error %v says the key is invalid; a bad ciphertext or aad says nothing about the key", what, err)
	}
	s.hides(t, what, err, pt)
}

func (s *suite) wrongAAD(t *testing.T) {
	p := s.h.Provider(t)
	pt := Canary(32)
	base := []byte("cluster/c1/node/n1")
	w := mustWrap(t, p, pt, base)
	flipped := bytes.Clone(base)
	flipped[3] ^= 0x01
	cases := []struct {
		name string
		aad  []byte
	}{
		{"nil", nil},
		{"prefix", base[:len(base)-1]},
		{"extended", append(bytes.Clone(base), 'x')},
		{"bitflip", flipped},
		{"other", []byte("cluster/c1/node/n2")},
	}
	for _, c := range cases {
		out, err := p.Unwrap(opCtx(t), w, c.aad)
		s.expectDecrypt(t, "aad "+c.name, out, err, pt)
	}
	// And the other way round: bound to nothing, asked with something.
	w0 := mustWrap(t, p, pt, nil)
	out, err := p.Unwrap(opCtx(t), w0, []byte{0})
	s.expectDecrypt(t, "aad added", out, err, pt)
}

func (s *suite) tampered(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("db/orders")
	w := mustWrap(t, p, pt, aad)
	exhaustive := s.thorough()
	ts := tamperings(w.Ciphertext, exhaustive)
	for _, tc := range ts {
		tw := w
		tw.Ciphertext = tc.ct
		out, err := p.Unwrap(opCtx(t), tw, aad)
		s.expectDecrypt(t, tc.what, out, err, pt)
	}
	t.Logf("%d tampered copies of a %d-byte ciphertext unwrapped (exhaustive: %v)", len(ts), len(w.Ciphertext), exhaustive)
	// The original still unwraps: tampering with copies changed nothing.
	mustUnwrap(t, p, w, aad, pt)
}

// A record whose key reference was altered may fail for any reason, but it
// must never yield data other than what was wrapped.
func (s *suite) tamperedRef(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("db/orders")
	w := mustWrap(t, p, pt, aad)
	refs := map[string]kms.KeyRef{
		"provider": {Provider: w.Key.Provider + "x", KeyID: w.Key.KeyID, KeyVersion: w.Key.KeyVersion},
		"keyId":    {Provider: w.Key.Provider, KeyID: w.Key.KeyID + "x", KeyVersion: w.Key.KeyVersion},
		"empty":    {},
	}
	if w.Key.KeyVersion != "" {
		refs["version"] = kms.KeyRef{Provider: w.Key.Provider, KeyID: w.Key.KeyID, KeyVersion: w.Key.KeyVersion + "0"}
		refs["no version"] = kms.KeyRef{Provider: w.Key.Provider, KeyID: w.Key.KeyID}
	}
	for name, ref := range refs {
		tw := kms.Wrapped{Key: ref, Ciphertext: w.Ciphertext}
		out, err := p.Unwrap(opCtx(t), tw, aad)
		if err == nil && !bytes.Equal(out, pt) {
			t.Errorf("altered %s: Unwrap returned data that was never wrapped", name)
		}
		if err != nil && len(out) != 0 {
			t.Errorf("altered %s: Unwrap failed but returned %d bytes", name, len(out))
		}
		s.hides(t, "altered "+name, err, pt)
	}
}

// A node configured with one CMK must not unwrap what another CMK wrapped:
// the key reference in the record is what the customer revokes.
func (s *suite) otherKey(t *testing.T) {
	p1 := s.h.Provider(t)
	pt, aad := Canary(32), []byte("db/orders")
	w := mustWrap(t, p1, pt, aad)
	p2 := s.h.Provider(t)
	out, err := p2.Unwrap(opCtx(t), w, aad)
	if err == nil || len(out) != 0 {
		t.Fatalf("a provider for another key unwrapped the record (err=%v, %d bytes)", err, len(out))
	}
	s.hides(t, "other key", err, pt)
}

func (s *suite) randomized(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("db/orders")
	w1, w2 := mustWrap(t, p, pt, aad), mustWrap(t, p, pt, aad)
	if bytes.Equal(w1.Ciphertext, w2.Ciphertext) {
		t.Fatal("wrapping the same key twice gave the same ciphertext: wrapping is not randomized")
	}
	mustUnwrap(t, p, w1, aad, pt)
	mustUnwrap(t, p, w2, aad, pt)
}

func (s *suite) keyRef(t *testing.T) {
	p := s.h.Provider(t)
	st := mustBeValid(t, p)
	if st.Key.Provider == "" || st.Key.KeyID == "" {
		t.Fatalf("Check reports Key %+v: provider and key id are required", st.Key)
	}
	w := mustWrap(t, p, Canary(32), nil)
	if w.Key != st.Key {
		t.Fatalf("Wrap used %s but Check reports %s as the current key", w.Key, st.Key)
	}
}

// states puts the key in each state and back: the lifecycle depends on the
// classification, and on nothing being lost on the way back.
func (s *suite) states(t *testing.T) {
	for _, st := range States() {
		t.Run(st.String(), func(t *testing.T) { s.state(t, st) })
	}
}

func (s *suite) state(t *testing.T, state State) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("node/n1")
	w := mustWrap(t, p, pt, aad)
	if !s.h.SetState(t, state) {
		t.Skipf("the harness cannot put its key in state %s (%s)", state, state.Reason())
	}
	d := opTimeout
	if state == Timeout {
		d = hangDeadline
	}

	start := time.Now()
	got := p.Check(ctxFor(t, d))
	if el := time.Since(start); el > testenv.Timeout(d+prompt) {
		t.Errorf("Check took %v with a %v deadline", el, d)
	}
	if got.Validity != state.Validity() || got.Reason != state.Reason() {
		t.Errorf("Check = %v %s, want %v %s (detail: %s)", got.Validity, got.Reason, state.Validity(), state.Reason(), got.Detail)
	}
	if got.Detail == "" {
		t.Errorf("Check gave no Detail for %s", state)
	}
	AssertNoSecret(t, "Status.Detail", got.Detail, s.secrets(t, pt)...)
	s.classified(t, "Status.Err()", got.Err(), state, pt)

	newPT := Canary(32)
	_, err := p.Wrap(ctxFor(t, d), newPT, aad)
	s.classified(t, "Wrap", err, state, newPT)
	out, err := p.Unwrap(ctxFor(t, d), w, aad)
	if len(out) != 0 {
		t.Errorf("Unwrap in state %s returned %d bytes", state, len(out))
	}
	s.classified(t, "Unwrap", err, state, pt)

	if !s.h.SetState(t, Enabled) {
		t.Fatalf("the harness cannot bring its key back from %s to Enabled", state)
	}
	mustBeValid(t, p)
	mustUnwrap(t, p, w, aad, pt)
	mustUnwrap(t, p, mustWrap(t, p, newPT, aad), aad, newPT)
}

func (s *suite) classified(t testing.TB, op string, err error, state State, pt []byte) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded in state %s", op, state)
		return
	}
	want, class := state.Reason(), ClassSentinel(state.Validity())
	if !errors.Is(err, class) {
		t.Errorf("%s error %q does not match %v", op, err, class)
	}
	if !errors.Is(err, Sentinel(want)) {
		t.Errorf("%s error %q does not match the %s sentinel", op, err, want)
	}
	if got := kms.ReasonOf(err); got != want {
		t.Errorf("kms.ReasonOf(%s error) = %s, want %s", op, got, want)
	}
	other := kms.ErrInvalid
	if class == kms.ErrInvalid {
		other = kms.ErrUnreachable
	}
	if errors.Is(err, other) {
		t.Errorf("%s error %q matches both ErrInvalid and ErrUnreachable", op, err)
	}
	s.hides(t, op, err, pt)
}

func (s *suite) rotation(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("node/n1")
	w1 := mustWrap(t, p, pt, aad)
	st1 := mustBeValid(t, p)
	if !s.h.RotateKey(t) {
		t.Skip("the harness cannot rotate its key")
	}
	st2 := mustBeValid(t, p)
	versioned := st1.Key.KeyVersion != ""
	if versioned && st2.Key == st1.Key {
		t.Errorf("after rotation Check still reports %s", st1.Key)
	}
	if !st1.LastRotated.IsZero() && st2.LastRotated.Before(st1.LastRotated) {
		t.Errorf("LastRotated went back from %v to %v", st1.LastRotated, st2.LastRotated)
	}
	w2 := mustWrap(t, p, pt, aad)
	if w2.Key != st2.Key {
		t.Errorf("after rotation Wrap used %s but Check reports %s", w2.Key, st2.Key)
	}
	if versioned && w2.Key == w1.Key {
		t.Errorf("after rotation Wrap still uses %s", w1.Key)
	}
	if !s.h.RotateKey(t) {
		t.Fatal("the harness rotated once but not twice")
	}
	w3 := mustWrap(t, p, pt, aad)
	for _, w := range []kms.Wrapped{w1, w2, w3} {
		mustUnwrap(t, p, w, aad, pt)
	}
}

// deadContext: a caller that has given up must get its answer at once, and
// the answer must not be a verdict on the key: a cancelled check must never
// disable a cluster.
func (s *suite) deadContext(t *testing.T) {
	p := s.h.Provider(t)
	pt, aad := Canary(32), []byte("node/n1")
	w := mustWrap(t, p, pt, aad)

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()

	for name, ctx := range map[string]context.Context{"cancelled": cancelled, "deadline passed": expired} {
		t.Run(name, func(t *testing.T) {
			check := func(op string, err error, el time.Duration) {
				t.Helper()
				if el > testenv.Timeout(prompt) {
					t.Errorf("%s took %v with a dead context", op, el)
				}
				if err == nil {
					t.Errorf("%s succeeded with a dead context", op)
					return
				}
				if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && kms.ReasonOf(err) != kms.ReasonTimeout {
					t.Errorf("%s error %q is neither the context's error nor classified TIMEOUT", op, err)
				}
				if errors.Is(err, kms.ErrInvalid) {
					t.Errorf("%s error %q says the key is invalid", op, err)
				}
				s.hides(t, op, err, pt)
			}
			start := time.Now()
			_, err := p.Wrap(ctx, pt, aad)
			check("Wrap", err, time.Since(start))
			start = time.Now()
			out, err := p.Unwrap(ctx, w, aad)
			check("Unwrap", err, time.Since(start))
			if len(out) != 0 {
				t.Errorf("Unwrap with a dead context returned %d bytes", len(out))
			}
			start = time.Now()
			st := p.Check(ctx)
			if el := time.Since(start); el > testenv.Timeout(prompt) {
				t.Errorf("Check took %v with a dead context", el)
			}
			if st.Validity != kms.Unreachable {
				t.Errorf("Check with a dead context = %v %s, want UNREACHABLE", st.Validity, st.Reason)
			}
		})
	}
	mustUnwrap(t, p, w, aad, pt)
}

// concurrent runs wraps, unwraps and checks from several goroutines while
// the key rotates underneath them (run with -race).
func (s *suite) concurrent(t *testing.T) {
	p := s.h.Provider(t)
	// Eight goroutines at once is what -race needs to see; how many
	// operations each makes only multiplies the round trips to a remote
	// test server, so remote providers make fewer.
	const workers = 8
	iters := 25
	if !s.thorough() {
		iters = 8
	}
	type rec struct {
		w       kms.Wrapped
		pt, aad []byte
	}
	results := make([][]rec, workers)
	var wg sync.WaitGroup
	ctx := opCtx(t)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				pt, aad := Canary(32), fmt.Appendf(nil, "g%d/i%d", g, i)
				w, err := p.Wrap(ctx, pt, aad)
				if err != nil {
					t.Errorf("goroutine %d: Wrap: %v", g, err)
					return
				}
				got, err := p.Unwrap(ctx, w, aad)
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("goroutine %d: Unwrap: err=%v, equal=%v", g, err, bytes.Equal(got, pt))
					return
				}
				if i%5 == 0 {
					if st := p.Check(ctx); st.Validity != kms.Valid {
						t.Errorf("goroutine %d: Check = %v %s (%s)", g, st.Validity, st.Reason, st.Detail)
						return
					}
				}
				results[g] = append(results[g], rec{w, pt, aad})
			}
		}()
	}
	rotated := 0
	for range 3 {
		if !s.h.RotateKey(t) {
			break
		}
		rotated++
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Everything wrapped under any version during the rotations unwraps.
	versions := map[kms.KeyRef]bool{}
	for _, rs := range results {
		for _, r := range rs {
			mustUnwrap(t, p, r.w, r.aad, r.pt)
			versions[r.w.Key] = true
		}
	}
	t.Logf("%d rotations, %d key versions used", rotated, len(versions))
}
