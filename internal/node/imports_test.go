package node

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNodeImportsNoProvider: a node gets its kms.Provider from its caller
// and links no provider itself (the local key file is the CLI's business).
func TestNodeImportsNoProvider(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/cmkdb/cmkdb/internal/kms/") {
			t.Errorf("node depends on %s", dep)
		}
	}
}
