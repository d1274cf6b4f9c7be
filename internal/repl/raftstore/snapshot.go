package raftstore

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// Snapshot layout: one directory per snapshot under the store's directory,
// named by its ID, holding
//
//	data        the FSM's bytes
//	meta.json   snapshotMeta: raft's SnapshotMeta and the SHA-256 of data
//
// A snapshot is written under "<id>.tmp" and renamed to "<id>" only once
// both files and the directory are synced: the rename is the commit point,
// so an interrupted snapshot is never listed (and its .tmp directory is
// removed at the next open).
const (
	tmpSuffix = ".tmp"
	dataFile  = "data"
	metaFile  = "meta.json"

	snapshotFormat = 1
)

// ErrSnapshotDamaged is matched (errors.Is) by the errors that report a
// snapshot whose contents do not match its recorded size or digest.
var ErrSnapshotDamaged = errors.New("raftstore: snapshot damaged")

type snapshotMeta struct {
	Format int               `json:"format"`
	Meta   raft.SnapshotMeta `json:"meta"`
	SHA256 string            `json:"sha256"`
}

// SnapshotStore is raft's SnapshotStore over a vfs.FS: every file goes
// through that FS, which the caller makes an encrypting one.
type SnapshotStore struct {
	fs     vfs.FS
	dir    string
	retain int

	mu sync.Mutex // serialises ID choice, listing and reaping
}

var _ raft.SnapshotStore = (*SnapshotStore)(nil)

// NewSnapshotStore opens (creating it if need be) a snapshot store in dir,
// keeping at most retain complete snapshots. Directories of interrupted
// snapshots are removed.
func NewSnapshotStore(fs vfs.FS, dir string, retain int) (*SnapshotStore, error) {
	if fs == nil {
		return nil, errors.New("raftstore: nil file system")
	}
	if retain < 1 {
		return nil, fmt.Errorf("raftstore: retain must be at least 1, not %d", retain)
	}
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftstore: snapshot dir %s: %w", dir, err)
	}
	s := &SnapshotStore{fs: fs, dir: dir, retain: retain}
	names, err := fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("raftstore: list snapshot dir %s: %w", dir, err)
	}
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) {
			if err := fs.RemoveAll(fs.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("raftstore: remove interrupted snapshot %s: %w", name, err)
			}
			removed = true
		}
	}
	if removed {
		if err := syncDir(fs, dir); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("raftstore: open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raftstore: fsync dir %s: %w", dir, err)
	}
	return nil
}

func (s *SnapshotStore) exists(name string) bool {
	_, err := s.fs.Stat(s.fs.PathJoin(s.dir, name))
	return err == nil
}

// Create starts a snapshot. Only snapshot version 1 is supported (as in
// raft's own file store); the deprecated Peers field of version 0 metadata
// is left empty, and trans is not used.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("raftstore: unsupported snapshot version %d", version)
	}
	s.mu.Lock()
	ms := time.Now().UnixMilli()
	var id string
	for {
		id = fmt.Sprintf("%d-%d-%d", term, index, ms)
		if !s.exists(id) && !s.exists(id+tmpSuffix) {
			break
		}
		ms++
	}
	tmp := s.fs.PathJoin(s.dir, id+tmpSuffix)
	err := s.fs.MkdirAll(tmp, 0o700)
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	f, err := s.fs.Create(s.fs.PathJoin(tmp, dataFile), vfs.WriteCategoryUnspecified)
	if err != nil {
		_ = s.fs.RemoveAll(tmp)
		return nil, fmt.Errorf("raftstore: snapshot %s: %w", id, err)
	}
	sink := &sink{
		store: s,
		tmp:   tmp,
		file:  f,
		hash:  sha256.New(),
		meta: raft.SnapshotMeta{
			Version:            version,
			ID:                 id,
			Index:              index,
			Term:               term,
			Configuration:      configuration,
			ConfigurationIndex: configurationIndex,
		},
	}
	sink.buf = bufio.NewWriterSize(io.MultiWriter(f, sink.hash), 256<<10)
	return sink, nil
}

type sink struct {
	store *SnapshotStore
	tmp   string
	file  vfs.File
	buf   *bufio.Writer
	hash  hash.Hash
	meta  raft.SnapshotMeta
	done  bool
	err   error // first write error: Close then fails
}

func (k *sink) ID() string { return k.meta.ID }

func (k *sink) Write(p []byte) (int, error) {
	if k.done {
		return 0, fmt.Errorf("raftstore: snapshot %s: write after close", k.meta.ID)
	}
	if k.err != nil {
		return 0, k.err
	}
	n, err := k.buf.Write(p)
	k.meta.Size += int64(n)
	if err != nil {
		k.err = fmt.Errorf("raftstore: snapshot %s: write: %w", k.meta.ID, err)
		return n, k.err
	}
	return n, nil
}

// Close completes the snapshot: data and meta synced, the directory synced
// and renamed to its final name, the parent synced; then snapshots beyond
// the retention are deleted. A failure before the rename removes the
// temporary directory: the snapshot does not exist. A failure after it (the
// parent's fsync, or deleting old snapshots) is reported, but the snapshot
// is complete and listed.
func (k *sink) Close() error {
	if k.done {
		return nil
	}
	k.done = true
	if err := k.finish(); err != nil {
		if k.file != nil {
			k.file.Close()
		}
		_ = k.store.fs.RemoveAll(k.tmp)
		return err
	}
	return k.store.reap()
}

func (k *sink) finish() error {
	fs, id := k.store.fs, k.meta.ID
	wrap := func(what string, err error) error {
		return fmt.Errorf("raftstore: snapshot %s: %s: %w", id, what, err)
	}
	if k.err != nil {
		return k.err
	}
	if err := k.buf.Flush(); err != nil {
		return wrap("write", err)
	}
	if err := k.file.Sync(); err != nil {
		return wrap("fsync data", err)
	}
	err := k.file.Close()
	k.file = nil
	if err != nil {
		return wrap("close data", err)
	}
	meta, err := json.Marshal(snapshotMeta{Format: snapshotFormat, Meta: k.meta, SHA256: hex.EncodeToString(k.hash.Sum(nil))})
	if err != nil {
		return wrap("encode meta", err)
	}
	if err := writeFileSync(fs, fs.PathJoin(k.tmp, metaFile), meta); err != nil {
		return wrap("write meta", err)
	}
	if err := syncDir(fs, k.tmp); err != nil {
		return err
	}
	if err := fs.Rename(k.tmp, fs.PathJoin(k.store.dir, id)); err != nil {
		return wrap("rename", err)
	}
	return syncDir(fs, k.store.dir)
}

func writeFileSync(fs vfs.FS, path string, data []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Cancel abandons the snapshot and removes its temporary directory.
func (k *sink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	if k.file != nil {
		k.file.Close()
		k.file = nil
	}
	if err := k.store.fs.RemoveAll(k.tmp); err != nil {
		return fmt.Errorf("raftstore: snapshot %s: remove: %w", k.meta.ID, err)
	}
	return nil
}

// reap deletes the complete snapshots beyond the retention, oldest first.
func (s *SnapshotStore) reap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.list()
	if err != nil {
		return fmt.Errorf("raftstore: snapshot saved, but listing for retention failed: %w", err)
	}
	if len(all) <= s.retain {
		return nil
	}
	for _, m := range all[s.retain:] {
		if err := s.fs.RemoveAll(s.fs.PathJoin(s.dir, m.Meta.ID)); err != nil {
			return fmt.Errorf("raftstore: snapshot saved, but removing old snapshot %s failed: %w", m.Meta.ID, err)
		}
	}
	return syncDir(s.fs, s.dir)
}

// List returns the complete snapshots, newest first (by term, index, then
// ID), at most the retention. A snapshot whose metadata cannot be read is
// an error naming it: it is never skipped silently.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	if len(all) > s.retain {
		all = all[:s.retain]
	}
	out := make([]*raft.SnapshotMeta, len(all))
	for i := range all {
		m := all[i].Meta
		out[i] = &m
	}
	return out, nil
}

func (s *SnapshotStore) list() ([]*snapshotMeta, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("raftstore: list snapshots in %s: %w", s.dir, err)
	}
	var all []*snapshotMeta
	for _, name := range names {
		if strings.HasSuffix(name, tmpSuffix) || name == "." || name == ".." {
			continue
		}
		fi, err := s.fs.Stat(s.fs.PathJoin(s.dir, name))
		if err != nil {
			if os.IsNotExist(err) {
				continue // removed since List
			}
			return nil, fmt.Errorf("raftstore: snapshot %s: %w", name, err)
		}
		if !fi.IsDir() {
			continue
		}
		m, err := s.readMeta(name)
		if err != nil {
			return nil, err
		}
		all = append(all, m)
	}
	slices.SortFunc(all, func(a, b *snapshotMeta) int {
		return -cmp.Or(cmp.Compare(a.Meta.Term, b.Meta.Term), cmp.Compare(a.Meta.Index, b.Meta.Index),
			strings.Compare(a.Meta.ID, b.Meta.ID))
	})
	return all, nil
}

// maxMetaSize bounds meta.json (a configuration of many servers is still
// far smaller).
const maxMetaSize = 16 << 20

func (s *SnapshotStore) readMeta(id string) (*snapshotMeta, error) {
	fail := func(err error) error { return fmt.Errorf("raftstore: snapshot %s: meta: %w", id, err) }
	f, err := s.fs.Open(s.fs.PathJoin(s.dir, id, metaFile))
	if err != nil {
		return nil, fail(err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxMetaSize+1))
	if err != nil {
		return nil, fail(err)
	}
	if len(raw) > maxMetaSize {
		return nil, fail(fmt.Errorf("%w: over %d bytes", ErrSnapshotDamaged, maxMetaSize))
	}
	var m snapshotMeta
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fail(fmt.Errorf("%w: %v", ErrSnapshotDamaged, err))
	}
	switch {
	case m.Format != snapshotFormat:
		return nil, fail(fmt.Errorf("unknown format %d", m.Format))
	case m.Meta.ID != id:
		return nil, fail(fmt.Errorf("%w: records ID %q", ErrSnapshotDamaged, m.Meta.ID))
	case m.Meta.Size < 0:
		return nil, fail(fmt.Errorf("%w: size %d", ErrSnapshotDamaged, m.Meta.Size))
	}
	if sum, err := hex.DecodeString(m.SHA256); err != nil || len(sum) != sha256.Size {
		return nil, fail(fmt.Errorf("%w: malformed digest", ErrSnapshotDamaged))
	}
	return &m, nil
}

// Open returns a snapshot's metadata and a reader of its data. The reader
// checks the data against the recorded size and SHA-256 as it goes: at the
// end of the data it returns an error (never io.EOF) if they differ, so a
// damaged snapshot is never taken for a good one.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if id == "" || id == "." || id == ".." || strings.HasSuffix(id, tmpSuffix) || strings.ContainsAny(id, `/\`) {
		return nil, nil, fmt.Errorf("raftstore: invalid snapshot ID %q", id)
	}
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, err
	}
	path := s.fs.PathJoin(s.dir, id, dataFile)
	fi, err := s.fs.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: data: %w", id, err)
	}
	if fi.Size() != m.Meta.Size {
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: %w: data is %d bytes, meta records %d",
			id, ErrSnapshotDamaged, fi.Size(), m.Meta.Size)
	}
	f, err := s.fs.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: snapshot %s: data: %w", id, err)
	}
	want, _ := hex.DecodeString(m.SHA256)
	meta := m.Meta
	return &meta, &verifyingReader{id: id, f: f, r: bufio.NewReaderSize(f, 256<<10), hash: sha256.New(), want: want, size: m.Meta.Size}, nil
}

type verifyingReader struct {
	id   string
	f    vfs.File
	r    *bufio.Reader
	hash hash.Hash
	want []byte
	size int64
	n    int64
	err  error // sticky
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.hash.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("raftstore: snapshot %s: %w: more than the recorded %d bytes", v.id, ErrSnapshotDamaged, v.size)
		return 0, v.err
	}
	switch {
	case err == io.EOF:
		if v.n != v.size {
			v.err = fmt.Errorf("raftstore: snapshot %s: %w: %d bytes, meta records %d", v.id, ErrSnapshotDamaged, v.n, v.size)
		} else if !bytes.Equal(v.hash.Sum(nil), v.want) {
			v.err = fmt.Errorf("raftstore: snapshot %s: %w: SHA-256 mismatch", v.id, ErrSnapshotDamaged)
		} else {
			v.err = io.EOF
		}
		if v.err != io.EOF {
			return 0, v.err // withhold the last bytes of a damaged snapshot
		}
		return n, v.err
	case err != nil:
		v.err = fmt.Errorf("raftstore: snapshot %s: read: %w", v.id, err)
		return n, v.err
	}
	return n, nil
}

func (v *verifyingReader) Close() error { return v.f.Close() }
