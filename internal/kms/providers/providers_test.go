package providers

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"cloud.google.com/go/kms/apiv1/kmspb"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/kmsserver/awstest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/gcptest"
	"github.com/cmkdb/cmkdb/internal/kmsserver/vaulttest"
	"github.com/cmkdb/cmkdb/internal/node"
)

func writeSecret(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfiguredProvidersUnlockANode builds each provider from a node
// configuration, as `cmkdb node --config` does, checks it, and opens a
// real node whose keystore it wraps — against the local key file, the
// faithful AWS KMS server (SigV4 verified), the faithful Vault Transit
// server and the faithful Cloud KMS server (service account JWT verified).
func TestConfiguredProvidersUnlockANode(t *testing.T) {
	const access, secret = "AKIDEXAMPLE", "aws-secret-not-for-logs"
	awsSrv := awstest.NewServer(awstest.Options{Credentials: map[string]string{access: secret}})
	t.Cleanup(awsSrv.Close)
	_, arn := awsSrv.CreateSymmetricKey()

	vaultSrv := vaulttest.New()
	t.Cleanup(vaultSrv.Close)
	if err := vaultSrv.CreateKey("cmkdb", "aes256-gcm96"); err != nil {
		t.Fatal(err)
	}

	gcpSrv, err := gcptest.NewServer(gcptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gcpSrv.Close)
	gcpKey, err := gcpSrv.CreateKey("cmkdb", kmspb.CryptoKey_ENCRYPT_DECRYPT)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := gcpSrv.NewServiceAccount("cmkdb-node")
	if err != nil {
		t.Fatal(err)
	}

	localKey := filepath.Join(t.TempDir(), "cmk.json")
	if _, err := local.Create(localKey); err != nil {
		t.Fatal(err)
	}

	cases := map[string]map[string]string{
		"local": {"keyFile": localKey},
		"aws": {"region": awsSrv.Region, "keyId": arn, "accessKeyId": access,
			"secretAccessKeyFile": writeSecret(t, secret), "endpoint": awsSrv.URL},
		"vault": {"address": vaultSrv.URL, "key": "cmkdb", "tokenFile": writeSecret(t, vaultSrv.RootToken)},
		"gcp": {"keyName": gcpKey, "credentialsFile": writeSecret(t, string(sa.JSON)),
			"endpoint": gcpSrv.Addr(), "caFile": writeSecret(t, string(gcpSrv.CAPEM()))},
	}
	for name, block := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			p, err := OpenNode(ctx, name, block)
			if err != nil {
				t.Fatal(err)
			}
			if st := p.Check(ctx); st.Validity != kms.Valid {
				t.Fatalf("check: %+v", st)
			}
			l := node.Layout{Dir: t.TempDir()}
			n, err := node.Open(ctx, l, p, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			n.Close()
			// Reopen: the master key unwraps through the provider again.
			n, err = node.Open(ctx, l, p, node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			_, ks, release, err := n.Acquire()
			if err != nil {
				t.Fatalf("node not available: %v", err)
			}
			defer release()
			if got := ks.Master().CMK.Provider; got != name {
				t.Fatalf("master key wrapped by %q, want %q", got, name)
			}
		})
	}
}

func TestSecretFileErrorsHideContents(t *testing.T) {
	empty := writeSecret(t, "")
	_, err := OpenNode(context.Background(), "vault", map[string]string{"address": "http://127.0.0.1:1", "key": "k", "tokenFile": empty})
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty token file: %v", err)
	}
	_, err = OpenNode(context.Background(), "aws", map[string]string{"region": "us-east-1", "keyId": "k", "accessKeyId": "a", "secretAccessKeyFile": "/nonexistent"})
	if err == nil {
		t.Fatal("missing secret file accepted")
	}
}
