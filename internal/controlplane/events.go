package controlplane

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Event types, as Atlas names them. The per-provider ones are built by
// keyEvent: AWS_ENCRYPTION_KEY_INVALID, GCP_ENCRYPTION_KEY_ROTATED, … and for
// cmkdb's own providers KMIP_…, VAULT_…, PKCS11_…, LOCAL_….
const (
	EventKMSNetworkAccessDenied   = "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED"
	EventKMSNetworkAccessRestored = "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_RESTORED"
	EventConfigNoLongerValid      = "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID"
	EventConfigIsValid            = "ENCRYPTION_AT_REST_CONFIG_IS_VALID"
	EventConfigUpdated            = "ENCRYPTION_AT_REST_CONFIGURATION_UPDATED"
	EventValidationFailed         = "ENCRYPTION_AT_REST_CONFIGURATION_VALIDATION_FAILED"
	EventValidationSucceeded      = "ENCRYPTION_AT_REST_CONFIGURATION_VALIDATION_SUCCEEDED"

	KeyEventRotated       = "ENCRYPTION_KEY_ROTATED"
	KeyEventNeedsRotation = "ENCRYPTION_KEY_NEEDS_ROTATION"
	KeyEventValid         = "ENCRYPTION_KEY_VALID"
	KeyEventInvalid       = "ENCRYPTION_KEY_INVALID"

	// cmkdb's own cluster and node events.
	EventClusterEncryptionDisabled = "CLUSTER_ENCRYPTION_AT_REST_DISABLED"
	EventClusterEncryptionRestored = "CLUSTER_ENCRYPTION_AT_REST_AVAILABLE"
	EventMasterKeyRotated          = "NODE_MASTER_KEY_ROTATED"
	EventMasterKeyRewrapped        = "NODE_MASTER_KEY_REWRAPPED"
)

// keyEvent is the provider's event type: AWS + ENCRYPTION_KEY_INVALID.
func keyEvent(kind, suffix string) string { return kind + "_" + suffix }

// addEventLocked records an event in gs and recs (to be stored with the
// change that caused it), and opens or closes alerts it affects.
func (s *Service) addEventLocked(gs *groupState, recs map[string]any, e Event) {
	now := s.now()
	e.ID, e.GroupID, e.Created = newID(now), gs.group.ID, now
	// Events are read by every key with read access, and alerts and
	// webhook bodies are made from them.
	e.Detail = s.red.scrub(e.Detail)
	gs.events = append(gs.events, e)
	recs[eventKey(gs.group.ID, now, e.ID)] = e
	// Keep the newest events only: the oldest leave memory and the store
	// in the batch that adds the new one.
	if over := len(gs.events) - s.eventRetention(); over > 0 {
		for _, old := range gs.events[:over] {
			recs[eventKey(gs.group.ID, old.Created, old.ID)] = nil
		}
		gs.events = append([]Event(nil), gs.events[over:]...)
	}
	s.log.Info("event", "group", gs.group.ID, "type", e.EventTypeName, "cluster", e.ClusterName, "detail", e.Detail)
	s.alertOnEventLocked(gs, recs, e)
}

func eventKey(gid string, at time.Time, id string) string {
	return fmt.Sprintf("event/%s/%020s-%s", gid, strconv.FormatInt(at.UnixNano(), 10), id)
}

// Events lists a project's events, newest first, optionally of one type.
func (s *Service) Events(gid, eventType string) ([]Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	out := []Event{}
	for i := len(gs.events) - 1; i >= 0; i-- {
		if eventType == "" || gs.events[i].EventTypeName == eventType {
			out = append(out, gs.events[i])
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// DefaultEventRetention is how many events a project keeps.
const DefaultEventRetention = 10000

func (s *Service) eventRetention() int {
	if s.opts.EventRetention > 0 {
		return s.opts.EventRetention
	}
	return DefaultEventRetention
}
