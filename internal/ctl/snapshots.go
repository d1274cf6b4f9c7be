package ctl

import (
	"context"
	"strconv"
	"time"
)

// Snapshot is a cluster snapshot as the API shows it.
type Snapshot struct {
	ID               string    `json:"id"`
	SnapshotType     string    `json:"snapshotType"`
	Status           string    `json:"status"`
	CreatedAt        time.Time `json:"createdAt"`
	ExpiresAt        time.Time `json:"expiresAt"`
	StorageSizeBytes int64     `json:"storageSizeBytes"`
	CMK              KeyRef    `json:"cmkdbCustomerMasterKey"`
	Provider         string    `json:"cmkdbEncryptionAtRestProvider"`
}

// Snapshots lists a cluster's snapshots with the customer master key
// version that protects each. With key set (provider:keyId@version, or a
// prefix of it such as provider:keyId), only the snapshots that key
// protects: what disabling or deleting that key version would make
// unopenable.
func (a *App) Snapshots(ctx context.Context, cluster, key string) error {
	sps, printed, err := listProject[Snapshot](ctx, a, "/clusters/"+seg(cluster)+"/backup/snapshots", nil, 0)
	if err != nil || printed {
		return err
	}
	var rows [][]string
	for _, s := range sps {
		ref := s.CMK.String()
		if key != "" && !matchesKey(ref, key) {
			continue
		}
		rows = append(rows, []string{s.ID, s.SnapshotType, s.Status, when(s.CreatedAt), when(s.ExpiresAt),
			strconv.FormatInt(s.StorageSizeBytes, 10), s.Provider, ref})
	}
	return a.table([]string{"ID", "TYPE", "STATUS", "CREATED", "EXPIRES", "BYTES", "PROVIDER", "PROTECTED BY"}, rows)
}

// matchesKey reports whether ref (provider:keyId@version) is key or starts
// with it up to a separator.
func matchesKey(ref, key string) bool {
	if ref == key {
		return true
	}
	return len(ref) > len(key) && ref[:len(key)] == key && (ref[len(key)] == '@' || ref[len(key)] == ':')
}
