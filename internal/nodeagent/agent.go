// Package nodeagent runs a managed node's side of the control plane
// protocol: it long-polls the key service for directives and applies them
// to the node — drop keys and refuse I/O on INVALID, re-unwrap and serve on
// VALID, re-wrap the master key under the cluster's current CMK, rotate the
// master key when asked, re-encrypt a standalone node in place when asked —
// and reports the node's state after each.
package nodeagent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/backoff"
	"github.com/cmkdb/cmkdb/internal/cpproto"
	"github.com/cmkdb/cmkdb/internal/keyservice"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/node"
)

// PollWait is how long one directive long-poll waits for a change; it is
// also the heartbeat of the node's reports and of retries while disabled.
const PollWait = 10 * time.Second

// retryPolicy spaces the long-polls of an unreachable control plane: after
// failure n a wait in [d, 2d), d = 250 ms·2^(n-1) capped at 10 s.
func retryPolicy() backoff.Policy {
	return backoff.Policy{Base: 250 * time.Millisecond, Max: 10 * time.Second, Low: 1, High: 2}
}

// Agent applies directives to one node.
type Agent struct {
	Node    *node.Node
	Client  *keyservice.Client
	Address string // host:port clients connect to
	Logger  *slog.Logger
	// PollWait overrides the package default (tests).
	PollWait time.Duration

	applied uint64 // rotations applied
	synced  bool   // applied initialised from the control plane

	// mu guards the in-place re-encryption's state, which its goroutine
	// updates while the directive loop reports it.
	mu           sync.Mutex
	reencApplied uint64
	reencRunning bool
	reenc        *cpproto.Reencryption
}

// Run applies directives until ctx ends. A control plane that does not
// answer changes nothing: the node keeps its state, as with an unreachable
// KMS.
func (a *Agent) Run(ctx context.Context) {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	wait := a.PollWait
	if wait == 0 {
		wait = PollWait
	}
	// Report the keystore's state on connect, before waiting for any
	// directive: after a crash the control plane's record of this node
	// (master key version, its age, the CMK wrapping it) may lag the
	// keystore, and it schedules rotations from that record.
	if err := a.Client.Report(ctx, a.report()); err != nil && ctx.Err() == nil {
		log.Warn("reporting to the control plane", "err", err)
	}
	var gen uint64
	failures := 0
	for ctx.Err() == nil {
		d, err := a.Client.Directive(ctx, gen, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("control plane unreachable: node keeps its state", "state", a.Node.State().String(), "err", err)
			failures++
			backoff.Wait(ctx, retryPolicy().Delay(failures))
			gen = 0
			continue
		}
		failures = 0
		gen = d.Gen
		a.Apply(ctx, d)
		if err := a.Client.Report(ctx, a.report()); err != nil && ctx.Err() == nil {
			log.Warn("reporting to the control plane", "err", err)
		}
	}
}

// Apply applies one directive.
func (a *Agent) Apply(ctx context.Context, d cpproto.Directive) {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	if !a.synced {
		a.applied, a.synced = d.RotateApplied, true
		a.mu.Lock()
		a.reencApplied = d.ReencryptApplied
		a.mu.Unlock()
	}
	a.Node.ApplyCheck(ctx, keyservice.DirectiveStatus(d))
	_, ks, release, err := a.Node.Acquire()
	if err != nil {
		return // disabled: nothing else applies until the key is back
	}
	defer release()
	if a.startReencryption(ctx, d) {
		// The new hierarchy is wrapped by the directive's key; re-wrapping
		// or rotating the one being replaced would only race it.
		return
	}
	if d.WrapKey.KeyID != "" && ks.Master().CMK != d.WrapKey {
		from := ks.Master().CMK
		if err := ks.RewrapMaster(ctx, a.Client); err != nil {
			log.Warn("re-wrapping the node master key under the cluster's current CMK", "from", from.String(), "to", d.WrapKey.String(), "err", err)
		} else {
			log.Info("node master key re-wrapped", "from", from.String(), "to", ks.Master().CMK.String())
		}
	}
	if d.Rotate > a.applied {
		if err := ks.RotateMasterKey(ctx); err != nil {
			log.Warn("rotating the node master key", "err", err)
			return
		}
		a.applied = d.Rotate
		log.Info("node master key rotated", "version", ks.Master().Version)
	}
}

// startReencryption starts the in-place re-encryption d asks for, in the
// background, unless it is done or running. It reports whether one runs.
// A failed one is not retried by itself: the control plane asks again
// (a new Reencrypt) when the user restates the provider.
func (a *Agent) startReencryption(ctx context.Context, d cpproto.Directive) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reencRunning {
		return true
	}
	if d.Reencrypt <= a.reencApplied || (a.reenc != nil && a.reenc.Requested == d.Reencrypt && a.reenc.Phase == "FAILED") {
		return false
	}
	a.reencRunning = true
	a.reenc = &cpproto.Reencryption{Requested: d.Reencrypt, Phase: "COPYING"}
	go a.reencrypt(ctx, d.Reencrypt)
	return true
}

// reencrypt runs one in-place re-encryption, reporting its progress at
// most every second and its end at once.
func (a *Agent) reencrypt(ctx context.Context, requested uint64) {
	log := a.Logger
	if log == nil {
		log = slog.Default()
	}
	var last time.Time
	err := a.Node.Reencrypt(ctx, func(p node.ReencryptProgress) {
		a.mu.Lock()
		a.reenc = &cpproto.Reencryption{Requested: requested, Phase: p.Phase, BytesCopied: p.BytesCopied, BytesTotal: p.BytesTotal,
			Keys: p.Keys, ElapsedMillis: p.Elapsed.Milliseconds()}
		a.mu.Unlock()
		if time.Since(last) >= time.Second && p.Phase == "COPYING" {
			last = time.Now()
			if err := a.Client.Report(ctx, a.report()); err != nil && ctx.Err() == nil {
				log.Warn("reporting to the control plane", "err", err)
			}
		}
	})
	a.mu.Lock()
	a.reencRunning = false
	if err != nil {
		log.Error("in-place re-encryption failed", "err", err)
		if a.reenc == nil {
			a.reenc = &cpproto.Reencryption{Requested: requested}
		}
		a.reenc.Phase, a.reenc.Error = "FAILED", err.Error()
	} else {
		a.reencApplied = requested
		a.reenc.Phase = "DONE"
	}
	a.mu.Unlock()
	if err := a.Client.Report(ctx, a.report()); err != nil && ctx.Err() == nil {
		log.Warn("reporting to the control plane", "err", err)
	}
}

func (a *Agent) report() cpproto.NodeReport {
	st := a.Node.State()
	r := cpproto.NodeReport{Address: a.Address, State: cpproto.StateDisabled, Reason: st.Reason, RotateApplied: a.applied,
		KeystoreGeneration: a.Node.KeystoreGeneration()}
	a.mu.Lock()
	r.ReencryptApplied = a.reencApplied
	if a.reenc != nil {
		re := *a.reenc
		r.Reencryption = &re
	}
	a.mu.Unlock()
	if _, ks, release, err := a.Node.Acquire(); err == nil {
		m := ks.Master()
		r.State, r.Reason = cpproto.StateAvailable, ""
		r.MasterKeyVersion, r.MasterKeyCreatedAt, r.CMK = m.Version, m.CreatedAt, m.CMK
		release()
	}
	return r
}

var _ kms.Provider = (*keyservice.Client)(nil)
