package controlplane

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// The key lifecycle of a project, one state machine per project:
//
//	             check VALID                       check INVALID
//	 (unknown) ─────────────> VALID ────────────────────────────────> INVALID
//	                            ^  └── check UNREACHABLE ─┐             │
//	                            │                         v             │
//	                            │                 VALID+unreachable     │
//	                            │   (nothing shut down; network-access- │
//	                            │    denied alert open until an answer) │
//	                            └──── check VALID (restored, fixed, ────┘
//	                                  try again): nodes re-unwrap
//
// INVALID disables every cluster whose encryptionAtRestProvider is the
// project's provider: the key service refuses to unwrap for their nodes and
// tells them to drop their keys. Every transition is an event.

// lockChecks serializes checks and configuration changes of one project, so
// a slow KMS answer never overwrites a newer one.
func (s *Service) lockChecks(gid string) func() {
	m, _ := s.checkMu.LoadOrStore(gid, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// CheckNow runs a validity check of a project's key at once (the GET of the
// encryptionAtRest resource, and "try again") and applies its result.
func (s *Service) CheckNow(ctx context.Context, gid string) (KeyState, error) {
	unlock := s.lockChecks(gid)
	defer unlock()
	s.mu.Lock()
	gs, err := s.group(gid)
	if err != nil {
		s.mu.Unlock()
		return KeyState{}, err
	}
	p, checkKey := gs.provider, gs.ear.Key.CheckKey
	s.mu.Unlock()
	if p == nil {
		return KeyState{}, nil
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st := p.Check(cctx)
	var wrapRef kms.KeyRef
	if st.Validity == kms.Valid && st.Key != checkKey {
		ref, err := probeWrap(cctx, p)
		if err != nil {
			st = kms.StatusFromError(st.Key, err)
		}
		wrapRef = ref
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err = s.group(gid)
	if err != nil {
		return KeyState{}, err
	}
	if gs.provider != p {
		return gs.ear.Key, nil // reconfigured meanwhile; that change validated its own key
	}
	s.applyStatusLocked(gs, st, wrapRef)
	return gs.ear.Key, nil
}

func probeWrap(ctx context.Context, p kms.Provider) (kms.KeyRef, error) {
	probe := make([]byte, 32)
	_, _ = rand.Read(probe)
	defer clear(probe)
	w, err := p.Wrap(ctx, probe, []byte("cmkdb-controlplane-probe"))
	if err != nil {
		return kms.KeyRef{}, err
	}
	return w.Key, nil
}

// applyStatusLocked moves the project's state machine with one check result.
func (s *Service) applyStatusLocked(gs *groupState, st kms.Status, wrapRef kms.KeyRef) {
	now := s.now()
	k := gs.ear.Key
	kind := gs.ear.Kind
	recs := map[string]any{}
	changed := false
	event := func(t, detail string) { s.addEventLocked(gs, recs, Event{EventTypeName: t, Detail: detail}) }
	clusterEvents := func(t, detail string) {
		for _, name := range s.clustersUsingLocked(gs, kind) {
			s.addEventLocked(gs, recs, Event{EventTypeName: t, ClusterName: name, Detail: detail})
		}
	}
	if st.Validity != kms.Unreachable && k.Unreachable {
		k.Unreachable = false
		event(EventKMSNetworkAccessRestored, "the KMS answers again")
	}
	switch st.Validity {
	case kms.Valid:
		if k.Validity != kms.Valid.String() {
			if k.Validity == kms.Invalid.String() {
				event(keyEvent(kind, KeyEventValid), "the customer master key is usable again")
				event(EventConfigIsValid, "")
				clusterEvents(EventClusterEncryptionRestored, "nodes re-unwrap their master keys")
			}
			k.Since, changed = now, true
		}
		// A VALID key may still carry a warning (an Azure key expiring
		// within 48 hours): keep it where operators look.
		k.Validity, k.Reason, k.Detail = kms.Valid.String(), "", st.Detail
		if wrapRef.KeyID != "" && wrapRef != k.Key {
			if k.Key.KeyID != "" {
				event(keyEvent(kind, KeyEventRotated), fmt.Sprintf("the KMS now wraps with %s (was %s); node master keys are re-wrapped", wrapRef, k.Key))
				k.RotatedAt = now
				if !st.LastRotated.IsZero() {
					k.RotatedAt = st.LastRotated.UTC()
				}
			}
			k.Key, changed = wrapRef, true
		}
		k.CheckKey = st.Key
		s.applyPendingChangesLocked(gs, recs)
	case kms.Invalid:
		if k.Validity != kms.Invalid.String() {
			detail := fmt.Sprintf("%s: %s", st.Reason, st.Detail)
			event(keyEvent(kind, KeyEventInvalid), detail)
			event(EventConfigNoLongerValid, detail)
			clusterEvents(EventClusterEncryptionDisabled, "the customer master key is invalid: "+string(st.Reason))
			k.Since, changed = now, true
		}
		k.Validity, k.Reason, k.Detail = kms.Invalid.String(), st.Reason, st.Detail
	default:
		if !k.Unreachable {
			event(EventKMSNetworkAccessDenied, fmt.Sprintf("%s: %s", st.Reason, st.Detail))
			changed = true
		}
		k.Unreachable, k.Reason, k.Detail = true, st.Reason, st.Detail
	}
	k.CheckedAt = now
	gs.ear.Key = k
	recs["ear/"+gs.group.ID] = gs.ear
	s.evaluateRotationAgeLocked(gs, recs)
	if err := s.st.put(recs); err != nil {
		s.log.Error("recording a key check", "group", gs.group.ID, "err", err)
	}
	gs.nextCheck = now.Add(gs.ear.Settings.CheckInterval)
	if changed {
		s.notifyLocked()
	}
}

// Start runs the scheduled key checks and node master key rotations until
// Close.
func (s *Service) Start() {
	tick := time.Second
	if s.opts.MinCheckInterval < 4*time.Second {
		tick = s.opts.MinCheckInterval / 4
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		running := map[string]bool{}
		var mu sync.Mutex
		var expired, scheduled, archived time.Time
		var archiving sync.Mutex
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			if time.Since(expired) >= time.Minute {
				expired = time.Now()
				s.expireSnapshots()
			}
			if time.Since(archived) >= archiveEvery && archiving.TryLock() {
				archived = time.Now()
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer archiving.Unlock()
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					go func() {
						select {
						case <-s.done:
							cancel()
						case <-ctx.Done():
						}
					}()
					s.archiveOplogs(ctx)
				}()
			}
			if s.hasSnapshotStore() {
				now := s.now()
				if !scheduled.IsZero() {
					s.runSchedules(scheduled)
				}
				scheduled = now
			}
			for _, gid := range s.dueChecks() {
				mu.Lock()
				busy := running[gid]
				running[gid] = true
				mu.Unlock()
				if busy {
					continue
				}
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					ctx, cancel := context.WithCancel(context.Background())
					go func() {
						select {
						case <-s.done:
							cancel()
						case <-ctx.Done():
						}
					}()
					if _, err := s.CheckNow(ctx, gid); err != nil {
						s.log.Warn("scheduled key check", "group", gid, "err", err)
					}
					cancel()
					mu.Lock()
					delete(running, gid)
					mu.Unlock()
				}()
			}
			s.scheduleRotations()
		}
	}()
}

func (s *Service) dueChecks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	var due []string
	for gid, gs := range s.groups {
		if gs.provider != nil && !now.Before(gs.nextCheck) {
			due = append(due, gid)
		}
	}
	return due
}
