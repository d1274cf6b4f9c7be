package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openService(t *testing.T, dir string, clk *clock) *Service {
	t.Helper()
	opts := Options{Dir: dir, MinCheckInterval: time.Second, ProviderPaths: []string{os.TempDir()}}
	if clk != nil {
		opts.Now = clk.Now
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func patch(t *testing.T, s *Service, gid, body string) (map[string]any, error) {
	t.Helper()
	p, err := ParseEARPatch([]byte(body))
	if err != nil {
		return nil, err
	}
	return s.PatchEncryptionAtRest(context.Background(), "test", gid, p)
}

// localProject makes a project whose encryption at rest uses a local key
// file, and a cluster using it.
func localProject(t *testing.T, s *Service) (gid, keyFile string) {
	t.Helper()
	ctx := context.Background()
	keyFile = filepath.Join(t.TempDir(), "cmk.json")
	if _, err := local.Create(keyFile); err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, "test", "P-"+filepath.Base(t.TempDir()), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := patch(t, s, g.ID, fmt.Sprintf(`{"local":{"enabled":true,"keyFile":%q}}`, keyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, "test", g.ID, Cluster{Name: "C0", EncryptionAtRestProvider: ProviderLocal}); err != nil {
		t.Fatal(err)
	}
	return g.ID, keyFile
}

func eventTypes(t *testing.T, s *Service, gid string) string {
	t.Helper()
	evs, err := s.Events(gid, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range evs {
		names = append(names, e.EventTypeName)
	}
	return strings.Join(names, ",")
}

// TestRevocationDisablesAndRestoreEnables walks the state machine with a
// real local key file: INVALID refuses node unwraps and says so in the
// directive, the cluster status and events; VALID restores all of it.
func TestRevocationDisablesAndRestoreEnables(t *testing.T) {
	ctx := context.Background()
	s := openService(t, t.TempDir(), nil)
	gid, keyFile := localProject(t, s)
	id := NodeID{GroupID: gid, Cluster: "C0", Name: "n1"}
	master := []byte("0123456789abcdef0123456789abcdef")
	w, err := s.NodeWrap(ctx, id, master, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := local.Disable(keyFile); err != nil {
		t.Fatal(err)
	}
	k, err := s.CheckNow(ctx, gid)
	if err != nil || k.Validity != "INVALID" || k.Reason != kms.ReasonKeyDisabled {
		t.Fatalf("after disable: %+v, %v", k, err)
	}
	if _, err := s.NodeUnwrap(ctx, id, w, []byte("aad")); !errors.Is(err, kms.ErrKeyDisabled) {
		t.Fatalf("unwrap while INVALID: %v, want ErrKeyDisabled", err)
	}
	d, err := s.NodeDirective(ctx, id, 0)
	if err != nil || d.Validity != "INVALID" || d.Reason != kms.ReasonKeyDisabled {
		t.Fatalf("directive while INVALID: %+v %v", d, err)
	}
	c, _ := s.GetCluster(gid, "C0")
	if c.EncryptionAtRestStatus.State != "DISABLED" || !strings.Contains(c.EncryptionAtRestStatus.Reason, "KEY_DISABLED") {
		t.Fatalf("cluster status while INVALID: %+v", c.EncryptionAtRestStatus)
	}
	ev := eventTypes(t, s, gid)
	for _, want := range []string{"LOCAL_ENCRYPTION_KEY_INVALID", EventConfigNoLongerValid, EventClusterEncryptionDisabled} {
		if !strings.Contains(ev, want) {
			t.Errorf("events %s lack %s", ev, want)
		}
	}
	// Cluster updates are queued while disabled.
	disk := 40.0
	if _, err := s.UpdateCluster(ctx, "test", gid, "C0", ClusterPatch{DiskSizeGB: &disk}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.GetCluster(gid, "C0"); c.DiskSizeGB != nil || c.PendingChanges == nil {
		t.Fatalf("update applied to a disabled cluster: %+v", c)
	}

	if _, err := local.Enable(keyFile); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.CheckNow(ctx, gid); k.Validity != "VALID" {
		t.Fatalf("after enable: %+v", k)
	}
	back, err := s.NodeUnwrap(ctx, id, w, []byte("aad"))
	if err != nil || string(back) != string(master) {
		t.Fatalf("unwrap after restore: %q %v", back, err)
	}
	if d2, _ := s.NodeDirective(ctx, id, d.Gen); d2.Validity != "VALID" || d2.Gen <= d.Gen {
		t.Fatalf("directive after restore: %+v (previous gen %d)", d2, d.Gen)
	}
	c, _ = s.GetCluster(gid, "C0")
	if c.EncryptionAtRestStatus.State != "AVAILABLE" || c.DiskSizeGB == nil || *c.DiskSizeGB != 40 || c.PendingChanges != nil {
		t.Fatalf("cluster after restore: %+v", c)
	}
	if ev := eventTypes(t, s, gid); !strings.Contains(ev, "LOCAL_ENCRYPTION_KEY_VALID") || !strings.Contains(ev, EventConfigIsValid) {
		t.Errorf("events after restore: %s", ev)
	}
}

// TestNodeKeysAreBoundToTheNode: the key service binds every wrap to the
// node's certificate identity, so a node cannot unwrap another's key.
func TestNodeKeysAreBoundToTheNode(t *testing.T) {
	ctx := context.Background()
	s := openService(t, t.TempDir(), nil)
	gid, _ := localProject(t, s)
	a := NodeID{GroupID: gid, Cluster: "C0", Name: "a"}
	b := NodeID{GroupID: gid, Cluster: "C0", Name: "b"}
	w, err := s.NodeWrap(ctx, a, []byte("master-key-of-node-a-32-bytes!!!"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeUnwrap(ctx, b, w, []byte("x")); err == nil {
		t.Fatal("node b unwrapped node a's key")
	}
	if _, err := s.NodeUnwrap(ctx, NodeID{GroupID: gid, Cluster: "nope", Name: "a"}, w, []byte("x")); !errors.Is(err, ErrUnknownCluster) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if _, err := s.NodeUnwrap(ctx, a, w, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachableKeepsServing: a KMS that answers 5xx is UNREACHABLE: the
// cluster stays available, the network-access-denied alert opens (it is on
// by default), and closes when the KMS answers again.
func TestUnreachableKeepsServing(t *testing.T) {
	ctx := context.Background()
	srv := awstest.NewServer(awstest.Options{Credentials: map[string]string{"AKIDTEST0000000000": "s3cret-aws-key"}})
	defer srv.Close()
	_, arn := srv.CreateSymmetricKey()
	s := openService(t, t.TempDir(), nil)
	g, err := s.CreateGroup(ctx, "test", "aws", "")
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"awsKms":{"enabled":true,"customerMasterKeyID":%q,"region":"US_EAST_1","accessKeyID":"AKIDTEST0000000000","secretAccessKey":"s3cret-aws-key","endpoint":%q}}`, arn, srv.URL)
	if _, err := patch(t, s, g.ID, body); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCluster(ctx, "test", g.ID, Cluster{Name: "C0", EncryptionAtRestProvider: ProviderAWS}); err != nil {
		t.Fatal(err)
	}
	srv.Fail5xx(true)
	k, _ := s.CheckNow(ctx, g.ID)
	if !k.Unreachable || k.Validity != "VALID" {
		t.Fatalf("5xx: %+v", k)
	}
	c, _ := s.GetCluster(g.ID, "C0")
	if c.EncryptionAtRestStatus.State != "AVAILABLE" {
		t.Fatalf("cluster disabled by an unreachable KMS: %+v", c.EncryptionAtRestStatus)
	}
	open, _ := s.Alerts(g.ID, "OPEN")
	if len(open) != 1 || open[0].EventTypeName != EventKMSNetworkAccessDenied {
		t.Fatalf("open alerts: %+v", open)
	}
	if d, _ := s.NodeDirective(ctx, NodeID{GroupID: g.ID, Cluster: "C0", Name: "n"}, 0); d.Validity != "UNREACHABLE" {
		t.Fatalf("directive: %+v", d)
	}
	srv.Fail5xx(false)
	if k, _ := s.CheckNow(ctx, g.ID); k.Unreachable || k.Validity != "VALID" {
		t.Fatalf("after recovery: %+v", k)
	}
	if open, _ := s.Alerts(g.ID, "OPEN"); len(open) != 0 {
		t.Fatalf("alerts still open: %+v", open)
	}
	if ev := eventTypes(t, s, g.ID); !strings.Contains(ev, EventKMSNetworkAccessRestored) {
		t.Errorf("events: %s", ev)
	}
	// The secret is nowhere in what the API shows.
	view, _ := s.EncryptionAtRest(ctx, g.ID, false)
	if strings.Contains(fmt.Sprint(view), "s3cret-aws-key") || strings.Contains(fmt.Sprint(view), "secretAccessKey") {
		t.Fatalf("secret in the resource: %v", view)
	}
}

// TestStateSurvivesReopen: configuration, key state and events are durable
// and the store holds no secret in plaintext.
func TestStateSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := openService(t, dir, nil)
	gid, keyFile := localProject(t, s)
	if _, err := local.Disable(keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckNow(context.Background(), gid); err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateAPIKey(context.Background(), "k", []RoleAssignment{{RoleName: RoleOrgOwner}})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if leaked := grepDir(t, dir, k.PrivateKey, keyFile); leaked != "" {
		t.Fatalf("plaintext in %s", leaked)
	}
	s2 := openService(t, dir, nil)
	c, err := s2.GetCluster(gid, "C0")
	if err != nil || c.EncryptionAtRestStatus.State != "DISABLED" {
		t.Fatalf("after reopen: %+v %v", c, err)
	}
	if sec, ok := s2.APIKeySecret(k.PublicKey); !ok || string(sec) != k.PrivateKey {
		t.Fatal("API key lost on reopen")
	}
	if !strings.Contains(eventTypes(t, s2, gid), "LOCAL_ENCRYPTION_KEY_INVALID") {
		t.Fatal("events lost on reopen")
	}
}

// TestRollingRotation: a node whose master key is older than the rotation
// period is asked to rotate, one node of a cluster at a time, only inside
// the maintenance window, and not while deferred; the manual action asks
// for every node regardless of the window.
func TestRollingRotation(t *testing.T) {
	clk := &clock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)} // a Sunday
	s := openService(t, t.TempDir(), clk)
	gid, _ := localProject(t, s)
	old := clk.Now().Add(-100 * 24 * time.Hour)
	for _, n := range []string{"a", "b"} {
		if err := s.NodeReport(NodeID{GroupID: gid, Cluster: "C0", Name: n}, NodeReport{State: "AVAILABLE", MasterKeyVersion: 1, MasterKeyCreatedAt: old}); err != nil {
			t.Fatal(err)
		}
	}
	rotate := func(n string) uint64 {
		now, cancel := context.WithCancel(context.Background())
		cancel() // the current directive, without waiting for a newer one
		d, err := s.NodeDirective(now, NodeID{GroupID: gid, Cluster: "C0", Name: n}, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		return d.Rotate
	}
	// Window: Monday 03:00 — now is outside it.
	if _, err := s.SetMaintenanceWindow(gid, MaintenanceWindow{DayOfWeek: 2, HourOfDay: 3}); err != nil {
		t.Fatal(err)
	}
	s.scheduleRotations()
	if rotate("a") != 0 || rotate("b") != 0 {
		t.Fatal("rotation requested outside the maintenance window")
	}
	clk.Add(17 * time.Hour) // Monday 03:00
	if err := s.DeferMaintenance(gid); err != nil {
		t.Fatal(err)
	}
	s.scheduleRotations()
	if rotate("a") != 0 {
		t.Fatal("rotation requested while deferred")
	}
	clk.Add(7 * 24 * time.Hour) // next Monday 03:00, deferral over
	s.scheduleRotations()
	if rotate("a") != 1 || rotate("b") != 0 {
		t.Fatalf("want node a alone asked to rotate: a=%d b=%d", rotate("a"), rotate("b"))
	}
	s.scheduleRotations()
	if rotate("b") != 0 {
		t.Fatal("node b asked while node a's rotation is outstanding")
	}
	if err := s.NodeReport(NodeID{GroupID: gid, Cluster: "C0", Name: "a"}, NodeReport{State: "AVAILABLE", MasterKeyVersion: 2, MasterKeyCreatedAt: clk.Now(), RotateApplied: 1}); err != nil {
		t.Fatal(err)
	}
	s.scheduleRotations()
	if rotate("b") != 1 {
		t.Fatal("node b not asked after node a finished")
	}
	if !strings.Contains(eventTypes(t, s, gid), EventMasterKeyRotated) {
		t.Error("no rotation event")
	}
	// Manual: both asked again in turn, outside the window.
	if err := s.NodeReport(NodeID{GroupID: gid, Cluster: "C0", Name: "b"}, NodeReport{State: "AVAILABLE", MasterKeyVersion: 2, MasterKeyCreatedAt: clk.Now(), RotateApplied: 1}); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if err := s.RotateMasterKeys(context.Background(), "test", gid, "C0"); err != nil {
		t.Fatal(err)
	}
	if rotate("a") != 2 || rotate("b") != 1 {
		t.Fatalf("manual rotation: a=%d b=%d", rotate("a"), rotate("b"))
	}
}

// TestProviderFilesMustBeAllowed: an API caller cannot point the control
// plane at a file (a key file, a PKCS#11 module) outside the directories it
// was started to allow.
func TestProviderFilesMustBeAllowed(t *testing.T) {
	ctx := context.Background()
	allowed := t.TempDir()
	s, err := Open(ctx, Options{Dir: t.TempDir(), ProviderPaths: []string{allowed}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := s.CreateGroup(ctx, "test", "paths", "")
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "cmk.json")
	if _, err := local.Create(outside); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(allowed, "link.json")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, body string }{
		{"outside", fmt.Sprintf(`{"local":{"keyFile":%q}}`, outside)},
		{"dotdot", fmt.Sprintf(`{"local":{"keyFile":%q}}`, allowed+"/../x.json")},
		{"symlink out", fmt.Sprintf(`{"local":{"keyFile":%q}}`, link)},
		{"relative", `{"local":{"keyFile":"cmk.json"}}`},
		{"pkcs11 module", `{"pkcs11":{"modulePath":"/usr/lib/evil.so","tokenLabel":"t","keyLabel":"k","pin":"1234"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := patch(t, s, g.ID, tc.body)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Code != "INVALID_ATTRIBUTE" {
				t.Fatalf("got %v, want INVALID_ATTRIBUTE", err)
			}
		})
	}
	inside := filepath.Join(allowed, "cmk.json")
	if _, err := local.Create(inside); err != nil {
		t.Fatal(err)
	}
	if _, err := patch(t, s, g.ID, fmt.Sprintf(`{"local":{"keyFile":%q}}`, inside)); err != nil {
		t.Fatal(err)
	}
}

// TestEventRetention: a project keeps its newest events only, in memory and
// in the store, across a reopen.
func TestEventRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Options{Dir: dir, EventRetention: 5, ProviderPaths: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.CreateGroup(ctx, "test", "events", "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if _, err := s.CreateCluster(ctx, "test", g.ID, Cluster{Name: fmt.Sprintf("c%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	evs, _ := s.Events(g.ID, "")
	if len(evs) != 5 || evs[0].ClusterName != "c11" {
		t.Fatalf("events kept: %d, newest %+v", len(evs), evs[0])
	}
	s.Close()
	s2, err := Open(ctx, Options{Dir: dir, EventRetention: 5, ProviderPaths: []string{os.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	evs, _ = s2.Events(g.ID, "")
	if len(evs) != 5 || evs[0].ClusterName != "c11" || evs[4].ClusterName != "c7" {
		t.Fatalf("events after reopen: %+v", evs)
	}
}
