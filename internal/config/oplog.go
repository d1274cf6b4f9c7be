package config

import (
	"fmt"
	"math"
	"time"
)

// Bounds of the oplog limits a user may set (replication.oplogSizeMB,
// replication.oplogRetentionHours, `cmkdb up --oplog-size-mb` and
// `--oplog-retention-hours`). Zero in the file means the default; a value
// given must lie within them, so a typo (a negative size, hours meant as
// seconds) is refused rather than quietly capped.
const (
	DefaultOplogSizeMB         = 1024
	DefaultOplogRetentionHours = 24
	MinOplogSizeMB             = 1
	// MaxOplogSizeMB is MongoDB's upper bound, 1 PB.
	MaxOplogSizeMB = 1 << 30
	// MaxOplogRetentionHours is a year: beyond it the setting is more
	// likely a unit mistake (seconds given as hours) than a policy.
	MaxOplogRetentionHours = 365 * 24
	// MinOplogRetentionHours is one minute: the retention cap runs at
	// most once a second, and a shorter window is a unit mistake.
	MinOplogRetentionHours = 1.0 / 60
)

// CheckOplogLimits validates oplog limits as the file or flags give them;
// zero means the default.
func CheckOplogLimits(sizeMB, retentionHours float64) error {
	if sizeMB != 0 && (math.IsNaN(sizeMB) || sizeMB < MinOplogSizeMB || sizeMB > MaxOplogSizeMB) {
		return fmt.Errorf("oplogSizeMB %g is out of range: it is %d to %d megabytes (default %d)", sizeMB, MinOplogSizeMB, MaxOplogSizeMB, DefaultOplogSizeMB)
	}
	if retentionHours != 0 && (math.IsNaN(retentionHours) || retentionHours < MinOplogRetentionHours || retentionHours > MaxOplogRetentionHours) {
		return fmt.Errorf("oplogRetentionHours %g is out of range: it is %g (one minute) to %d hours (default %d)", retentionHours, MinOplogRetentionHours, MaxOplogRetentionHours, DefaultOplogRetentionHours)
	}
	return nil
}

// OplogLimits are the member's oplog limits in bytes and as a duration
// (zero: the default).
func (r *Replication) OplogLimits() (maxBytes int64, retention time.Duration) {
	return int64(r.OplogSizeMB * (1 << 20)), time.Duration(r.OplogRetentionHours * float64(time.Hour))
}
