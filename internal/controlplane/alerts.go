package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/webhook"
)

// closingEvents maps an event to the alert types it resolves.
func closingEvents(eventType string) []string {
	switch {
	case eventType == EventKMSNetworkAccessRestored:
		return []string{EventKMSNetworkAccessDenied}
	case eventType == EventConfigIsValid:
		return []string{EventConfigNoLongerValid}
	case strings.HasSuffix(eventType, "_"+KeyEventValid):
		return []string{strings.TrimSuffix(eventType, KeyEventValid) + KeyEventInvalid}
	case strings.HasSuffix(eventType, "_"+KeyEventRotated):
		return []string{strings.TrimSuffix(eventType, KeyEventRotated) + KeyEventNeedsRotation}
	case eventType == EventClusterEncryptionRestored:
		return []string{EventClusterEncryptionDisabled}
	}
	return nil
}

// alertable reports whether an event type can open an alert.
func alertable(eventType string) bool {
	return eventType == EventKMSNetworkAccessDenied || eventType == EventConfigNoLongerValid ||
		strings.HasSuffix(eventType, "_"+KeyEventInvalid) || strings.HasSuffix(eventType, "_"+KeyEventNeedsRotation) ||
		eventType == EventClusterEncryptionDisabled
}

// alertOnEventLocked opens an alert for each enabled configuration of the
// event's type (one open alert per configuration), and closes the open
// alerts the event resolves. Every opened or closed alert is delivered.
func (s *Service) alertOnEventLocked(gs *groupState, recs map[string]any, e Event) {
	now := s.now()
	for _, closes := range closingEvents(e.EventTypeName) {
		for _, a := range gs.alerts {
			// A cluster's event closes that cluster's alert only.
			otherCluster := e.ClusterName != "" && a.ClusterName != "" && a.ClusterName != e.ClusterName
			if a.EventTypeName == closes && a.Status == "OPEN" && !otherCluster {
				a.Status, a.Updated = "CLOSED", now
				resolved := now
				a.Resolved = &resolved
				recs["alert/"+gs.group.ID+"/"+a.ID] = *a
				s.deliverLocked(gs, *a)
			}
		}
	}
	if !alertable(e.EventTypeName) {
		return
	}
	for _, c := range gs.configs {
		if !c.Enabled || c.EventTypeName != e.EventTypeName {
			continue
		}
		if s.openAlertForLocked(gs, c.ID, e.ClusterName) != nil {
			continue
		}
		a := Alert{ID: newID(now), GroupID: gs.group.ID, AlertConfigID: c.ID, EventTypeName: e.EventTypeName,
			Status: "OPEN", Created: now, Updated: now, ClusterName: e.ClusterName, Detail: e.Detail}
		gs.alerts[a.ID] = &a
		recs["alert/"+gs.group.ID+"/"+a.ID] = a
		s.deliverLocked(gs, a)
	}
}

// openAlertForLocked is the open alert of a configuration for a cluster
// (each cluster has its own; "" for project-wide events).
func (s *Service) openAlertForLocked(gs *groupState, configID, cluster string) *Alert {
	for _, a := range gs.alerts {
		if a.AlertConfigID == configID && a.Status == "OPEN" && a.ClusterName == cluster {
			return a
		}
	}
	return nil
}

func (s *Service) openAlertLocked(gs *groupState, configID string) *Alert {
	for _, a := range gs.alerts {
		if a.AlertConfigID == configID && a.Status == "OPEN" {
			return a
		}
	}
	return nil
}

// webhookPayload is what a webhook receives, shaped like Atlas's.
type webhookPayload struct {
	Alert
	HumanReadable string `json:"humanReadable"`
}

func (s *Service) deliverLocked(gs *groupState, a Alert) {
	c, ok := gs.configs[a.AlertConfigID]
	if !ok || s.opts.Notifier == nil {
		return
	}
	for _, n := range c.Notifications {
		if n.TypeName != "WEBHOOK" || n.WebhookURL == "" {
			continue
		}
		body, _ := json.Marshal(webhookPayload{Alert: a, HumanReadable: fmt.Sprintf("%s alert %s in project %s: %s",
			a.EventTypeName, strings.ToLower(a.Status), gs.group.Name, a.Detail)})
		s.opts.Notifier.Notify(context.Background(), n.WebhookURL, []byte(n.WebhookSecret), body, a.ID+"-"+a.Status)
	}
}

// AlertConfigs lists a project's alert configurations; webhook secrets are
// never returned.
func (s *Service) AlertConfigs(gid string) ([]AlertConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	out := []AlertConfig{}
	for _, c := range gs.configs {
		out = append(out, redactConfig(*c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// AlertConfig returns one alert configuration.
func (s *Service) AlertConfig(gid, id string) (AlertConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return AlertConfig{}, err
	}
	c, ok := gs.configs[id]
	if !ok {
		return AlertConfig{}, notFound("alertConfig", id)
	}
	return redactConfig(*c), nil
}

func redactConfig(c AlertConfig) AlertConfig {
	ns := make([]Notification, len(c.Notifications))
	copy(ns, c.Notifications)
	for i := range ns {
		if ns[i].WebhookSecret != "" {
			ns[i].WebhookSecret = "****************"
		}
	}
	c.Notifications = ns
	return c
}

func (s *Service) validateAlertConfig(c *AlertConfig) error {
	if c.EventTypeName == "" {
		return missingAttr("eventTypeName")
	}
	if len(c.Notifications) == 0 {
		return missingAttr("notifications")
	}
	for _, n := range c.Notifications {
		switch n.TypeName {
		case "WEBHOOK":
			u, err := url.Parse(n.WebhookURL)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return invalidAttr("notifications.webhookUrl", "must be an http or https URL")
			}
			if err := webhook.CheckHost(u.Hostname(), s.opts.AllowPrivateWebhooks); err != nil {
				return invalidAttr("notifications.webhookUrl", "the control plane does not deliver to "+u.Hostname()+
					": link-local and cloud metadata addresses are refused, loopback and private ones unless the control plane runs with --allow-private-webhooks")
			}
		case "GROUP":
			// The alert list of the project: nothing leaves cmkdb.
		case "EMAIL", "ORG", "USER", "SLACK", "PAGER_DUTY", "OPS_GENIE", "VICTOR_OPS", "DATADOG", "MICROSOFT_TEAMS", "SMS":
			// Accepting these would record a notification nobody receives.
			return invalidAttr("notifications.typeName", n.TypeName+" notifications are not delivered by cmkdb: use WEBHOOK, or GROUP to have the alert listed in the project")
		case "":
			return missingAttr("notifications.typeName")
		default:
			return invalidAttr("notifications.typeName", n.TypeName+" is not a notification type")
		}
	}
	if c.Threshold != nil && c.Threshold.Threshold < 0 {
		return invalidAttr("threshold.threshold", "must not be negative")
	}
	if c.Matchers == nil {
		c.Matchers = []any{}
	}
	return nil
}

// CreateAlertConfig adds an alert configuration.
func (s *Service) CreateAlertConfig(_ context.Context, gid string, c AlertConfig) (AlertConfig, error) {
	if err := s.validateAlertConfig(&c); err != nil {
		return AlertConfig{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return AlertConfig{}, err
	}
	now := s.now()
	c.ID, c.GroupID, c.Created, c.Updated = newID(now), gid, now, now
	if err := s.st.put(map[string]any{"alertcfg/" + gid + "/" + c.ID: c}); err != nil {
		return AlertConfig{}, err
	}
	gs.configs[c.ID] = &c
	s.evaluateRotationAgeLocked(gs, nil)
	return redactConfig(c), nil
}

// UpdateAlertConfig replaces an alert configuration (PUT) or, with only
// enabled set, toggles it (PATCH).
func (s *Service) UpdateAlertConfig(_ context.Context, gid, id string, c AlertConfig, toggleOnly bool) (AlertConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return AlertConfig{}, err
	}
	old, ok := gs.configs[id]
	if !ok {
		return AlertConfig{}, notFound("alertConfig", id)
	}
	next := *old
	if toggleOnly {
		next.Enabled = c.Enabled
	} else {
		if err := s.validateAlertConfig(&c); err != nil {
			return AlertConfig{}, err
		}
		// A webhook secret shown masked and sent back unchanged keeps the stored one.
		for i := range c.Notifications {
			if strings.Trim(c.Notifications[i].WebhookSecret, "*") == "" && c.Notifications[i].WebhookSecret != "" && i < len(old.Notifications) {
				c.Notifications[i].WebhookSecret = old.Notifications[i].WebhookSecret
			}
		}
		c.ID, c.GroupID, c.Created = old.ID, old.GroupID, old.Created
		next = c
	}
	next.Updated = s.now()
	if err := s.st.put(map[string]any{"alertcfg/" + gid + "/" + id: next}); err != nil {
		return AlertConfig{}, err
	}
	gs.configs[id] = &next
	return redactConfig(next), nil
}

// DeleteAlertConfig removes an alert configuration.
func (s *Service) DeleteAlertConfig(_ context.Context, gid, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return err
	}
	if _, ok := gs.configs[id]; !ok {
		return notFound("alertConfig", id)
	}
	if err := s.st.put(map[string]any{"alertcfg/" + gid + "/" + id: nil}); err != nil {
		return err
	}
	delete(gs.configs, id)
	return nil
}

// Alerts lists a project's alerts, newest first; status filters (OPEN, CLOSED).
func (s *Service) Alerts(gid, status string) ([]Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return nil, err
	}
	out := []Alert{}
	for _, a := range gs.alerts {
		if status == "" || a.Status == status {
			out = append(out, *a)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Created.After(out[j].Created) || (out[i].Created.Equal(out[j].Created) && out[i].ID > out[j].ID)
	})
	return out, nil
}

// GetAlert returns one alert.
func (s *Service) GetAlert(gid, id string) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gs, err := s.group(gid)
	if err != nil {
		return Alert{}, err
	}
	a, ok := gs.alerts[id]
	if !ok {
		return Alert{}, notFound("alert", id)
	}
	return *a, nil
}

// evaluateRotationAgeLocked opens a *_ENCRYPTION_KEY_NEEDS_ROTATION alert
// when the project's key is older than a configuration's threshold.
func (s *Service) evaluateRotationAgeLocked(gs *groupState, recs map[string]any) {
	if gs.ear.Kind == "" || gs.ear.Key.RotatedAt.IsZero() {
		return
	}
	own := recs == nil
	if own {
		recs = map[string]any{}
	}
	et := keyEvent(gs.ear.Kind, KeyEventNeedsRotation)
	age := s.now().Sub(gs.ear.Key.RotatedAt)
	for _, c := range gs.configs {
		if !c.Enabled || c.EventTypeName != et || s.openAlertLocked(gs, c.ID) != nil {
			continue
		}
		days := DefaultRotationAlertDays
		if c.Threshold != nil {
			days = c.Threshold.Threshold
		}
		if age > time.Duration(days)*24*time.Hour {
			s.addEventLocked(gs, recs, Event{EventTypeName: et,
				Detail: fmt.Sprintf("key %s last rotated %s ago (threshold %d days)", gs.ear.Key.Key, age.Round(time.Hour), days)})
		}
	}
	if own && len(recs) > 0 {
		if err := s.st.put(recs); err != nil {
			s.log.Error("recording rotation alert", "err", err)
		}
	}
}
