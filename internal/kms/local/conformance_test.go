package local

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/kmstest"
)

func TestConformance(t *testing.T) {
	kmstest.Run(t, &harness{})
}

// Faults the harness injects through Provider.readFile, for conditions a
// file cannot be put in (or not portably, or not as root).
const (
	faultNone int32 = iota
	faultEACCES
	faultEIO
	faultHang
)

type harness struct {
	path    string
	fault   atomic.Int32
	undo    func(t testing.TB)
	secrets [][]byte
}

func (h *harness) Provider(t testing.TB) kms.Provider {
	h.reset(t)
	h.path = filepath.Join(t.TempDir(), "cmk.json")
	if _, err := Create(h.path); err != nil {
		t.Fatal(err)
	}
	h.refreshSecrets(t)
	p, err := Open(h.path)
	if err != nil {
		t.Fatal(err)
	}
	p.readFile = func(ctx context.Context, path string) ([]byte, error) {
		switch h.fault.Load() {
		case faultEACCES:
			return nil, &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		case faultEIO:
			return nil, &fs.PathError{Op: "read", Path: path, Err: syscall.EIO}
		case faultHang:
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return readKeyFile(path)
	}
	return p
}

// reset undoes whatever the last SetState did to the file or the reads.
func (h *harness) reset(t testing.TB) {
	h.fault.Store(faultNone)
	if h.undo != nil {
		h.undo(t)
		h.undo = nil
	}
}

// must adapts an admin call's (Info, error) for one-line use.
func must(t testing.TB) func(Info, error) {
	return func(_ Info, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (h *harness) SetState(t testing.TB, s kmstest.State) bool {
	h.reset(t)
	// Start every state from a plain enabled key.
	in, err := Inspect(h.path)
	if err != nil {
		t.Fatal(err)
	}
	if in.State == StateDeleted || in.State == StatePendingDeletion {
		must(t)(Restore(h.path))
	}
	must(t)(Enable(h.path))
	must(t)(SetValidity(h.path, time.Time{}, time.Time{}))

	switch s {
	case kmstest.Enabled:
	case kmstest.Disabled:
		must(t)(Disable(h.path))
	case kmstest.Deleted:
		must(t)(Delete(h.path))
	case kmstest.PendingDeletion:
		must(t)(ScheduleDeletion(h.path))
	case kmstest.Expired:
		must(t)(SetValidity(h.path, time.Time{}, time.Now().Add(-time.Hour)))
	case kmstest.NotYetActive:
		must(t)(SetValidity(h.path, time.Now().Add(time.Hour), time.Time{}))
	case kmstest.NotFound:
		away := h.path + ".away"
		if err := os.Rename(h.path, away); err != nil {
			t.Fatal(err)
		}
		h.undo = func(t testing.TB) {
			if err := os.Rename(away, h.path); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.Malformed:
		// A torn copy: the first half of a valid file.
		orig, err := os.ReadFile(h.path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(h.path, orig[:len(orig)/2], 0o600); err != nil {
			t.Fatal(err)
		}
		h.undo = func(t testing.TB) {
			if err := os.WriteFile(h.path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.PermissionDenied:
		if os.Geteuid() == 0 {
			// root reads through any mode bits.
			h.fault.Store(faultEACCES)
			break
		}
		if err := os.Chmod(h.path, 0); err != nil {
			t.Fatal(err)
		}
		h.undo = func(t testing.TB) {
			if err := os.Chmod(h.path, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	case kmstest.ServerError:
		h.fault.Store(faultEIO)
	case kmstest.Timeout:
		h.fault.Store(faultHang)
	default:
		// CredentialsRejected, WrongKeyType, Unreachable, Throttled: a file
		// has no credentials, one key type, and no network.
		return false
	}
	return true
}

func (h *harness) RotateKey(t testing.TB) bool {
	must(t)(Rotate(h.path))
	h.refreshSecrets(t)
	return true
}

func (h *harness) refreshSecrets(t testing.TB) {
	data, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseKeyFile(data)
	if err != nil {
		t.Fatal(err)
	}
	h.secrets = nil
	for _, v := range f.Versions {
		h.secrets = append(h.secrets, append([]byte(nil), v.Material...))
	}
}

func (h *harness) Secrets(testing.TB) [][]byte { return h.secrets }

// InProcess: an unwrap reads a file in this process, so the suite tampers
// with every bit of a ciphertext.
func (h *harness) InProcess() bool { return true }
