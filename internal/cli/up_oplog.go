package cli

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/cmkdb/cmkdb/internal/config"
)

// oplogFlags are `cmkdb up`'s oplog limits for the members of a replica
// set (--nodes 3 or more). A flag given is written into every member's
// node.json (replication.oplogSizeMB, replication.oplogRetentionHours),
// on the first run and on later ones, and takes effect when the member
// starts; a flag not given leaves what node.json holds. A single node
// keeps no oplog, so the flags are refused there rather than ignored.
type oplogFlags struct {
	sizeMB         float64
	retentionHours float64
	// sizeSet and retentionSet say the flag was given (seen).
	sizeSet, retentionSet bool
}

func (o *oplogFlags) register(fs *pflag.FlagSet) {
	fs.Float64Var(&o.sizeMB, "oplog-size-mb", config.DefaultOplogSizeMB,
		"replica set members: the most megabytes of entries each member's oplog (local.oplog.rs) keeps, oldest removed first (MongoDB's oplogSizeMB)")
	fs.Float64Var(&o.retentionHours, "oplog-retention-hours", config.DefaultOplogRetentionHours,
		"replica set members: the oldest entry each member's oplog keeps, in hours (fractions allowed); whichever of the two caps removes more applies")
}

// seen records which flags the command line gave.
func (o *oplogFlags) seen(fs *pflag.FlagSet) {
	o.sizeSet, o.retentionSet = fs.Changed("oplog-size-mb"), fs.Changed("oplog-retention-hours")
}

func (o oplogFlags) given() bool { return o.sizeSet || o.retentionSet }

// check refuses values out of range, and the flags for a single node.
func (o oplogFlags) check(nodes int) error {
	if !o.given() {
		return nil
	}
	if nodes < 2 {
		return fmt.Errorf("--oplog-size-mb and --oplog-retention-hours set the oplog of a replica set's members: with --nodes %d there is no oplog (use --nodes 3)", nodes)
	}
	// Zero in node.json means the default; on the command line it is a
	// mistake, refused like any value out of range.
	if (o.sizeSet && o.sizeMB == 0) || (o.retentionSet && o.retentionHours == 0) {
		return fmt.Errorf("--oplog-size-mb and --oplog-retention-hours must be positive (defaults %d MB, %d hours)", config.DefaultOplogSizeMB, config.DefaultOplogRetentionHours)
	}
	var r config.Replication
	o.apply(&r)
	if err := config.CheckOplogLimits(r.OplogSizeMB, r.OplogRetentionHours); err != nil {
		return fmt.Errorf("--oplog-size-mb/--oplog-retention-hours: %w", err)
	}
	return nil
}

// apply writes the flags given into a member's replication block.
func (o oplogFlags) apply(r *config.Replication) {
	if o.sizeSet {
		r.OplogSizeMB = o.sizeMB
	}
	if o.retentionSet {
		r.OplogRetentionHours = o.retentionHours
	}
}
