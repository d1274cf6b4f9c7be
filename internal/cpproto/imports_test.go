package cpproto_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNodeSideLinksNoControlPlane: the packages a node runs to talk to the
// control plane (the agent and the key service client) link neither the
// control plane's service nor any cloud SDK; cpproto is their only contact.
func TestNodeSideLinksNoControlPlane(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps",
		"github.com/cmkdb/cmkdb/internal/nodeagent", "github.com/cmkdb/cmkdb/internal/keyservice").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	forbidden := []string{
		"github.com/cmkdb/cmkdb/internal/controlplane",
		"github.com/cmkdb/cmkdb/internal/kms/providers",
		"github.com/aws/aws-sdk-go-v2",
		"github.com/Azure/azure-sdk-for-go",
		"cloud.google.com/go",
	}
	sawProto := false
	for _, d := range deps {
		sawProto = sawProto || d == "github.com/cmkdb/cmkdb/internal/cpproto"
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("the node side links %s", d)
			}
		}
	}
	if !sawProto {
		t.Errorf("the node side does not link cpproto: %d packages listed", len(deps))
	}
}
