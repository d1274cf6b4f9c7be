//go:build unix

package providers

import (
	"context"
	"testing"
	"time"

	"github.com/ovh/kmip-go"
	"github.com/ovh/kmip-go/kmipclient"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kmsserver/kmiptest"
	"github.com/cmkdb/cmkdb/internal/node"
)

// TestKMIPKeyNameServerDownAtStart is `cmkdb node --config` with a KMIP key
// named by keyName whose server is down when the node starts: the provider
// opens, the node starts DISABLED (UNREACHABLE) like with every other
// provider rather than refusing to start, and becomes AVAILABLE at the
// first check after the server answers again at the same address.
func TestKMIPKeyNameServerDownAtStart(t *testing.T) {
	srv := kmiptest.Start(t)
	admin, err := kmipclient.Dial(srv.Addr, kmipclient.WithRootCAFile(srv.CAFile),
		kmipclient.WithClientCertFiles(srv.Client.CertFile, srv.Client.KeyFile))
	if err != nil {
		t.Fatalf("dial PyKMIP: %v\n%s", err, srv.Log())
	}
	t.Cleanup(func() { admin.Close() })
	created, err := admin.Create().AES(256, kmip.CryptographicUsageEncrypt|kmip.CryptographicUsageDecrypt).WithName("cmkdb-node").Exec()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Activate(created.UniqueIdentifier).Exec(); err != nil {
		t.Fatal(err)
	}

	relay := kmiptest.NewRelay(t, srv.Addr)
	block := map[string]string{"address": relay.Addr, "caFile": srv.CAFile,
		"clientCertFile": srv.Client.CertFile, "clientKeyFile": srv.Client.KeyFile, "keyName": "cmkdb-node"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := node.Layout{Dir: t.TempDir()}

	// The node's first start, with its server up: the master key is
	// wrapped under the named key.
	relay.Up(t)
	p, err := OpenNode(ctx, "kmip", block)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Open(ctx, l, p, node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !n.State().Available {
		t.Fatalf("first start: %v", n.State())
	}
	n.Close()

	// Restart while the server is down.
	relay.Down()
	p, err = OpenNode(ctx, "kmip", block)
	if err != nil {
		t.Fatalf("Open with the KMIP server down: %v", err)
	}
	n, err = node.Open(ctx, l, p, node.Options{})
	if err != nil {
		t.Fatalf("node refused to start with its KMIP server down: %v", err)
	}
	defer n.Close()
	if st := n.State(); st.Available || st.Cause.Validity() != kms.Unreachable {
		t.Fatalf("node with its KMIP server down: %+v, want DISABLED for an UNREACHABLE reason", st)
	}
	if st := p.Check(ctx); st.Validity != kms.Unreachable {
		t.Fatalf("Check with the server down: %v %s (%s)", st.Validity, st.Reason, st.Detail)
	}

	relay.Up(t)
	st := p.Check(ctx)
	if st.Validity != kms.Valid || st.Key.KeyID != created.UniqueIdentifier {
		t.Fatalf("Check once the server answers: %v %s (%s) key %s", st.Validity, st.Reason, st.Detail, st.Key.KeyID)
	}
	n.ApplyCheck(ctx, st)
	_, ks, release, err := n.Acquire()
	if err != nil {
		t.Fatalf("node not AVAILABLE after a valid check: %v", err)
	}
	defer release()
	if got := ks.Master().CMK; got.Provider != "kmip" || got.KeyID != created.UniqueIdentifier {
		t.Fatalf("master key wrapped by %+v", got)
	}
}
