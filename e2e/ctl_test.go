package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/cmkdb/cmkdb/e2e/e2etest"
)

// TestCtlAgainstUp drives `cmkdb ctl` (a separate process, reading up.json)
// against a running `cmkdb up`: it shows the real encryption state, sees a
// revocation after "try again", and exits non-zero while the key is invalid.
func TestCtlAgainstUp(t *testing.T) {
	s := startServer(t, "--key-check-interval", "1h")
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(cmkdbBin, append([]string{"ctl", "--dir", s.Dir}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := ctl("clusters")
	if err != nil || !strings.Contains(out, "Cluster0") || !strings.Contains(out, "AVAILABLE") || !strings.Contains(out, "LOCAL") {
		t.Fatalf("ctl clusters: %v\n%s", err, out)
	}
	out, err = ctl("ear", "show", "--json")
	if err != nil {
		t.Fatalf("ctl ear show: %v\n%s", err, out)
	}
	var ear map[string]any
	if err := json.Unmarshal([]byte(out), &ear); err != nil {
		t.Fatalf("ctl ear show --json is not JSON: %v\n%s", err, out)
	}
	if local, _ := ear["local"].(map[string]any); local["valid"] != true {
		t.Fatalf("ear show: %s", out)
	}

	e2etest.CLI(t, cmkdbBin, "kms", "local", "disable", "--dir", s.Dir)
	if out, err := ctl("ear", "validate"); err == nil || !strings.Contains(out, "KEY_DISABLED") {
		t.Fatalf("ctl ear validate with a disabled key: %v\n%s", err, out)
	}
	if out, _ := ctl("clusters"); !strings.Contains(out, "DISABLED") {
		t.Fatalf("ctl clusters after revocation:\n%s", out)
	}
	if out, err := ctl("rotate", "Cluster0"); err == nil || !strings.Contains(out, "CANNOT_ROTATE_KEY_ENCRYPTION_DISABLED") {
		t.Fatalf("ctl rotate on a disabled cluster: %v\n%s", err, out)
	}
	e2etest.CLI(t, cmkdbBin, "kms", "local", "enable", "--dir", s.Dir)
	if out, err := ctl("ear", "validate"); err != nil {
		t.Fatalf("ctl ear validate after enable: %v\n%s", err, out)
	}
	if out, err := ctl("events", "--limit", "0"); err != nil || !strings.Contains(out, "LOCAL_ENCRYPTION_KEY_INVALID") || !strings.Contains(out, "LOCAL_ENCRYPTION_KEY_VALID") {
		t.Fatalf("ctl events: %v\n%s", err, out)
	}
	s.Stop(t)
}
