//go:build unix

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	p11 "github.com/miekg/pkcs11"
	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/p11test"
)

// hsmCase is one provider walked by TestUpWithKMIPAndPKCS11: the KMS is
// set up by setup, which returns what the walk needs.
type hsmCase struct {
	object, kind, keyRef string
	// allow are the --allow-provider-path directories the provider's file
	// attributes lie under.
	allow []string
	// config is the encryptionAtRest object (without "enabled").
	config map[string]any
	// secret must never appear in the encryptionAtRest resource.
	secret string
	// revoke and restore change the key the way its operator would; reason
	// is what the refused data commands then name.
	revoke, restore func(t *testing.T)
	reason          string
}

// TestUpWithKMIPAndPKCS11 is TestUpWithEachCloudProvider for the two
// providers whose KMS is not a cloud: the real PyKMIP server (Debian
// python3-pykmip, mutual TLS) and a real SoftHSM2 token. Cluster0 is moved
// onto each through the admin API — it is re-encrypted in place (a new key hierarchy under the new key)
// online — then the key is revoked at the KMS, which disables the cluster
// at the next check, and restored, after which "try again" brings it back
// with its data.
func TestUpWithKMIPAndPKCS11(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) hsmCase
	}{
		{"kmip", kmipCase},
		{"pkcs11", pkcs11Case},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.setup(t)
			args := []string{"--key-check-interval", "1s"}
			for _, d := range c.allow {
				args = append(args, "--allow-provider-path", d)
			}
			// Started after setup: p11test sets SOFTHSM2_CONF with
			// t.Setenv, and `cmkdb up` inherits this process's
			// environment, so its module finds the test's token.
			s := startServer(t, args...)
			api := s.UpAPI()
			gid := s.Info.GroupID
			mc := connect(t, s.URI)
			writeLifecycleData(t, mc)

			cfg := map[string]any{"enabled": true}
			for k, v := range c.config {
				cfg[k] = v
			}
			api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": "NONE"}, nil)
			waitClusterIdle(t, api, gid, "Cluster0") // re-encrypted in place
			api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{"local": map[string]any{"enabled": false}}, nil)
			api.Call(t, "PATCH", "/groups/"+gid+"/encryptionAtRest", map[string]any{c.object: cfg}, nil)
			api.Call(t, "PATCH", "/groups/"+gid+"/clusters/Cluster0", map[string]any{"encryptionAtRestProvider": c.kind}, nil)
			waitClusterIdle(t, api, gid, "Cluster0")
			e2etest.Eventually(t, stateTimeout, "node master key wrapped by "+c.keyRef, func() error {
				if ns := clusterNodes(t, api, gid, "Cluster0"); len(ns) != 1 || ns[0].CMK.Provider != c.keyRef {
					return fmt.Errorf("nodes: %+v", ns)
				}
				return nil
			})
			if err := readAll(opCtx(t), mc); err != nil {
				t.Fatalf("data after the provider change: %v", err)
			}
			_, raw, err := api.Do("GET", "/groups/"+gid+"/encryptionAtRest", nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.secret != "" && strings.Contains(string(raw), c.secret) {
				t.Fatalf("write-only attribute in the resource: %s", raw)
			}
			var ear map[string]any
			api.Call(t, "GET", "/groups/"+gid+"/encryptionAtRest", nil, &ear)
			if obj, _ := ear[c.object].(map[string]any); obj["valid"] != true {
				t.Fatalf("%s not valid: %v", c.object, ear)
			}

			c.revoke(t)
			e2etest.Eventually(t, stateTimeout, "data commands refused with "+c.reason, func() error {
				return findRefused(opCtx(t), mc, c.reason)
			})
			if st := clusterState(t, api, gid, "Cluster0"); st.EncryptionAtRestStatus.State != "DISABLED" ||
				!strings.Contains(st.EncryptionAtRestStatus.Reason, c.reason) {
				t.Fatalf("cluster status after revocation: %+v", st)
			}
			c.restore(t)
			api.Call(t, "POST", "/groups/"+gid+"/encryptionAtRest/validate", nil, nil)
			e2etest.Eventually(t, stateTimeout, "data readable after restore + try again", func() error {
				return readAll(opCtx(t), mc)
			})
			disconnect(mc)
			s.Stop(t)
		})
	}
}

// kmipCase: an AES-256 key on a PyKMIP server of the test's own, named by
// keyName (resolved by the control plane's provider), created and revoked
// with the official kmip-go client under the identity cmkdb is configured
// with (PyKMIP lets only a key's owner use it).
func kmipCase(t *testing.T) hsmCase {
	if !kmiptest.Available() {
		t.Skipf("%s is not installed (apt-get install python3-pykmip)", kmiptest.ServerScript)
	}
	srv := kmiptest.Start(t)
	kc, err := kmipclient.Dial(srv.Addr, kmipclient.WithRootCAFile(srv.CAFile),
		kmipclient.WithClientCertFiles(srv.Client.CertFile, srv.Client.KeyFile))
	if err != nil {
		t.Fatalf("dial PyKMIP: %v\n%s", err, srv.Log())
	}
	t.Cleanup(func() { kc.Close() })
	const name = "cmkdb-cluster0"
	created, err := kc.Create().AES(256, kmip.CryptographicUsageEncrypt|kmip.CryptographicUsageDecrypt).WithName(name).Exec()
	if err != nil {
		t.Fatalf("create the key: %v\n%s", err, srv.Log())
	}
	uid := created.UniqueIdentifier
	if _, err := kc.Activate(uid).Exec(); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(srv.Client.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return hsmCase{
		object: "kmip", kind: "KMIP", keyRef: "kmip",
		allow: []string{srv.Dir},
		config: map[string]any{"address": srv.Addr, "caFile": srv.CAFile, "clientCertificateFile": srv.Client.CertFile,
			"clientKeyFile": srv.Client.KeyFile, "keyName": name},
		// The client key file's path is an attribute; its contents are not.
		secret: strings.TrimSpace(string(key)),
		// A real KMIP Revoke: Active → Deactivated.
		revoke: func(t *testing.T) {
			if _, err := kc.Revoke(uid).WithRevocationReasonCode(kmip.RevocationReasonCodeCessationOfOperation).Exec(); err != nil {
				t.Fatalf("revoke: %v", err)
			}
		},
		// KMIP has no way back from Revoke (an operator would create a new
		// key, which could not unwrap the node's master key): the harness
		// sets the key Active again in PyKMIP's database, as the kmip
		// conformance suite does.
		restore: func(t *testing.T) {
			if err := srv.SetState(uid, kmiptest.StateActive); err != nil {
				t.Fatal(err)
			}
		},
		reason: "KEY_DISABLED",
	}
}

// pkcs11Case: an AES-256 key on a fresh SoftHSM2 token.
//
// The revocation is the operator clearing the key's CKA_ENCRYPT and
// CKA_DECRYPT (C_SetAttributeValue), which the provider classifies INVALID
// PERMISSION_DENIED, and the restore is setting them again: reversible, and
// the key material stays. Destroying the key (KEY_NOT_FOUND) cannot be
// undone — a non-extractable key does not come back — and a changed user
// PIN only shows once the provider logs in again, which a process holding
// its session never does.
func pkcs11Case(t *testing.T) hsmCase {
	if !p11test.Available() {
		t.Skip("SoftHSM2 is not installed (apt-get install softhsm2)")
	}
	const tokenLabel, keyLabel = "cmkdb-e2e", "cmkdb-cluster0"
	tok := p11test.New(t, tokenLabel)
	tok.GenerateKey(t, p11test.KeySpec{Label: keyLabel, ID: []byte("1")})
	// Debian's module path is a symbolic link, and the control plane
	// resolves links before it checks a path against the allowed
	// directories: allow the directory of the library itself.
	module, err := filepath.EvalSymlinks(tok.Module)
	if err != nil {
		t.Fatal(err)
	}
	// Found and changed in one session: this process holds no other
	// session on the token (cmkdb's are another process's), so closing
	// the session that found the key logs out, and SoftHSM2 then drops
	// the handles of private objects (CKR_OBJECT_HANDLE_INVALID).
	usage := func(t *testing.T, on bool) {
		tok.Session(t, "", func(c *p11.Ctx, sh p11.SessionHandle) {
			if err := c.FindObjectsInit(sh, []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
				p11.NewAttribute(p11.CKA_LABEL, keyLabel)}); err != nil {
				t.Fatal(err)
			}
			hs, _, err := c.FindObjects(sh, 10)
			_ = c.FindObjectsFinal(sh)
			if err != nil || len(hs) != 1 {
				t.Fatalf("find the key: %d objects, %v", len(hs), err)
			}
			if err := c.SetAttributeValue(sh, hs[0], []*p11.Attribute{
				p11.NewAttribute(p11.CKA_ENCRYPT, on), p11.NewAttribute(p11.CKA_DECRYPT, on)}); err != nil {
				t.Fatalf("C_SetAttributeValue: %v", err)
			}
		})
	}
	return hsmCase{
		object: "pkcs11", kind: "PKCS11", keyRef: "pkcs11",
		allow:   []string{filepath.Dir(module)},
		config:  map[string]any{"modulePath": tok.Module, "tokenLabel": tokenLabel, "keyLabel": keyLabel, "pin": tok.PIN},
		secret:  tok.PIN,
		revoke:  func(t *testing.T) { usage(t, false) },
		restore: func(t *testing.T) { usage(t, true) },
		reason:  "PERMISSION_DENIED",
	}
}
