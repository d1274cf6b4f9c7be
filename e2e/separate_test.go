package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/tlsutil"
)

// TestControlPlaneAndNodeAsSeparateProcesses runs `cmkdb controlplane
// serve` and a `cmkdb node` configured with kms.controlPlane as two
// processes: the node holds no KMS credential and reaches its CMK through
// the key service (mutual TLS, its certificate from `issue-node-cert`).
// Revocation disables it; enable + try again restores it.
func TestControlPlaneAndNodeAsSeparateProcesses(t *testing.T) {
	cpDir := t.TempDir()
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ksAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := &e2etest.SyncBuffer{}
	cp := exec.Command(cmkdbBin, "controlplane", "serve", "--dir", cpDir, "--api-addr", apiAddr,
		"--key-service-addr", ksAddr, "--min-check-interval", "1s", "--allow-provider-path", os.TempDir())
	cp.Stdout, cp.Stderr = out, out
	if err := cp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cp.Process.Kill()
		_ = cp.Wait()
		if t.Failed() {
			t.Logf("controlplane output:\n%s", out.String())
		}
	})
	var info struct {
		APIURL, KeyServiceURL, CAFile, APIPublicKey, APIPrivateKey string
	}
	e2etest.Eventually(t, e2etest.StartTimeout, "controlplane.json", func() error {
		js, err := os.ReadFile(filepath.Join(cpDir, "controlplane.json"))
		if err != nil {
			return err
		}
		return json.Unmarshal(js, &info)
	})
	api := e2etest.NewAPI(info.APIURL, info.APIPublicKey, info.APIPrivateKey)

	keyFile := filepath.Join(t.TempDir(), "cmk.json")
	e2etest.CLI(t, cmkdbBin, "kms", "local", "create", "--key", keyFile)
	var g struct{ ID string }
	api.Call(t, "POST", "/groups", map[string]any{"name": "separate"}, &g)
	api.Call(t, "PATCH", "/groups/"+g.ID+"/encryptionAtRest", map[string]any{
		"local": map[string]any{"enabled": true, "keyFile": keyFile}, "settings": map[string]any{"validityCheckIntervalSeconds": 1}}, nil)
	api.Call(t, "POST", "/groups/"+g.ID+"/clusters", map[string]any{"name": "C1", "encryptionAtRestProvider": "LOCAL"}, nil)

	certDir := t.TempDir()
	e2etest.CLI(t, cmkdbBin, "controlplane", "issue-node-cert", "--dir", cpDir, "--group", g.ID, "--cluster", "C1", "--name", "n1", "--out", certDir)
	nodeDir := t.TempDir()
	cfg := map[string]any{"dir": nodeDir, "port": freePort(t), "kms": map[string]any{"provider": "controlplane",
		"controlPlane": map[string]any{"url": info.KeyServiceURL, "caFile": filepath.Join(certDir, "ca.pem"),
			"certFile": filepath.Join(certDir, "node.pem"), "keyFile": filepath.Join(certDir, "node-key.pem"),
			"groupId": g.ID, "cluster": "C1"}}}
	cfgFile := filepath.Join(t.TempDir(), "node.json")
	js, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, js, 0o600); err != nil {
		t.Fatal(err)
	}
	s := e2etest.StartCommand(t, cmkdbBin, nodeDir, "node", "--config", cfgFile)
	c := connect(t, s.URI)
	writeLifecycleData(t, c)
	e2etest.Eventually(t, stateTimeout, "node registered", func() error {
		if ns := clusterNodes(t, api, g.ID, "C1"); len(ns) != 1 || ns[0].Name != "n1" || ns[0].State != "AVAILABLE" {
			return fmt.Errorf("nodes: %+v", ns)
		}
		return nil
	})

	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--key", keyFile)
	e2etest.Eventually(t, stateTimeout, "node refuses data commands", func() error {
		return findRefused(opCtx(t), c, "KEY_DISABLED")
	})
	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--key", keyFile)
	start := time.Now()
	api.Call(t, "POST", "/groups/"+g.ID+"/encryptionAtRest/validate", nil, nil)
	e2etest.Eventually(t, stateTimeout, "node serves again", func() error { return readAll(opCtx(t), c) })
	t.Logf("MEASURE separate processes: enable + try again -> serving %s", time.Since(start).Round(time.Millisecond))

	// A certificate for another cluster is named at start.
	wrong := t.TempDir()
	e2etest.CLI(t, cmkdbBin, "controlplane", "issue-node-cert", "--dir", cpDir, "--group", g.ID, "--cluster", "C2", "--name", "n1", "--out", wrong)
	cfgWrong := map[string]any{"dir": t.TempDir(), "port": freePort(t), "kms": map[string]any{"provider": "controlplane",
		"controlPlane": map[string]any{"url": info.KeyServiceURL, "caFile": filepath.Join(wrong, "ca.pem"),
			"certFile": filepath.Join(wrong, "node.pem"), "keyFile": filepath.Join(wrong, "node-key.pem"),
			"groupId": g.ID, "cluster": "C1"}}}
	jsWrong, _ := json.Marshal(cfgWrong)
	wrongFile := filepath.Join(t.TempDir(), "wrong.json")
	_ = os.WriteFile(wrongFile, jsWrong, 0o600)
	if out, err := exec.Command(cmkdbBin, "node", "--config", wrongFile).CombinedOutput(); err == nil || !strings.Contains(string(out), "the certificate is for node") {
		t.Fatalf("a node with another cluster's certificate: %v\n%s", err, out)
	}

	// A certificate the control plane did not issue is refused.
	other := t.TempDir()
	out2, err := exec.Command(cmkdbBin, "controlplane", "issue-node-cert", "--dir", t.TempDir(), "--group", g.ID, "--cluster", "C1", "--name", "x", "--out", other).CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "not a control plane directory") {
		t.Fatalf("issue-node-cert outside a control plane directory: %v\n%s", err, out2)
	}
	foreign, err := tlsutil.NewCA("not our control plane", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := foreign.ClientCertificate(g.ID+"/C1/intruder", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(other, "node.pem"), certPEM, 0o600)
	_ = os.WriteFile(filepath.Join(other, "node-key.pem"), keyPEM, 0o600)
	cfg["dir"] = t.TempDir()
	cfg["port"] = freePort(t)
	cfg["kms"].(map[string]any)["controlPlane"].(map[string]any)["certFile"] = filepath.Join(other, "node.pem")
	cfg["kms"].(map[string]any)["controlPlane"].(map[string]any)["keyFile"] = filepath.Join(other, "node-key.pem")
	js, _ = json.Marshal(cfg)
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, js, 0o600)
	outBad, err := exec.Command(cmkdbBin, "node", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(outBad), "CREDENTIALS_REJECTED") {
		t.Fatalf("a node with a foreign certificate: %v\n%s", err, outBad)
	}
	disconnect(c)
	s.Stop(t)
}
