package cli

import (
	"strings"
	"testing"
)

// TestVersionString: the version constant, a commit line and the Go
// version. (Test binaries carry no VCS stamp, so the commit is "unknown"
// with the reason; a `go build` in a checkout prints the revision.)
func TestVersionString(t *testing.T) {
	v := versionString()
	lines := strings.Split(v, "\n")
	if len(lines) != 3 || lines[0] != "cmkdb "+Version || !strings.HasPrefix(lines[1], "commit ") || !strings.HasPrefix(lines[2], "go") {
		t.Fatalf("version output %q", v)
	}
	if Version == "" || Version == "dev" {
		t.Fatalf("Version %q is not a version", Version)
	}
}
