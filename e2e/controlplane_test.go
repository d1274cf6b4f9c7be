package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// webhookReceiver records the alerts a control plane posts.
type webhookReceiver struct {
	*httptest.Server
	secret string
	mu     sync.Mutex
	got    []map[string]any
	bad    []string
}

func newWebhookReceiver(t *testing.T, secret string) *webhookReceiver {
	r := &webhookReceiver{secret: secret}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mac := hmac.New(sha1.New, []byte(secret))
		mac.Write(body)
		want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get("X-MMS-Signature") != want {
			r.bad = append(r.bad, "bad signature on "+string(body))
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			r.bad = append(r.bad, "bad body "+string(body))
		}
		r.got = append(r.got, m)
	}))
	t.Cleanup(r.Close)
	return r
}

// has reports whether an alert of eventType with status was received.
func (r *webhookReceiver) has(eventType, status string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		return fmt.Errorf("webhook: %v", r.bad)
	}
	for _, m := range r.got {
		if m["eventTypeName"] == eventType && m["status"] == status {
			return nil
		}
	}
	return fmt.Errorf("no %s %s alert among %d deliveries", status, eventType, len(r.got))
}

type clusterView struct {
	Name                     string `json:"name"`
	EncryptionAtRestProvider string `json:"encryptionAtRestProvider"`
	EncryptionAtRestStatus   struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"encryptionAtRestStatus"`
}

type nodeView struct {
	Name             string `json:"name"`
	State            string `json:"state"`
	MasterKeyVersion int    `json:"masterKeyVersion"`
	CMK              struct {
		Provider   string `json:"provider"`
		KeyID      string `json:"keyId"`
		KeyVersion string `json:"keyVersion"`
	} `json:"cmk"`
}

func clusterState(t *testing.T, api *e2etest.API, gid, name string) clusterView {
	t.Helper()
	var c clusterView
	api.Call(t, "GET", "/groups/"+gid+"/clusters/"+name, nil, &c)
	return c
}

func clusterNodes(t *testing.T, api *e2etest.API, gid, name string) []nodeView {
	t.Helper()
	var page struct {
		Results []nodeView `json:"results"`
	}
	api.Call(t, "GET", "/groups/"+gid+"/clusters/"+name+"/nodes", nil, &page)
	return page.Results
}

func eventNames(t *testing.T, api *e2etest.API, gid string) string {
	t.Helper()
	var page struct {
		Results []struct {
			EventTypeName string `json:"eventTypeName"`
		} `json:"results"`
	}
	api.Call(t, "GET", "/groups/"+gid+"/events?itemsPerPage=500", nil, &page)
	var names []string
	for _, e := range page.Results {
		names = append(names, e.EventTypeName)
	}
	return strings.Join(names, ",")
}

// TestControlPlaneRevocationThroughAPI: cmkdb up's cluster is managed by its
// control plane. Revoking the local CMK disables it at the next check
// (measured), shows in the admin API (cluster status, valid:false, events)
// and reaches a webhook; enabling it and "try again" brings it back with
// its data (measured).
func TestControlPlaneRevocationThroughAPI(t *testing.T) {
	// The webhook receiver is on loopback: allowed only on request.
	s := startServer(t, "--key-check-interval", "1s", "--allow-private-webhooks")
	api := s.UpAPI()
	gid := s.Info.GroupID

	atlas := api.Atlas(t)
	p, _, err := atlas.Projects.GetOneProject(opCtx(t), gid)
	if err != nil || p.Name != "Project0" {
		t.Fatalf("Atlas client GetOneProject: %+v %v", p, err)
	}
	hook := newWebhookReceiver(t, "hook-secret-e2e")
	api.Call(t, "POST", "/groups/"+gid+"/alertConfigs", map[string]any{
		"eventTypeName": "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "enabled": true,
		"notifications": []map[string]any{{"typeName": "WEBHOOK", "webhookUrl": hook.URL, "webhookSecret": "hook-secret-e2e"}},
	}, nil)

	c := connect(t, s.URI)
	writeLifecycleData(t, c)
	if st := clusterState(t, api, gid, "Cluster0"); st.EncryptionAtRestStatus.State != "AVAILABLE" || st.EncryptionAtRestProvider != "LOCAL" {
		t.Fatalf("Cluster0 at start: %+v", st)
	}

	revoked := time.Now()
	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--dir", s.Dir)
	e2etest.Eventually(t, stateTimeout, "writes refused after revocation", func() error {
		return findRefused(opCtx(t), c, "KEY_DISABLED")
	})
	t.Logf("MEASURE revocation -> data commands refused: %s (check interval 1s)", time.Since(revoked).Round(time.Millisecond))

	if st := clusterState(t, api, gid, "Cluster0"); st.EncryptionAtRestStatus.State != "DISABLED" || !strings.Contains(st.EncryptionAtRestStatus.Reason, "KEY_DISABLED") {
		t.Fatalf("cluster status after revocation: %+v", st)
	}
	var ear map[string]any
	api.Call(t, "GET", "/groups/"+gid+"/encryptionAtRest", nil, &ear)
	local, _ := ear["local"].(map[string]any)
	status, _ := ear["keyStatus"].(map[string]any)
	if local["valid"] != false || status["validity"] != "INVALID" {
		t.Fatalf("encryptionAtRest after revocation: %v", ear)
	}
	ev := eventNames(t, api, gid)
	for _, want := range []string{"LOCAL_ENCRYPTION_KEY_INVALID", "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "CLUSTER_ENCRYPTION_AT_REST_DISABLED"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %s: %s", want, ev)
		}
	}
	e2etest.Eventually(t, stateTimeout, "webhook receives the open alert", func() error {
		return hook.has("ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "OPEN")
	})

	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--dir", s.Dir)
	restored := time.Now()
	api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
	e2etest.Eventually(t, stateTimeout, "data readable after enable + try again", func() error {
		return readAll(opCtx(t), c)
	})
	t.Logf("MEASURE enable + try again -> serving: %s", time.Since(restored).Round(time.Millisecond))
	if st := clusterState(t, api, gid, "Cluster0"); st.EncryptionAtRestStatus.State != "AVAILABLE" {
		t.Fatalf("cluster status after restore: %+v", st)
	}
	e2etest.Eventually(t, stateTimeout, "webhook receives the closed alert", func() error {
		return hook.has("ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID", "CLOSED")
	})
	disconnect(c)
	s.Stop(t)
}

// TestControlPlaneUnreachableKMS moves Cluster0 to AWS KMS (the dev server)
// through the API — it is re-encrypted in place online — then makes
// the KMS unreachable: the cluster keeps serving and the network-access
// alert opens; a restart meanwhile starts the node disabled until the KMS
// answers again.
func TestControlPlaneUnreachableKMS(t *testing.T) {
	k := startDevKMS(t, "aws")
	dir := t.TempDir()
	s := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s")
	api := s.UpAPI()
	gid := s.Info.GroupID
	c := connect(t, s.URI)
	writeLifecycleData(t, c)

	// Changing provider: the cluster to NONE, the project to AWS, the cluster to AWS.
	api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "NONE"}, nil)
	waitClusterIdle(t, api, gid, "Cluster0") // re-encrypted in place
	api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{
		"local": map[string]any{"enabled": false},
	}, nil)
	api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"awsKms": map[string]any{
		"enabled": true, "customerMasterKeyID": k.Settings["keyId"], "region": k.Settings["region"],
		"accessKeyID": k.Settings["accessKeyId"], "secretAccessKey": k.Settings["secretAccessKey"], "endpoint": k.Endpoint,
	}}, nil)
	api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "AWS"}, nil)
	waitClusterIdle(t, api, gid, "Cluster0")
	e2etest.Eventually(t, stateTimeout, "node master key wrapped by AWS KMS", func() error {
		ns := clusterNodes(t, api, gid, "Cluster0")
		if len(ns) != 1 || ns[0].CMK.Provider != "aws" {
			return fmt.Errorf("nodes: %+v", ns)
		}
		return nil
	})
	if err := readAll(opCtx(t), c); err != nil {
		t.Fatalf("data after the provider change: %v", err)
	}

	admin(t, k, "/fail5xx?on=true")
	api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
	waitProjectUnreachableChecks(t, api, gid, 2) // the verdict, then more checks
	if err := readAll(opCtx(t), c); err != nil {
		t.Fatalf("cluster stopped serving while its KMS was unreachable: %v", err)
	}
	if st := clusterState(t, api, gid, "Cluster0"); st.EncryptionAtRestStatus.State != "AVAILABLE" {
		t.Fatalf("cluster disabled by an unreachable KMS: %+v", st)
	}
	var alerts struct {
		Results []struct {
			EventTypeName string `json:"eventTypeName"`
		} `json:"results"`
	}
	api.Call(t, "GET", "/groups/"+gid+"/alerts?status=OPEN", nil, &alerts)
	if len(alerts.Results) == 0 || alerts.Results[0].EventTypeName != "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED" {
		t.Fatalf("open alerts while unreachable: %+v", alerts)
	}

	// Restart while the KMS is unreachable: the node starts disabled.
	disconnect(c)
	s.Stop(t)
	s2 := e2etest.Start(t, cmkdbBin, dir, "--key-check-interval", "1s")
	if s2.Info.State == "AVAILABLE" {
		t.Fatal("node started AVAILABLE while its KMS was unreachable")
	}
	c2 := connect(t, s2.URI)
	if err := findRefused(opCtx(t), c2, "SERVER_ERROR"); err != nil {
		t.Fatal(err)
	}
	admin(t, k, "/fail5xx?on=false")
	e2etest.Eventually(t, stateTimeout, "data readable once the KMS answers", func() error {
		return readAll(opCtx(t), c2)
	})
	disconnect(c2)
	s2.Stop(t)
}
