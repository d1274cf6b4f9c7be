package testenv

import (
	"os"
	"testing"
)

// ramRoot is where RAMDir makes its directories: tmpfs on Linux.
const ramRoot = "/dev/shm"

// RAMDir returns a new empty directory (mode 0700) removed when the test
// ends. It is on tmpfs when the machine has one, where fsync returns at
// once: for fuzz targets and stress tests whose every input writes through
// a store that syncs, so they measure the code and not the disk of a busy
// machine. Elsewhere it is tb.TempDir(). Never use it for tests of
// durability itself.
func RAMDir(tb testing.TB) string {
	tb.Helper()
	if st, err := os.Stat(ramRoot); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp(ramRoot, "cmkdb-test-"); err == nil {
			tb.Cleanup(func() {
				if err := os.RemoveAll(dir); err != nil {
					tb.Errorf("removing %s: %v", dir, err)
				}
			})
			return dir
		}
	}
	return tb.TempDir()
}

// UseRAMTempDir points TMPDIR at a RAMDir until the test ends, so that the
// directories shared test environments make with tb.TempDir() (a node, a
// control plane) are on tmpfs too. Call it before them; not in parallel
// tests (it sets an environment variable).
func UseRAMTempDir(tb testing.TB) {
	tb.Helper()
	tb.Setenv("TMPDIR", RAMDir(tb))
}
