package controlplane

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms/local"
)

// hookBodies records what the service hands to webhooks.
type hookBodies struct {
	mu   sync.Mutex
	urls []string
	got  []webhookPayload
}

func (h *hookBodies) Notify(_ context.Context, url string, _ []byte, body []byte, _ string) {
	var p webhookPayload
	_ = json.Unmarshal(body, &p)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.urls = append(h.urls, url)
	h.got = append(h.got, p)
}

func (h *hookBodies) list() []webhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhookPayload(nil), h.got...)
}

// TestClusterStateAndDisabledAlert: a cluster is CREATING until its node
// reports, then IDLE; UPDATING while a rotation rolls. A cluster disabled
// by an invalid key opens the default alert (delivered to the webhook
// added to it) and closes it when it is back, and its
// encryptionAtRestStatus.since is then the time it came back.
func TestClusterStateAndDisabledAlert(t *testing.T) {
	ctx := context.Background()
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	hooks := &hookBodies{}
	s, err := Open(ctx, Options{Dir: t.TempDir(), MinCheckInterval: time.Second, Now: clk.Now, Notifier: hooks,
		ProviderPaths: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	gid, keyFile := localProject(t, s)

	// Every project starts with the cluster-disabled alert configuration.
	cfgs, _ := s.AlertConfigs(gid)
	var disabledCfg *AlertConfig
	types := []string{}
	for i, c := range cfgs {
		types = append(types, c.EventTypeName)
		if c.EventTypeName == EventClusterEncryptionDisabled {
			disabledCfg = &cfgs[i]
		}
	}
	for _, want := range []string{EventKMSNetworkAccessDenied, EventConfigNoLongerValid, EventClusterEncryptionDisabled} {
		if !strings.Contains(strings.Join(types, ","), want) {
			t.Fatalf("default alert configurations %v lack %s", types, want)
		}
	}
	// Deliver it to a webhook.
	next := *disabledCfg
	next.Notifications = append(next.Notifications, Notification{TypeName: "WEBHOOK", WebhookURL: "https://hooks.example.com/ear"})
	if _, err := s.UpdateAlertConfig(ctx, gid, next.ID, next, false); err != nil {
		t.Fatal(err)
	}

	c, _ := s.GetCluster(gid, "C0")
	if c.StateName != "CREATING" {
		t.Fatalf("stateName before any node reported: %s", c.StateName)
	}
	created := c.CreateDate
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n1"}
	report := NodeReport{Address: "127.0.0.1:27017", State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: clk.Now()}
	if err := s.NodeReport(id, report); err != nil {
		t.Fatal(err)
	}
	if c, _ = s.GetCluster(gid, "C0"); c.StateName != "IDLE" {
		t.Fatalf("stateName once the node reports: %s", c.StateName)
	}
	clk.Add(time.Minute)
	if err := s.RotateMasterKeys(ctx, "test", gid, "C0"); err != nil {
		t.Fatal(err)
	}
	if c, _ = s.GetCluster(gid, "C0"); c.StateName != "UPDATING" {
		t.Fatalf("stateName while a rotation rolls: %s", c.StateName)
	}
	nodes, _ := s.Nodes(gid, "C0")
	report.RotateApplied, report.MasterKeyVersion = nodes[0].RotateRequested, 2
	if err := s.NodeReport(id, report); err != nil {
		t.Fatal(err)
	}
	if c, _ = s.GetCluster(gid, "C0"); c.StateName != "IDLE" {
		t.Fatalf("stateName after the rotation: %s", c.StateName)
	}

	// DISABLED: the alert opens and reaches the webhook.
	clk.Add(time.Hour)
	if _, err := local.Disable(keyFile); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.CheckNow(ctx, gid); k.Validity != "INVALID" {
		t.Fatalf("key %+v", k)
	}
	open, _ := s.Alerts(gid, "OPEN")
	found := false
	for _, a := range open {
		found = found || (a.EventTypeName == EventClusterEncryptionDisabled && a.ClusterName == "C0")
	}
	if !found {
		t.Fatalf("no open cluster-disabled alert for C0: %+v", open)
	}
	// AVAILABLE again: closed and delivered; since is now.
	clk.Add(time.Hour)
	back := clk.Now()
	if _, err := local.Enable(keyFile); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.CheckNow(ctx, gid); k.Validity != "VALID" {
		t.Fatalf("key %+v", k)
	}
	all, _ := s.Alerts(gid, "")
	for _, a := range all {
		if a.EventTypeName == EventClusterEncryptionDisabled && a.Status != "CLOSED" {
			t.Fatalf("cluster-disabled alert still %s", a.Status)
		}
	}
	var states []string
	for _, p := range hooks.list() {
		if p.EventTypeName == EventClusterEncryptionDisabled {
			states = append(states, p.Status)
		}
	}
	if strings.Join(states, ",") != "OPEN,CLOSED" {
		t.Fatalf("webhook deliveries of the cluster-disabled alert: %v", states)
	}
	c, _ = s.GetCluster(gid, "C0")
	if c.EncryptionAtRestStatus.State != "AVAILABLE" || !c.EncryptionAtRestStatus.Since.Equal(back) || c.EncryptionAtRestStatus.Since.Equal(created) {
		t.Fatalf("status after coming back %+v, want AVAILABLE since %s", c.EncryptionAtRestStatus, back)
	}
}

// TestUndeliveredNotificationTypesRefused: a notification cmkdb would not
// deliver is refused rather than recorded and dropped.
func TestUndeliveredNotificationTypesRefused(t *testing.T) {
	s := openService(t, t.TempDir(), nil)
	g, err := s.CreateGroup(context.Background(), "test", "P", "")
	if err != nil {
		t.Fatal(err)
	}
	for typ, ok := range map[string]bool{"EMAIL": false, "SMS": false, "SLACK": false, "PAGER_DUTY": false, "USER": false, "GROUP": true} {
		_, err := s.CreateAlertConfig(context.Background(), g.ID, AlertConfig{EventTypeName: EventConfigNoLongerValid, Enabled: true,
			Notifications: []Notification{{TypeName: typ, EmailAddress: "ops@example.com"}}})
		if (err == nil) != ok {
			t.Errorf("%s: %v, want accepted=%v", typ, err, ok)
		}
		if err != nil && AsAPIError(err).Code != "INVALID_ATTRIBUTE" {
			t.Errorf("%s: %v", typ, err)
		}
	}
}
