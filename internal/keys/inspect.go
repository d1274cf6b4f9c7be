package keys

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cmkdb/cmkdb/internal/kms"
)

// Report is what `cmkdb keystore inspect` shows: identities, versions, dates
// and providers. It holds no key bytes, wrapped or not.
type Report struct {
	Path       string
	NodeID     string
	Generation uint64
	CreatedAt  time.Time
	UpdatedAt  time.Time
	Master     MasterInfo
	Databases  []DatabaseInfo
	Events     []Event
}

// Event is one entry of the keystore's key-change history.
type Event struct {
	At     time.Time
	Event  string
	Detail string
}

// Inspect reads dir's keystore without unwrapping anything. It checks the
// file's structure and checksum; only Open, which needs the CMK, can
// authenticate it.
func Inspect(dir string) (*Report, error) {
	path := Path(dir)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("keystore %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("keystore: %w", err)
	}
	b, _, err := parseFile(raw)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	r := &Report{Path: path, NodeID: b.NodeID, Generation: b.Generation, CreatedAt: b.CreatedAt, UpdatedAt: b.UpdatedAt,
		Master:    MasterInfo{Version: b.Master.Version, CreatedAt: b.Master.CreatedAt, WrappedAt: b.Master.WrappedAt, CMK: b.Master.Wrapped.Key},
		Databases: b.databases()}
	for i := range r.Databases {
		if r.Databases[i].Name == "" {
			// Format 2 seals names with a key only the CMK unlocks.
			r.Databases[i].Name = "(sealed)"
		}
	}
	for _, e := range b.Events {
		r.Events = append(r.Events, Event{At: e.At, Event: e.Event, Detail: e.Detail})
	}
	return r, nil
}

// WrappedMaster reads dir's keystore without unwrapping anything and
// returns its wrapped master key with the associated data it was wrapped
// under: what a KMS must unwrap to open the keystore, so a caller can test
// whether the CMK of a keystore's time still answers (a snapshot's, before
// a restore) without opening it. The key unwrapped that way should be
// zeroed at once.
func WrappedMaster(dir string) (kms.Wrapped, []byte, error) {
	path := Path(dir)
	raw, err := os.ReadFile(path)
	if err != nil {
		return kms.Wrapped{}, nil, fmt.Errorf("keystore: %w", err)
	}
	b, _, err := parseFile(raw)
	if err != nil {
		return kms.Wrapped{}, nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	return b.Master.Wrapped, masterAAD(b.NodeID, b.Master.Version), nil
}
