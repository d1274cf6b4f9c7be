// Package snapshot keeps the snapshot store: the directory where a
// cluster's snapshots live, how a snapshot is published only once it is
// complete and durable, how snapshots are listed, verified and deleted.
// What a snapshot holds is the node's (node.Checkpoint): encrypted files
// and a keystore; the store adds a manifest and never sees a key.
//
// Layout:
//
//	STORE/<groupId>/<cluster>/<snapshotId>/manifest.json   what it holds (below)
//	                                       keystore        the node keystore of that moment
//	                                       db/<id>/…       each database's Pebble checkpoint
//	STORE/<groupId>/<cluster>/.partial-<snapshotId>/       being written: never listed
//	STORE/<groupId>/<cluster>/.deleting-<snapshotId>/      being deleted: never listed
//	STORE/<groupId>/<cluster>/.oplog/                      a replica set's oplog archive
//	                                                       (package logarchive)
//
// Crash safety: a snapshot is written under .partial-<id>, every file and
// directory synced, its manifest written last, and the directory renamed
// to <id> (the parent synced): that rename publishes it. A crash leaves a
// .partial- directory, which List ignores and Clean removes (its name says
// what it is). Deleting renames to .deleting-<id> first, so a snapshot is
// listed whole or not at all.
package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/kms"
)

// ManifestFormat is the manifest's format version.
const ManifestFormat = 1

// ManifestName is the manifest's file name in a snapshot directory.
const ManifestName = "manifest.json"

// Manifest describes a snapshot. It holds no key and no credential: the
// CMK is named (provider, key id, version), never configured.
type Manifest struct {
	Format    int       `json:"format"`
	ID        string    `json:"id"`
	GroupID   string    `json:"groupId"`
	Cluster   string    `json:"cluster"`
	CreatedAt time.Time `json:"createdAt"`
	// NodeName is the node's name in its cluster: a managed node's master
	// key is wrapped under associated data bound to group, cluster and
	// node name (cpproto.BindAAD), which whoever opens it offline repeats.
	NodeName string `json:"nodeName,omitempty"`
	// The key hierarchy of the node at snapshot time.
	NodeID             string     `json:"nodeId"`
	KeystoreGeneration uint64     `json:"keystoreGeneration"`
	MasterKeyVersion   uint32     `json:"masterKeyVersion"`
	CMK                kms.KeyRef `json:"cmk"`
	// DatabaseIDs name the databases (their names are sealed in the
	// keystore).
	DatabaseIDs []string `json:"databaseIds"`
	Files       []File   `json:"files"`
	SizeBytes   int64    `json:"sizeBytes"`
}

// File is one file of a snapshot, by path relative to its directory.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ErrNotFound is returned for a snapshot the store does not hold.
var ErrNotFound = errors.New("snapshot: not found")

// Store is a snapshot store in a directory.
type Store struct{ Dir string }

func (s Store) clusterDir(gid, cluster string) string { return filepath.Join(s.Dir, gid, cluster) }

// Path is where snapshot id of a cluster lives once published.
func (s Store) Path(gid, cluster, id string) string {
	return filepath.Join(s.clusterDir(gid, cluster), id)
}

// OplogArchiveDir is where a cluster's oplog archive lives (its name
// starts with a dot: never listed as a snapshot, never cleaned).
func (s Store) OplogArchiveDir(gid, cluster string) string {
	return filepath.Join(s.clusterDir(gid, cluster), ".oplog")
}

// StagingDir is a private directory in a cluster's part of the store for
// a restore's staged files, named name: Clean removes it if a crash
// leaves it. Its parent is created.
func (s Store) StagingDir(gid, cluster, name string) (string, error) {
	if !validName(gid) || !validName(cluster) || !validName(name) {
		return "", fmt.Errorf("snapshot: invalid name %q/%q/%q", gid, cluster, name)
	}
	parent := s.clusterDir(gid, cluster)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	return filepath.Join(parent, ".partial-"+name), nil
}

// Pending is a snapshot being written.
type Pending struct {
	s                Store
	gid, cluster, id string
	dir              string
}

// Begin starts snapshot id: Dir is where its files go (it does not exist
// yet; the writer creates it, as a Pebble checkpoint wants).
func (s Store) Begin(gid, cluster, id string) (*Pending, error) {
	if !validName(gid) || !validName(cluster) || !validName(id) {
		return nil, fmt.Errorf("snapshot: invalid name %q/%q/%q", gid, cluster, id)
	}
	parent := s.clusterDir(gid, cluster)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if _, err := os.Stat(s.Path(gid, cluster, id)); err == nil {
		return nil, fmt.Errorf("snapshot: %s already exists", id)
	}
	dir := filepath.Join(parent, ".partial-"+id)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &Pending{s: s, gid: gid, cluster: cluster, id: id, dir: dir}, nil
}

// Dir is where the snapshot's files are written.
func (p *Pending) Dir() string { return p.dir }

// Abort removes what was written.
func (p *Pending) Abort() { _ = os.RemoveAll(p.dir) }

// Commit checksums every file, syncs it, writes the manifest (m with its
// files, size, ids and format filled in) and publishes the snapshot.
func (p *Pending) Commit(m Manifest) (Manifest, error) {
	m.Format, m.ID, m.GroupID, m.Cluster = ManifestFormat, p.id, p.gid, p.cluster
	m.Files, m.SizeBytes = nil, 0
	err := filepath.WalkDir(p.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return durable.SyncDir(path)
		}
		rel, _ := filepath.Rel(p.dir, path)
		f, err := checksum(path, true)
		if err != nil {
			return err
		}
		f.Path = filepath.ToSlash(rel)
		m.Files = append(m.Files, f)
		m.SizeBytes += f.Size
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot: %w", err)
	}
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if err := durable.WriteFile(filepath.Join(p.dir, ManifestName), raw, 0o600); err != nil {
		return Manifest{}, fmt.Errorf("snapshot: %w", err)
	}
	final := p.s.Path(p.gid, p.cluster, p.id)
	if err := os.Rename(p.dir, final); err != nil {
		return Manifest{}, fmt.Errorf("snapshot: publish: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(final)); err != nil {
		return Manifest{}, fmt.Errorf("snapshot: publish: %w", err)
	}
	return m, nil
}

func checksum(path string, sync bool) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, err
	}
	if sync {
		if err := f.Sync(); err != nil {
			return File{}, err
		}
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// List returns the published snapshots of a cluster, oldest first.
func (s Store) List(gid, cluster string) ([]Manifest, error) {
	ents, err := os.ReadDir(s.clusterDir(gid, cluster))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	var out []Manifest
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		m, err := s.Get(gid, cluster, e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// Get reads a published snapshot's manifest. A published snapshot whose
// manifest is missing or unreadable is an error naming it, never skipped.
func (s Store) Get(gid, cluster, id string) (Manifest, error) {
	if !validName(id) {
		return Manifest{}, ErrNotFound
	}
	dir := s.Path(gid, cluster, id)
	raw, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return Manifest{}, fmt.Errorf("snapshot %s: published without a manifest (damaged store)", dir)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, fmt.Errorf("snapshot %s: damaged manifest: %w", dir, err)
	}
	if m.Format != ManifestFormat {
		return Manifest{}, fmt.Errorf("snapshot %s: manifest format %d is not one this cmkdb reads", dir, m.Format)
	}
	if m.ID != id {
		return Manifest{}, fmt.Errorf("snapshot %s: its manifest names snapshot %s", dir, m.ID)
	}
	return m, nil
}

// Delete removes a published snapshot: renamed out of the listing first,
// then its files removed.
func (s Store) Delete(gid, cluster, id string) error {
	if !validName(id) {
		return ErrNotFound
	}
	from := s.Path(gid, cluster, id)
	if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	to := filepath.Join(s.clusterDir(gid, cluster), ".deleting-"+id)
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("snapshot: delete: %w", err)
	}
	if err := durable.SyncDir(s.clusterDir(gid, cluster)); err != nil {
		return err
	}
	return os.RemoveAll(to)
}

// Clean removes what interrupted writes and deletions left (.partial- and
// .deleting- directories) under every cluster of the store.
func (s Store) Clean() error {
	groups, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, g := range groups {
		clusters, err := os.ReadDir(filepath.Join(s.Dir, g.Name()))
		if err != nil {
			continue
		}
		for _, c := range clusters {
			ents, err := os.ReadDir(filepath.Join(s.Dir, g.Name(), c.Name()))
			if err != nil {
				continue
			}
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".partial-") || strings.HasPrefix(e.Name(), ".deleting-") {
					if err := os.RemoveAll(filepath.Join(s.Dir, g.Name(), c.Name(), e.Name())); err != nil {
						return err
					}
				}
			}
		}
	}
	return nil
}

// Verify checks every file of a published snapshot against its manifest:
// present, same size, same SHA-256, and no file the manifest does not
// list. (The files' encryption authenticates their contents again when a
// key opens them; this needs no key.)
func Verify(dir string, m Manifest) error {
	want := map[string]File{}
	for _, f := range m.Files {
		want[f.Path] = f
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if rel == ManifestName {
			return nil
		}
		w, ok := want[rel]
		if !ok {
			return fmt.Errorf("%s is not in the manifest", rel)
		}
		got, err := checksum(path, false)
		if err != nil {
			return err
		}
		if got.Size != w.Size || got.SHA256 != w.SHA256 {
			return fmt.Errorf("%s does not match the manifest (size %d, want %d)", rel, got.Size, w.Size)
		}
		delete(want, rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", m.ID, err)
	}
	for p := range want {
		return fmt.Errorf("snapshot %s: %s is missing", m.ID, p)
	}
	return nil
}

// validName accepts the ids and cluster names the control plane makes:
// no path separators, no leading dot.
func validName(s string) bool {
	if s == "" || len(s) > 128 || strings.HasPrefix(s, ".") {
		return false
	}
	for _, c := range s {
		if c == '/' || c == '\\' || c == 0 {
			return false
		}
	}
	return true
}

// Stage copies published snapshot id of a cluster into a private working
// directory under another cluster's part of the store (a restore into that
// cluster prepares it there); cleanup removes it. The directory's name
// starts with .partial-, so an interrupted restore's copy is never listed
// and Clean removes it.
func (s Store) Stage(gid, cluster, id, toGid, toCluster, name string) (dir string, cleanup func(), err error) {
	if !validName(toGid) || !validName(toCluster) || !validName(name) {
		return "", nil, fmt.Errorf("snapshot: invalid name %q/%q/%q", toGid, toCluster, name)
	}
	src := s.Path(gid, cluster, id)
	if _, err := os.Stat(src); err != nil {
		return "", nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	parent := s.clusterDir(toGid, toCluster)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", nil, err
	}
	dir = filepath.Join(parent, ".partial-"+name)
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	err = CopyTree(context.Background(), src, dir, nil)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("snapshot: stage %s: %w", id, err)
	}
	return dir, cleanup, nil
}
