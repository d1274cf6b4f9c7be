package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cmkdb/cmkdb/internal/durable"
	"github.com/cmkdb/cmkdb/internal/keys"
	"github.com/cmkdb/cmkdb/internal/storage"
)

// In-place re-encryption: a standalone node (a one-member cluster) moves
// its data into a fresh key hierarchy while it serves, then destroys the
// old one. Copy into a fresh hierarchy, switch, destroy:
//
//	COPYING   DIR/node/next/keystore: a new node master key wrapped by the key
//	          the provider names now, generation above the current one;
//	          DIR/node/next/db/<new id>: every database copied online
//	          (storage.Copy: a snapshot, then the batches committed meanwhile)
//	SWITCHING new operations wait; once none is in flight: the last batches
//	          copied, the copies flushed, the old database ids recorded as
//	          dropped in the new keystore, then the new keystore renamed over
//	          DIR/node/keystore ← the commit point (one atomic rename)
//	DONE      DIR/node/next/db/* moved into DIR/node/db, the old engine and
//	          keys closed (zeroed), storage reopened under the new keystore:
//	          it deletes the old databases' directories (recorded as dropped)
//
// Crash recovery (settleReencryption, at Open): DIR/node/next/keystore
// present means the switch never happened — the partial copy is deleted
// (its keys first) and the node is as before. DIR/node/next without a
// keystore means the switch happened (database directories are created
// only after the new keystore exists): the remaining moves are finished.
// Either way nothing is deleted that the keystore in force does not
// explain.
//
// What the old keys can read afterwards: nothing on the node's disk. The
// old keystore file was replaced, every file under DIR/node/db was
// written under keys that only the new master key unwraps, and the old
// directories were deleted. Copies made before (backups, disk snapshots)
// and blocks the file system has not reused are what the old CMK still
// opens.

// NextDir is where an in-place re-encryption builds the new hierarchy.
func (l Layout) NextDir() string { return filepath.Join(l.Dir, "node", "next") }

// ReencryptProgress reports an in-place re-encryption.
type ReencryptProgress struct {
	Phase string // COPYING, SWITCHING, DONE
	// BytesCopied and BytesTotal estimate the copy from the databases'
	// sizes on disk; Documents counts the keys copied (documents and
	// index entries).
	BytesCopied, BytesTotal, Keys int64
	Elapsed                       time.Duration
}

// switchAttempts bounds how often the switch waits in vain for operations
// in flight to end (each wait is the disable grace).
const switchAttempts = 5

// errSwitchBusy is a switch attempt that found operations still in flight.
var errSwitchBusy = errors.New("node: operations in flight did not end in time for the re-encryption to switch")

// Reencrypt re-encrypts the node in place (above): the node serves
// throughout, with a pause of its operations at the switch (writes and
// reads wait; none fails). It returns once the old hierarchy is destroyed,
// or with an error and the node as it was. The new master key is wrapped
// by n.Provider, which for a managed node is the key the cluster's
// provider names now. Not for a replica set member (its data is also in
// the raft log; sets re-encrypt by resync).
func (n *Node) Reencrypt(ctx context.Context, progress func(ReencryptProgress)) error {
	if n.opts.ReadOnly {
		return fmt.Errorf("node: re-encrypt: %w", storage.ErrReadOnly)
	}
	n.reencrypting.Lock()
	defer n.reencrypting.Unlock()
	if progress == nil {
		progress = func(ReencryptProgress) {}
	}
	start := time.Now()
	log := n.opts.logger()
	eng, ks, release, err := n.Acquire()
	if err != nil {
		return fmt.Errorf("node: re-encrypt: %w", err)
	}
	held := true
	defer func() {
		if held {
			release()
		}
	}()
	ctx, stop := n.Bind(ctx) // a disable stops the copy
	defer stop()

	next := n.Layout.NextDir()
	if err := os.RemoveAll(next); err != nil {
		return fmt.Errorf("node: re-encrypt: %w", err)
	}
	nks, err := keys.CreateReplacement(ctx, next, n.Provider, keys.Replacement{Generation: ks.Generation()})
	if err != nil {
		return fmt.Errorf("node: re-encrypt: new keystore: %w", err)
	}
	neng, err := storage.Open(storage.Options{Dir: filepath.Join(next, "db"), QuarantineDir: filepath.Join(next, "quarantine"),
		Plaintext: n.opts.Plaintext, CacheSize: n.opts.CacheSize, Logger: log}, nks)
	if err != nil {
		nks.Close()
		_ = os.RemoveAll(next)
		return fmt.Errorf("node: re-encrypt: %w", err)
	}
	copies := map[string]*storage.Copy{}
	abandon := func() {
		for _, c := range copies {
			c.Stop()
		}
		_ = neng.Close()
		nks.Close()
		// The keys first: what was copied is unreadable from then on.
		_ = os.Remove(keys.Path(next))
		_ = durable.SyncDir(next)
		_ = os.RemoveAll(next)
	}
	log.Info("in-place re-encryption: copying every database into a new key hierarchy", "newNodeId", nks.NodeID())

	var total, done int64
	names := eng.Databases()
	sizes := map[string]int64{}
	for _, name := range names {
		if db, err := eng.Database(name); err == nil {
			sizes[name] = db.DiskUsage()
			total += sizes[name]
		}
	}
	var keysCopied int64
	phase := "COPYING"
	copyOne := func(name string) error {
		dst, err := neng.CreateDatabase(name)
		if err != nil {
			return err
		}
		c, err := eng.StartCopy(name, dst)
		if err != nil {
			return err
		}
		copies[name] = c
		err = c.Bulk(ctx, func(int64) {
			progress(ReencryptProgress{Phase: phase, BytesCopied: min(total, done+dst.DiskUsage()), BytesTotal: total,
				Keys: keysCopied + c.Keys, Elapsed: time.Since(start)})
		})
		keysCopied += c.Keys
		done += sizes[name]
		return err
	}
	for _, name := range names {
		if err := copyOne(name); errors.Is(err, storage.ErrNoDatabase) {
			continue // dropped since it was listed
		} else if err != nil {
			abandon()
			return fmt.Errorf("node: re-encrypt: database %s: %w", name, err)
		}
	}
	// Catch up while writes go on, so the switch has little left to copy.
	for i := 0; i < 3; i++ {
		for name, c := range copies {
			if _, err := c.CatchUp(); err != nil {
				abandon()
				return fmt.Errorf("node: re-encrypt: database %s: %w", name, err)
			}
		}
	}
	phase = "SWITCHING"
	progress(ReencryptProgress{Phase: phase, BytesCopied: total, BytesTotal: total, Keys: keysCopied, Elapsed: time.Since(start)})
	release()
	held = false

	// Under the pause: copy what was created meanwhile, drop what was
	// dropped, apply the last batches, flush, close the new engine.
	finish := func() error {
		now := eng.Databases()
		for _, name := range now {
			if copies[name] == nil {
				if err := copyOne(name); err != nil { // created during the copy
					return fmt.Errorf("database %s: %w", name, err)
				}
			}
		}
		for name, c := range copies {
			if !slices.Contains(now, name) {
				c.Stop()
				if err := neng.DropDatabase(name); err != nil { // dropped during the copy
					return err
				}
				continue
			}
			if _, err := c.CatchUp(); err != nil {
				return fmt.Errorf("database %s: %w", name, err)
			}
			c.Stop()
			if err := c.Sync(); err != nil {
				return err
			}
		}
		return neng.Close()
	}
	for attempt := 1; ; attempt++ {
		err = n.switchHierarchy(ctx, eng, ks, nks, finish)
		if !errors.Is(err, errSwitchBusy) || attempt == switchAttempts {
			break
		}
		log.Warn("in-place re-encryption: operations in flight kept the node from switching; trying again", "attempt", attempt)
	}
	var committed *switchedError
	switch {
	case errors.As(err, &committed):
		return err // the new hierarchy is in force; the node said what is left
	case err != nil:
		abandon()
		return fmt.Errorf("node: re-encrypt: %w", err)
	}
	progress(ReencryptProgress{Phase: "DONE", BytesCopied: total, BytesTotal: total, Keys: keysCopied, Elapsed: time.Since(start)})
	log.Info("in-place re-encryption done: the old key hierarchy and its files are destroyed", "nodeId", nks.NodeID(), "elapsed", time.Since(start).String())
	return nil
}

// switchedError is a failure after the commit point: the new hierarchy is
// in force, and finishing was left to the next start.
type switchedError struct{ err error }

func (e *switchedError) Error() string {
	return "node: re-encrypt: switched to the new key hierarchy, but " + e.err.Error()
}
func (e *switchedError) Unwrap() error { return e.err }

// switchHierarchy pauses the node, waits for the operations in flight
// (errSwitchBusy if they do not end within the disable grace), finishes the
// copies and switches to the new hierarchy. Before the commit point any
// error leaves the old hierarchy in force (the caller abandons the copy);
// after it, errors are *switchedError.
func (n *Node) switchHierarchy(ctx context.Context, eng *storage.Engine, ks *keys.Keystore, nks *keys.Keystore, finish func() error) error {
	n.transition.Lock()
	defer n.transition.Unlock()
	n.mu.Lock()
	if !n.state.Available || n.cur.eng != eng {
		n.mu.Unlock()
		return errors.New("the node was disabled during the copy")
	}
	old := n.cur
	resume := make(chan struct{})
	n.paused = resume
	unpause := func() {
		n.mu.Lock()
		n.paused = nil
		n.mu.Unlock()
		close(resume)
	}
	var wait chan struct{}
	if old.holders > 0 {
		wait = make(chan struct{})
		old.drained = wait
	}
	n.mu.Unlock()
	if wait != nil {
		t := time.NewTimer(n.opts.grace())
		select {
		case <-wait:
			t.Stop()
		case <-t.C:
			n.mu.Lock()
			old.drained = nil
			n.mu.Unlock()
			unpause()
			return errSwitchBusy
		case <-ctx.Done():
			t.Stop()
			n.mu.Lock()
			old.drained = nil
			n.mu.Unlock()
			unpause()
			return context.Cause(ctx)
		}
	}
	// Quiescent: no operation holds the node, none can start.
	err := func() error {
		if finish != nil {
			if err := finish(); err != nil {
				return err
			}
		}
		// The old databases' ids the new hierarchy does not reuse (a
		// restore reuses the ids of the databases its snapshot holds).
		keep := map[string]bool{}
		for _, id := range nks.DatabaseIDs() {
			keep[id] = true
		}
		var retired []string
		for _, id := range ks.DatabaseIDs() {
			if !keep[id] {
				retired = append(retired, id)
			}
		}
		if err := nks.Retire(retired); err != nil {
			return err
		}
		if n.switchHook != nil {
			if err := n.switchHook("commit"); err != nil {
				return err
			}
		}
		return nks.MoveTo(n.Layout.KeystoreDir()) // the commit point
	}()
	if err != nil {
		unpause()
		return err
	}
	// The new hierarchy is in force. The old engine's databases close; the
	// new ones move into place and reopen; the old directories go.
	if err := eng.Close(); err != nil {
		n.opts.logger().Warn("closing the old hierarchy's databases", "err", err)
	}
	ks.Close()
	fail := func(err error) error {
		n.mu.Lock()
		n.state = State{Reason: "in-place re-encryption: " + err.Error() + " (restart the node to finish it)", Since: time.Now().UTC()}
		n.cur = disabledEpoch(n.state)
		n.mu.Unlock()
		old.cancel(&DisabledError{State: n.State()})
		nks.Close()
		unpause()
		return &switchedError{err: err}
	}
	if n.switchHook != nil {
		if err := n.switchHook("move"); err != nil {
			return fail(err)
		}
	}
	if err := finishSwitch(n.Layout); err != nil {
		return fail(err)
	}
	eng2, err := storage.Open(storage.Options{Dir: n.Layout.DataDir(), QuarantineDir: n.Layout.QuarantineDir(),
		Plaintext: n.opts.Plaintext, CacheSize: n.opts.CacheSize, Logger: n.opts.logger()}, nks)
	if err != nil {
		return fail(err)
	}
	cur := newEpoch(eng2, nks)
	// Commands bound to the old epoch (bound before the pause, acquiring
	// after it) are stopped by a disable of the new one.
	context.AfterFunc(cur.ctx, func() { old.cancel(context.Cause(cur.ctx)) })
	n.mu.Lock()
	n.cur = cur
	n.mu.Unlock()
	unpause()
	return nil
}

// finishSwitch moves the new hierarchy's database directories into the
// data directory and removes DIR/node/next. The new keystore is already
// in place (it is the caller's commit point, or settleReencryption found
// it so).
func finishSwitch(l Layout) error {
	from := filepath.Join(l.NextDir(), "db")
	ents, err := os.ReadDir(from)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(l.DataDir(), 0o700); err != nil {
		return err
	}
	for _, e := range ents {
		to := filepath.Join(l.DataDir(), e.Name())
		// A directory of the same id is the old hierarchy's version of a
		// database the new one reuses the id of (a restore): replaced.
		if err := os.RemoveAll(to); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(from, e.Name()), to); err != nil {
			return fmt.Errorf("move re-encrypted database %s into place: %w", e.Name(), err)
		}
	}
	if err := durable.SyncDir(l.DataDir()); err != nil {
		return err
	}
	if err := os.RemoveAll(l.NextDir()); err != nil {
		return err
	}
	return durable.SyncDir(l.KeystoreDir())
}

// settleReencryption finishes or abandons an in-place re-encryption that
// a crash interrupted (see the comment at the top of this file). It runs
// before the keystore is opened.
func settleReencryption(l Layout, log interface{ Warn(string, ...any) }) error {
	next := l.NextDir()
	if _, err := os.Stat(next); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(keys.Path(next)); err == nil {
		log.Warn("an in-place re-encryption was interrupted before it switched: its partial copy is deleted (keys first); the node's data is as before")
		if err := os.Remove(keys.Path(next)); err != nil {
			return fmt.Errorf("node: abandon interrupted re-encryption: %w", err)
		}
		if err := durable.SyncDir(next); err != nil {
			return err
		}
		return os.RemoveAll(next)
	}
	log.Warn("an in-place re-encryption was interrupted after it switched: moving its databases into place")
	if err := finishSwitch(l); err != nil {
		return fmt.Errorf("node: finish interrupted re-encryption: %w", err)
	}
	return nil
}
