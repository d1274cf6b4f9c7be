package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/kms"
	"github.com/cmkdb/cmkdb/internal/kms/local"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// Node is an open node: keys unwrapped, storage ready.
type Node struct {
	Layout   Layout
	Provider kms.Provider
	Keystore *keys.Keystore
	Engine   *storage.Engine
}

// Options for opening a node.
type Options struct {
	// Plaintext turns file encryption off (benchmark comparisons only).
	Plaintext bool
	CacheSize int64
	Logger    *slog.Logger
}

// Open unlocks the node's keystore with provider (one KMS call), creating
// the keystore on first start, and opens the storage engine.
func Open(ctx context.Context, l Layout, provider kms.Provider, opts Options) (*Node, error) {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	ks, err := keys.Open(ctx, l.KeystoreDir(), provider)
	if errors.Is(err, keys.ErrNotFound) {
		ks, err = keys.Create(ctx, l.KeystoreDir(), provider)
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	eng, err := storage.Open(storage.Options{Dir: l.DataDir(), Plaintext: opts.Plaintext, CacheSize: opts.CacheSize, Logger: opts.Logger}, ks)
	if err != nil {
		ks.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	return &Node{Layout: l, Provider: provider, Keystore: ks, Engine: eng}, nil
}

// Close closes the databases and drops every key from memory.
func (n *Node) Close() error {
	err := n.Engine.Close()
	n.Keystore.Close()
	return err
}

// EnsureLocalKey opens the layout's local CMK, creating it on first use.
func EnsureLocalKey(l Layout) (*local.Provider, bool, error) {
	path := l.LocalKeyPath()
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(l.Dir+"/kms", 0o700); err != nil {
			return nil, false, fmt.Errorf("node: %w", err)
		}
		if _, err := local.Create(path); err != nil {
			return nil, false, fmt.Errorf("node: create local CMK: %w", err)
		}
		created = true
	}
	p, err := local.Open(path)
	return p, created, err
}
