package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// Node is a node's keys and storage, and whether it may use them.
//
// State machine:
//
//	            Open: keys unwrap              check INVALID / Disable
//	start ──────────────────────> AVAILABLE ─────────────────────────> DISABLED(reason)
//	  │                              ^                                     │
//	  │ keys cannot be unwrapped     └─────── check VALID / Enable ────────┘
//	  └───────────────────────────────────────────────────────────> DISABLED(reason)
//
// Entering DISABLED refuses new operations at once, cancels the context of
// every command bound to the node (Bind), waits for the operations in flight
// (Acquire) to release it — at most Options.DisableGrace — and then closes
// every database and zeroes every key in memory. Leaving it unwraps the
// master key again (one KMS call) and reopens storage. UNREACHABLE checks
// change nothing: a serving node keeps serving, a disabled node stays
// disabled.
type Node struct {
	Layout   Layout
	Provider *kms.Counting
	opts     Options

	// transition serializes the state changes (Disable, Enable, Close), so
	// that a re-enable never reopens storage while a disable is still
	// waiting to close it. It is never taken by Acquire or Bind.
	transition sync.Mutex

	mu    sync.Mutex
	state State
	cur   *epoch // the current AVAILABLE period, or a cancelled one while disabled
	// paused, while set, makes Acquire wait until it is closed: an
	// in-place re-encryption switching hierarchies (reencrypt.go).
	paused chan struct{}

	// reencrypting serializes in-place re-encryptions.
	reencrypting sync.Mutex
	// switchHook, in tests, runs at the steps of a re-encryption's switch
	// ("commit": just before the commit point; "move": just after it); an
	// error stops the switch there, as a crash would.
	switchHook func(step string) error
}

// epoch is one AVAILABLE period of a node: the storage it opened, the
// context its commands are bound to, and the operations holding it.
// Invariant: ctx is cancelled (cause *DisabledError) as soon as the node
// leaves this epoch; eng and ks are closed only after that, once holders
// reached zero or the disable grace expired.
type epoch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	eng    *storage.Engine // nil while disabled
	ks     *keys.Keystore  // nil while disabled
	// holders counts Acquire calls not yet released; drained is closed when
	// it reaches zero while a Disable waits for it (nil otherwise).
	holders int
	drained chan struct{}
}

func newEpoch(eng *storage.Engine, ks *keys.Keystore) *epoch {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &epoch{ctx: ctx, cancel: cancel, eng: eng, ks: ks}
}

// disabledEpoch is the epoch of a node that is disabled: its context is
// already cancelled with the reason.
func disabledEpoch(st State) *epoch {
	e := newEpoch(nil, nil)
	e.cancel(&DisabledError{State: st})
	return e
}

// State is the node's availability.
type State struct {
	Available bool
	// Reason says why the node is disabled, in words an operator can act on.
	Reason string
	// Cause is the KMS reason, when the KMS gave one.
	Cause kms.Reason
	Since time.Time
}

func (s State) String() string {
	if s.Available {
		return "AVAILABLE"
	}
	return "DISABLED(" + s.Reason + ")"
}

// reasonKeystoreRollback is the control plane's reason for refusing a node
// whose keystore is older than one it reported before
// (controlplane.ReasonKeystoreRollback; the node does not import the
// control plane).
const reasonKeystoreRollback kms.Reason = "KEYSTORE_ROLLBACK"

// ErrDisabled is matched by errors from Acquire while the node is disabled.
var ErrDisabled = errors.New("node is disabled")

// DisabledError carries the reason the node is disabled.
type DisabledError struct{ State State }

func (e *DisabledError) Error() string {
	return fmt.Sprintf("encryption at rest: node is disabled since %s: %s", e.State.Since.Format(time.RFC3339), e.State.Reason)
}

func (e *DisabledError) Is(target error) bool { return target == ErrDisabled }

// ClientMessage is what a database client is told: the cause once, and the
// fix. It carries no internal path, key-service URL or KMS endpoint (the
// full reason is in the server log, serverStatus and `cmkdb ctl clusters`).
func (e *DisabledError) ClientMessage() string {
	cause := string(e.State.Cause)
	if cause == "" {
		cause = "the node's keys are not loaded"
	} else if what := causeWords[e.State.Cause]; what != "" {
		cause += " (" + what + ")"
	}
	fix := "restore the key (or the credentials to it) in the KMS, then run `cmkdb ctl ear validate`"
	if e.State.Cause.Validity() == kms.Unreachable {
		fix = "the KMS (or the control plane) does not answer; the node comes back by itself when it does — `cmkdb ctl ear validate` checks at once"
	}
	return fmt.Sprintf("encryption key unavailable: %s, since %s — %s", cause, e.State.Since.Format(time.RFC3339), fix)
}

// causeWords explain KMS reasons to a database client.
var causeWords = map[kms.Reason]string{
	kms.ReasonCredentialsRejected: "the KMS rejected the credentials",
	kms.ReasonPermissionDenied:    "the credentials may not use the key",
	kms.ReasonKeyDisabled:         "the customer master key is disabled",
	kms.ReasonKeyDeleted:          "the customer master key is deleted",
	kms.ReasonKeyPendingDeletion:  "the customer master key is scheduled for deletion",
	kms.ReasonKeyExpired:          "the customer master key has expired",
	kms.ReasonKeyNotYetActive:     "the customer master key is not active yet",
	kms.ReasonWrongKeyType:        "the key cannot wrap keys",
	kms.ReasonKeyNotFound:         "the customer master key was not found",
	kms.ReasonKeyMalformed:        "the key configuration is malformed",
	kms.ReasonNetwork:             "the KMS is unreachable",
	kms.ReasonTimeout:             "the KMS did not answer in time",
	kms.ReasonThrottled:           "the KMS is throttling requests",
	kms.ReasonServerError:         "the KMS failed",
}

// Options for opening a node.
type Options struct {
	// Plaintext turns file encryption off (benchmark comparisons only).
	Plaintext bool
	CacheSize int64
	Logger    *slog.Logger
	// DisableGrace bounds how long disabling waits for operations in flight
	// to release the node after their contexts were cancelled, before it
	// closes storage under them (default DefaultDisableGrace). Commands
	// check their context between documents, so they return at once; the
	// bound is for one stuck where it cannot check.
	DisableGrace time.Duration
	// ReadOnly serves existing data without changing anything: the
	// keystore must exist (none is created), databases open read-only
	// (storage.Options.ReadOnly). A snapshot served offline.
	ReadOnly bool
}

// DefaultDisableGrace is Options.DisableGrace's default.
const DefaultDisableGrace = 5 * time.Second

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
}

func (o Options) grace() time.Duration {
	if o.DisableGrace <= 0 {
		return DefaultDisableGrace
	}
	return o.DisableGrace
}

// Open unlocks the node's keystore with provider (one KMS call), creating
// the keystore on first start, and opens storage. A keystore that exists but
// cannot be unlocked because the KMS is invalid or unreachable does not fail
// Open: the node starts DISABLED and says why. Anything else — a damaged or
// tampered keystore, the wrong CMK — fails Open.
func Open(ctx context.Context, l Layout, provider kms.Provider, opts Options) (*Node, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n := &Node{Layout: l, Provider: kms.NewCounting(provider), opts: opts}
	if !opts.ReadOnly {
		if err := settleReencryption(l, opts.logger()); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(keys.Path(l.KeystoreDir())); errors.Is(err, os.ErrNotExist) && opts.ReadOnly {
		return nil, fmt.Errorf("node: %s has no keystore to serve read-only", l.KeystoreDir())
	} else if errors.Is(err, os.ErrNotExist) {
		ks, err := keys.Create(ctx, l.KeystoreDir(), n.Provider)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		ks.Close()
	}
	ks, eng, err := n.unlock(ctx)
	if err != nil {
		var ke *kms.Error
		if !errors.As(err, &ke) || errors.Is(err, keys.ErrWrongKey) {
			return nil, err
		}
		n.state = State{Reason: err.Error(), Cause: ke.Reason, Since: time.Now().UTC()}
		n.cur = disabledEpoch(n.state)
		opts.logger().Warn("node starts DISABLED: its master key cannot be unwrapped", "reason", ke.Reason, "err", err)
		return n, nil
	}
	n.state = State{Available: true, Since: time.Now().UTC()}
	n.cur = newEpoch(eng, ks)
	return n, nil
}

// unlock opens the keystore (one KMS call) and storage. Callers hold
// n.transition or own n exclusively.
func (n *Node) unlock(ctx context.Context) (*keys.Keystore, *storage.Engine, error) {
	ks, err := keys.Open(ctx, n.Layout.KeystoreDir(), n.Provider)
	if err != nil {
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	eng, err := storage.Open(storage.Options{Dir: n.Layout.DataDir(), QuarantineDir: n.Layout.QuarantineDir(),
		Plaintext: n.opts.Plaintext, CacheSize: n.opts.CacheSize, Logger: n.opts.logger(), ReadOnly: n.opts.ReadOnly}, ks)
	if err != nil {
		ks.Close()
		return nil, nil, fmt.Errorf("node: %w", err)
	}
	return ks, eng, nil
}

// KeystoreGeneration is the generation of the node's keystore: from the
// open keystore, or read from the file (no keys needed) while disabled.
// Zero when it cannot be read. A managed node reports it, so the control
// plane can tell an older keystore put back (a rollback).
func (n *Node) KeystoreGeneration() uint64 {
	var ks *keys.Keystore
	n.mu.Lock()
	if n.cur != nil && n.state.Available {
		ks = n.cur.ks
	}
	n.mu.Unlock()
	if ks != nil {
		return ks.Generation()
	}
	r, err := keys.Inspect(n.Layout.KeystoreDir())
	if err != nil {
		return 0
	}
	return r.Generation
}

// State returns the node's current state.
func (n *Node) State() State {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Acquire gives the caller the engine and keystore for one operation; the
// node does not close them until release is called, or until the disable
// grace expires after the node left AVAILABLE (Disable). While the node is
// disabled it returns a *DisabledError. release may be called more than
// once. It waits only while an in-place re-encryption switches key
// hierarchies, which waits for no longer than the disable grace for the
// operations in flight (a nested Acquire then delays the switch, never
// deadlocks it).
func (n *Node) Acquire() (eng *storage.Engine, ks *keys.Keystore, release func(), err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.paused != nil {
		wait := n.paused
		n.mu.Unlock()
		<-wait
		n.mu.Lock()
	}
	if !n.state.Available {
		return nil, nil, nil, &DisabledError{State: n.state}
	}
	e := n.cur
	e.holders++
	release = sync.OnceFunc(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		e.holders--
		if e.holders == 0 && e.drained != nil {
			close(e.drained)
			e.drained = nil
		}
	})
	return e.eng, e.ks, release, nil
}

// InFlight returns how many operations hold the node now (Acquire not yet
// released).
func (n *Node) InFlight() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur.holders
}

// Bind returns a context derived from ctx that is also cancelled, with the
// node's *DisabledError as its cause (context.Cause), as soon as the node
// leaves AVAILABLE. Commands run under it, so a disable stops their scans
// between two documents instead of waiting for them. Bound while the node
// is disabled, the context is cancelled already. stop releases the
// binding's resources; call it when the command ends.
func (n *Node) Bind(ctx context.Context) (bound context.Context, stop context.CancelFunc) {
	n.mu.Lock()
	live := n.cur.ctx
	n.mu.Unlock()
	bctx, cancel := context.WithCancelCause(ctx)
	if live.Err() != nil {
		cancel(context.Cause(live))
		return bctx, func() { cancel(context.Canceled) }
	}
	unbind := context.AfterFunc(live, func() { cancel(context.Cause(live)) })
	return bctx, func() { unbind(); cancel(context.Canceled) }
}

// Disable closes every database and drops every key from memory. It first
// refuses new operations and cancels the commands bound to the node (Bind),
// then waits for the operations in flight to release the node, at most the
// disable grace: a command stuck where it cannot see its context does not
// keep the keys in memory.
func (n *Node) Disable(reason string, cause kms.Reason) {
	n.transition.Lock()
	defer n.transition.Unlock()
	n.mu.Lock()
	if !n.state.Available {
		n.state.Reason, n.state.Cause = reason, cause
		n.mu.Unlock()
		return
	}
	n.state = State{Reason: reason, Cause: cause, Since: time.Now().UTC()}
	old := n.cur
	n.cur = disabledEpoch(n.state)
	n.mu.Unlock()
	n.closeEpoch(old, &DisabledError{State: n.State()})
	n.opts.logger().Warn("node DISABLED: keys dropped, data commands refused", "reason", reason)
}

// closeEpoch cancels e's commands, waits for its holders (at most the
// grace), then closes its storage and keystore. e is no longer n.cur, so
// no new holder can appear.
func (n *Node) closeEpoch(e *epoch, why error) {
	e.cancel(why)
	n.mu.Lock()
	var wait chan struct{}
	if e.holders > 0 {
		wait = make(chan struct{})
		e.drained = wait
	}
	n.mu.Unlock()
	if wait != nil {
		t := time.NewTimer(n.opts.grace())
		select {
		case <-wait:
		case <-t.C:
			n.mu.Lock()
			held := e.holders
			e.drained = nil
			n.mu.Unlock()
			n.opts.logger().Warn("closing storage under operations that did not stop within the disable grace",
				"operations", held, "grace", n.opts.grace().String())
		}
		t.Stop()
	}
	if e.eng != nil {
		if err := e.eng.Close(); err != nil {
			n.opts.logger().Error("closing databases", "err", err)
		}
	}
	if e.ks != nil {
		e.ks.Close()
	}
}

// Enable unwraps the master key again and reopens storage.
func (n *Node) Enable(ctx context.Context) error {
	n.transition.Lock()
	defer n.transition.Unlock()
	if n.State().Available {
		return nil
	}
	ks, eng, err := n.unlock(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.state = State{Available: true, Since: time.Now().UTC()}
	n.cur = newEpoch(eng, ks)
	n.mu.Unlock()
	n.opts.logger().Info("node AVAILABLE again: keys unwrapped, databases reopened")
	return nil
}

// Close closes the databases and drops every key from memory, after
// cancelling the commands in flight as Disable does.
func (n *Node) Close() error {
	n.transition.Lock()
	defer n.transition.Unlock()
	n.mu.Lock()
	n.state = State{Reason: "node closed", Since: time.Now().UTC()}
	old := n.cur
	n.cur = disabledEpoch(n.state)
	n.mu.Unlock()
	if old != nil {
		n.closeEpoch(old, &DisabledError{State: n.State()})
	}
	return nil
}

// ApplyCheck applies one key check's result to the node: INVALID disables,
// VALID re-enables, UNREACHABLE only logs.
func (n *Node) ApplyCheck(ctx context.Context, st kms.Status) {
	log := n.opts.logger()
	switch st.Validity {
	case kms.Invalid:
		if st.Reason == reasonKeystoreRollback {
			n.Disable("keystore rollback: "+st.Detail, st.Reason)
			return
		}
		n.Disable(fmt.Sprintf("the customer master key is invalid (%s): %s", st.Reason, st.Detail), st.Reason)
	case kms.Valid:
		if !n.State().Available {
			if err := n.Enable(ctx); err != nil {
				log.Warn("key is valid again but the node could not be re-enabled", "err", err)
			}
		}
	default:
		log.Warn("KMS unreachable: node keeps its current state", "state", n.State().String(), "reason", st.Reason, "detail", st.Detail)
	}
}

// RunChecks checks the CMK every interval until ctx ends.
func (n *Node) RunChecks(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			st := n.Provider.Check(cctx)
			cancel()
			n.ApplyCheck(ctx, st)
		}
	}
}

// Plaintext reports whether file encryption is off (benchmark mode).
func (n *Node) Plaintext() bool { return n.opts.Plaintext }
