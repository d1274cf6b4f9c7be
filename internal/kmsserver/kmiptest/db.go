//go:build unix

package kmiptest

import (
	"fmt"
	"os/exec"
	"strconv"
)

// KMIP State values, as PyKMIP stores them.
const (
	StatePreActive   = 1
	StateActive      = 2
	StateDeactivated = 3
	StateCompromised = 4
	StateDestroyed   = 5
)

// The methods below edit PyKMIP's SQLite database behind its back. KMIP
// has no way back from Revoke or Destroy, but the conformance suite must
// bring a key back to Active with its material; only a test harness does
// this. They use the stdlib sqlite3 module of the Debian interpreter.

func (s *Server) sql(script string, args ...string) error {
	cmd := exec.Command(Python, append([]string{"-c", script, s.DBPath}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pykmip database: %v: %s", err, out)
	}
	return nil
}

const updateScript = `
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
n = db.execute(sys.argv[2], (int(sys.argv[3]), int(sys.argv[4]))).rowcount
db.commit()
if n != 1:
    sys.exit("updated %d rows" % n)
`

// SetState sets the KMIP State of object uid.
func (s *Server) SetState(uid string, state int) error {
	return s.sql(updateScript, "UPDATE crypto_objects SET state=? WHERE uid=?", strconv.Itoa(state), uid)
}

// SetCryptographicLength rewrites the Cryptographic Length attribute of key
// uid (its material is untouched).
func (s *Server) SetCryptographicLength(uid string, bits int) error {
	return s.sql(updateScript, "UPDATE keys SET cryptographic_length=? WHERE uid=?", strconv.Itoa(bits), uid)
}

const backupScript = `
import sqlite3, sys
src = sqlite3.connect(sys.argv[1], timeout=30)
dst = sqlite3.connect(sys.argv[2], timeout=30)
if sys.argv[3] == "restore":
    src, dst = dst, src
src.backup(dst)
dst.close()
src.close()
`

// Snapshot copies the whole database aside; the returned function copies it
// back (undoing a Destroy, for instance).
func (s *Server) Snapshot() (restore func() error, err error) {
	snap := s.DBPath + ".snapshot"
	if err := s.sql(backupScript, snap, "save"); err != nil {
		return nil, err
	}
	return func() error { return s.sql(backupScript, snap, "restore") }, nil
}
