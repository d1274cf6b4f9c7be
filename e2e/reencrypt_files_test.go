package e2e

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cmkdb/cmkdb/internal/encfs"
	"github.com/cmkdb/cmkdb/internal/keys"
)

// hierarchy is what a member's files say about the keys they were
// written under, read from disk without any key: the keystore's node id,
// master-key wrapping and database key ids, and for every encrypted file
// the database key it sits under (its directory, node/db/<key id>/) and
// its header's random per-file salt. A salt is drawn when a file is
// created, so a file of the old hierarchy that survived would show an old
// salt; a file under a database key id the keystore does not name would be
// a leftover of another hierarchy.
type hierarchy struct {
	nodeID, cmkKeyID string
	dbIDs            map[string]bool
	// salts maps each encrypted file's header salt (hex) to its path.
	salts map[string]string
}

// encfsMagic starts every encrypted file's header (internal/encfs/format.go).
const encfsMagic = "CMKDB\x00EF"

// saltAt is where the header's salt lies: magic 8, version 2, suite 2,
// slot size 4, key version 4, generation 4.
const saltAt, saltLen = 24, 32

// readHierarchy reads member directory dir's keystore and encrypted files.
// A file the running member removes while it is read is skipped; one
// still being created (shorter than its header) is an error the caller
// retries.
func readHierarchy(dir string) (hierarchy, error) {
	ksDir := filepath.Join(dir, "node")
	r, err := keys.Inspect(ksDir)
	if err != nil {
		return hierarchy{}, err
	}
	h := hierarchy{nodeID: r.NodeID, cmkKeyID: r.Master.CMK.KeyID, dbIDs: map[string]bool{}, salts: map[string]string{}}
	for _, d := range r.Databases {
		h.dbIDs[d.ID] = true
	}
	if _, err := os.Stat(filepath.Join(ksDir, "quarantine")); err == nil {
		return h, fmt.Errorf("%s has a quarantine directory: files no key of its keystore names", dir)
	}
	dbRoot := filepath.Join(ksDir, "db")
	err = filepath.WalkDir(dbRoot, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dbRoot, path)
		id, _, _ := strings.Cut(rel, string(filepath.Separator))
		if !h.dbIDs[id] {
			return fmt.Errorf("%s is under database key id %s, which %s's keystore does not name", path, id, dir)
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, encfs.HeaderSize)
		n, err := io.ReadFull(f, b)
		switch {
		case n == 0:
			return nil // an empty file (a marker): no header, no key
		case err != nil:
			return fmt.Errorf("%s: %d bytes, shorter than an encrypted file's header: %w", path, n, err)
		case !bytes.HasPrefix(b, []byte(encfsMagic)):
			return fmt.Errorf("%s is not an encrypted file (no encfs header)", path)
		}
		h.salts[hex.EncodeToString(b[saltAt:saltAt+saltLen])] = path
		return nil
	})
	return h, err
}
