package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
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
// Entering DISABLED closes every database and zeroes every key in memory;
// leaving it unwraps the master key again (one KMS call) and reopens
// storage. UNREACHABLE checks change nothing: a serving node keeps serving,
// a disabled node stays disabled.
type Node struct {
	Layout   Layout
	Provider *kms.Counting
	opts     Options

	mu       sync.RWMutex
	keystore *keys.Keystore  // nil while disabled
	engine   *storage.Engine // nil while disabled
	state    State
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
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.Default()
	}
	return o.Logger
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
	if _, err := os.Stat(keys.Path(l.KeystoreDir())); errors.Is(err, os.ErrNotExist) {
		ks, err := keys.Create(ctx, l.KeystoreDir(), n.Provider)
		if err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		ks.Close()
	}
	if err := n.unlock(ctx); err != nil {
		var ke *kms.Error
		if !errors.As(err, &ke) || errors.Is(err, keys.ErrWrongKey) {
			return nil, err
		}
		n.state = State{Reason: err.Error(), Cause: ke.Reason, Since: time.Now().UTC()}
		opts.logger().Warn("node starts DISABLED: its master key cannot be unwrapped", "reason", ke.Reason, "err", err)
		return n, nil
	}
	return n, nil
}

// unlock opens the keystore and storage and marks the node AVAILABLE.
// Callers hold n.mu or own n exclusively.
func (n *Node) unlock(ctx context.Context) error {
	ks, err := keys.Open(ctx, n.Layout.KeystoreDir(), n.Provider)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	eng, err := storage.Open(storage.Options{Dir: n.Layout.DataDir(), Plaintext: n.opts.Plaintext,
		CacheSize: n.opts.CacheSize, Logger: n.opts.logger()}, ks)
	if err != nil {
		ks.Close()
		return fmt.Errorf("node: %w", err)
	}
	n.keystore, n.engine = ks, eng
	n.state = State{Available: true, Since: time.Now().UTC()}
	return nil
}

// State returns the node's current state.
func (n *Node) State() State {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.state
}

// Acquire gives the caller the engine and keystore for one operation; the
// node cannot be disabled until release is called. While the node is
// disabled it returns a *DisabledError.
func (n *Node) Acquire() (eng *storage.Engine, ks *keys.Keystore, release func(), err error) {
	n.mu.RLock()
	if !n.state.Available {
		st := n.state
		n.mu.RUnlock()
		return nil, nil, nil, &DisabledError{State: st}
	}
	return n.engine, n.keystore, n.mu.RUnlock, nil
}

// Disable closes every database and drops every key from memory. It waits
// for operations in flight (Acquire) to finish.
func (n *Node) Disable(reason string, cause kms.Reason) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.state.Available {
		n.state.Reason, n.state.Cause = reason, cause
		return
	}
	n.lockLocked()
	n.state = State{Reason: reason, Cause: cause, Since: time.Now().UTC()}
	n.opts.logger().Warn("node DISABLED: keys dropped, data commands refused", "reason", reason)
}

func (n *Node) lockLocked() {
	if n.engine != nil {
		if err := n.engine.Close(); err != nil {
			n.opts.logger().Error("closing databases", "err", err)
		}
		n.engine = nil
	}
	if n.keystore != nil {
		n.keystore.Close()
		n.keystore = nil
	}
}

// Enable unwraps the master key again and reopens storage.
func (n *Node) Enable(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state.Available {
		return nil
	}
	if err := n.unlock(ctx); err != nil {
		return err
	}
	n.opts.logger().Info("node AVAILABLE again: keys unwrapped, databases reopened")
	return nil
}

// Close closes the databases and drops every key from memory.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lockLocked()
	n.state = State{Reason: "node closed", Since: time.Now().UTC()}
	return nil
}

// ApplyCheck applies one key check's result to the node: INVALID disables,
// VALID re-enables, UNREACHABLE only logs.
func (n *Node) ApplyCheck(ctx context.Context, st kms.Status) {
	log := n.opts.logger()
	switch st.Validity {
	case kms.Invalid:
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

// EnsureLocalKey opens the layout's local CMK, creating it on first use.
func EnsureLocalKey(l Layout) (*local.Provider, bool, error) {
	path := l.LocalKeyPath()
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("node: %w", err)
		}
		if _, err := local.Create(path); err != nil {
			return nil, false, fmt.Errorf("node: create local CMK: %w", err)
		}
		created = true
	}
	p, err := local.Open(path)
	return p, created, err
}

// Plaintext reports whether file encryption is off (benchmark mode).
func (n *Node) Plaintext() bool { return n.opts.Plaintext }
