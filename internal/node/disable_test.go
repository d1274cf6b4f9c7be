package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
)

func openTestNode(t *testing.T, opts Options) *Node {
	t.Helper()
	l := Layout{Dir: t.TempDir()}
	cmk, _, err := local.Ensure(l.LocalKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	opts.CacheSize = 4 << 20
	opts.Logger = slog.New(slog.DiscardHandler)
	n, err := Open(context.Background(), l, cmk, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// waitOrFail fails the test if done is not closed within a minute (a
// deadlock, not a slow machine).
func waitOrFail(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatalf("%s did not return", what)
	}
}

// A disable cancels the context of every bound command first, with the
// reason as its cause, and closes storage once they released the node.
func TestDisableCancelsBoundCommandsThenCloses(t *testing.T) {
	n := openTestNode(t, Options{DisableGrace: time.Hour})
	ctx, stop := n.Bind(context.Background())
	defer stop()
	_, ks, release, err := n.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	// A nested Acquire (a command reading batch after batch) must not wait.
	_, _, release2, err := n.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	release2()

	sawCancel := make(chan error, 1)
	go func() {
		<-ctx.Done() // the command notices between two documents...
		sawCancel <- context.Cause(ctx)
		if !ks.Loaded() {
			sawCancel <- errors.New("keys dropped before the command released the node")
		}
		release() // ...and returns.
	}()
	disabled := make(chan struct{})
	go func() {
		n.Disable("the customer master key is invalid (KEY_DISABLED)", kms.ReasonKeyDisabled)
		close(disabled)
	}()
	waitOrFail(t, disabled, "Disable")

	cause := <-sawCancel
	var de *DisabledError
	if !errors.As(cause, &de) || de.State.Cause != kms.ReasonKeyDisabled {
		t.Fatalf("cause of the cancelled command context: %v", cause)
	}
	select {
	case err := <-sawCancel:
		t.Fatal(err)
	default:
	}
	if ks.Loaded() {
		t.Fatal("keys still in memory after Disable returned")
	}
	// A context bound while disabled is cancelled already.
	ctx2, stop2 := n.Bind(context.Background())
	defer stop2()
	if !errors.As(context.Cause(ctx2), &de) {
		t.Fatalf("context bound while disabled: cause %v", context.Cause(ctx2))
	}
	// After a re-enable, new bindings live again.
	if err := n.Enable(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx3, stop3 := n.Bind(context.Background())
	defer stop3()
	if ctx3.Err() != nil {
		t.Fatalf("context bound after Enable: %v", context.Cause(ctx3))
	}
}

// An operation that never looks at its context (stuck in a call that
// cannot be interrupted) does not keep the node from disabling: after the
// grace, storage closes and the keys are dropped under it.
func TestDisableDoesNotWaitForeverForAStuckOperation(t *testing.T) {
	n := openTestNode(t, Options{DisableGrace: 50 * time.Millisecond})
	_, ks, release, err := n.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release() // the stuck operation ends after the disable: harmless
	disabled := make(chan struct{})
	go func() { n.Disable("revoked", kms.ReasonKeyDisabled); close(disabled) }()
	waitOrFail(t, disabled, "Disable with a stuck holder")
	if ks.Loaded() {
		t.Fatal("keys still in memory")
	}
	if _, _, _, err := n.Acquire(); !errors.Is(err, ErrDisabled) {
		t.Fatalf("Acquire after Disable: %v", err)
	}
}
