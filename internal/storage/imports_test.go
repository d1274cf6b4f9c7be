package storage

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStorageKnowsNoKMS: the architecture's rule "storage knows no KMS"
// holds in the import graph — storage depends on neither the KMS contract
// nor the keystore, only on the Keys interface it defines.
func TestStorageKnowsNoKMS(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/cmkdb/cmkdb/internal/kms", "github.com/cmkdb/cmkdb/internal/keys"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("storage depends on %s", dep)
			}
		}
	}
}
