// Package node assembles a cmkdb node from its parts: a KMS provider, the
// keystore it unlocks, and the storage engine whose databases those keys
// encrypt. It owns the node's directory layout.
package node

import "path/filepath"

// Layout is where a node keeps its files under its data directory:
//
//	DIR/kms/local-cmk.json   the local CMK (embedded default provider only)
//	DIR/node/keystore        the node keystore
//	DIR/node/db/<id>/        one Pebble directory per database
//	DIR/node/quarantine/<id> database directories no key names and no drop
//	                         explains (an older keystore put back): kept, not
//	                         deleted, and moved back once a key names them
//	DIR/up.json              what a script needs to connect (cmkdb up)
type Layout struct{ Dir string }

func (l Layout) LocalKeyPath() string { return filepath.Join(l.Dir, "kms", "local-cmk.json") }
func (l Layout) KeystoreDir() string  { return filepath.Join(l.Dir, "node") }
func (l Layout) DataDir() string      { return filepath.Join(l.Dir, "node", "db") }
func (l Layout) UpFile() string       { return filepath.Join(l.Dir, "up.json") }
func (l Layout) QuarantineDir() string {
	return filepath.Join(l.Dir, "node", "quarantine")
}
