package keys

import (
	"crypto/rand"
	"fmt"
	"os"
)

// Archive keys protect what a node writes outside its data directory
// under its own key hierarchy (a replica set's oplog archive): a fresh
// key per object, sealed by a subkey of the master key and bound to the
// node and the object's name. What opens it is the keystore as it was
// when the key was sealed (its master key), which SealArchiveKey returns
// with the sealed key: the archive keeps that copy, so it stays openable
// exactly as long as the CMK that wrapped that master key answers — the
// same rule as a snapshot's.

const archiveKeyInfo = "cmkdb archive key wrap v1"

func archiveKeyAAD(nodeID, object string) []byte {
	return []byte("cmkdb archive key v1|" + nodeID + "|" + object)
}

// ArchiveKey is a fresh key for one archived object, with what opens it.
type ArchiveKey struct {
	Key    []byte // zero it when done
	Sealed []byte
	// Keystore is the keystore file that opens Sealed (its master key),
	// and Generation that file's generation.
	Keystore   []byte
	Generation uint64
	NodeID     string
}

// NewArchiveKey draws a key for object and seals it under the master key.
func (ks *Keystore) NewArchiveKey(object string) (ArchiveKey, error) {
	// wmu: no change commits between reading the file and sealing with
	// the master key it holds.
	ks.wmu.Lock()
	defer ks.wmu.Unlock()
	ks.mu.RLock()
	master, nodeID, gen := ks.master, ks.b.NodeID, ks.b.Generation
	ks.mu.RUnlock()
	if master == nil {
		return ArchiveKey{}, ErrClosed
	}
	file, err := os.ReadFile(ks.path)
	if err != nil {
		return ArchiveKey{}, fmt.Errorf("keystore: %w", err)
	}
	aead, err := subkeyAEAD(master, archiveKeyInfo)
	if err != nil {
		return ArchiveKey{}, err
	}
	key := make([]byte, keyLen)
	nonce := make([]byte, 12, 12+keyLen+16)
	if _, err := rand.Read(key); err != nil {
		return ArchiveKey{}, err
	}
	if _, err := rand.Read(nonce); err != nil {
		return ArchiveKey{}, err
	}
	sealed := aead.Seal(nonce, nonce, key, archiveKeyAAD(nodeID, object))
	return ArchiveKey{Key: key, Sealed: sealed, Keystore: file, Generation: gen, NodeID: nodeID}, nil
}

// OpenArchiveKey opens a key NewArchiveKey sealed for object, with this
// keystore (the copy returned with it). A key sealed for another object
// or node, or altered, is ErrTampered.
func (ks *Keystore) OpenArchiveKey(object string, sealed []byte) ([]byte, error) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	if ks.master == nil {
		return nil, ErrClosed
	}
	if len(sealed) != 12+keyLen+16 {
		return nil, ErrTampered
	}
	aead, err := subkeyAEAD(ks.master, archiveKeyInfo)
	if err != nil {
		return nil, err
	}
	k, err := aead.Open(nil, sealed[:12], sealed[12:], archiveKeyAAD(ks.b.NodeID, object))
	if err != nil {
		return nil, ErrTampered
	}
	return k, nil
}
