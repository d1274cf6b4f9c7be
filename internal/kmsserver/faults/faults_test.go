package faults

import (
	"context"
	"testing"
	"time"
)

func TestSwitches(t *testing.T) {
	var s Switches
	if st := s.State(); st.Throttled || st.Failure != None || s.Denied("p") {
		t.Fatalf("zero value has faults: %+v", st)
	}
	s.Throttle(true)
	s.Fail(Unavailable)
	s.Deny("p", true)
	if st := s.State(); !st.Throttled || st.Failure != Unavailable || !s.Denied("p") || s.Denied("q") {
		t.Fatalf("after setting: %+v", st)
	}
	s.Deny("p", false)
	if s.Denied("p") {
		t.Fatal("denial not lifted")
	}
	s.Deny("q", true)
	s.Reset()
	if st := s.State(); st.Throttled || st.Failure != None || s.Denied("q") {
		t.Fatalf("after Reset: %+v", st)
	}
}

// waitStall runs WaitStall in the background and returns its answer.
func waitStall(ctx context.Context, s *Switches) <-chan bool {
	out := make(chan bool, 1)
	go func() { out <- s.WaitStall(ctx) }()
	return out
}

func TestStall(t *testing.T) {
	cases := map[string]struct {
		release func(s *Switches, cancel context.CancelFunc)
		want    bool
	}{
		"released by Stall(false)": {func(s *Switches, _ context.CancelFunc) { s.Stall(false) }, true},
		"released by Reset":        {func(s *Switches, _ context.CancelFunc) { s.Reset() }, true},
		"client gives up":          {func(_ *Switches, cancel context.CancelFunc) { cancel() }, false},
		"server closes":            {func(s *Switches, _ context.CancelFunc) { s.Close() }, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var s Switches
			if !s.WaitStall(context.Background()) {
				t.Fatal("no stall, yet held")
			}
			s.Stall(true)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := waitStall(ctx, &s)
			select {
			case <-got:
				t.Fatal("a stalled request went on before release")
			case <-time.After(20 * time.Millisecond):
			}
			c.release(&s, cancel)
			if ok := <-got; ok != c.want {
				t.Fatalf("WaitStall = %v, want %v", ok, c.want)
			}
		})
	}
}
