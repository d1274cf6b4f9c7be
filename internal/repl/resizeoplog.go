package repl

import (
	"errors"
	"fmt"
	"time"

	"github.com/cmkdb/cmkdb/internal/oplog"
)

// ErrOplogNotResizable is ResizeOplog on a member whose configuration
// cannot keep the new limits (no Config.SaveOplogLimits): a resize that a
// restart silently undid would be an accepted option without its effect.
var ErrOplogNotResizable = errors.New("repl: this member cannot record new oplog limits in its configuration")

// ResizeOplog changes this member's oplog limits (replSetResizeOplog):
// first recorded in its configuration (Config.SaveOplogLimits: node.json),
// so they outlive a restart, then applied to the running oplog.
func (m *Member) ResizeOplog(limits oplog.Limits) error {
	if m.cfg.SaveOplogLimits == nil {
		return ErrOplogNotResizable
	}
	// m.mu is not held over the file write and the trim (which may
	// delete much of a large oplog): hello and status keep answering.
	m.resizeMu.Lock()
	defer m.resizeMu.Unlock()
	if err := m.cfg.SaveOplogLimits(limits); err != nil {
		return fmt.Errorf("repl: record the oplog limits: %w", err)
	}
	m.mu.Lock()
	m.cfg.Oplog = limits // what the oplog opens with when raft restarts
	ol := m.oplog
	m.mu.Unlock()
	if ol == nil {
		return nil
	}
	if err := ol.SetLimits(limits, time.Now()); err != nil {
		return fmt.Errorf("repl: oplog: %w", err)
	}
	return nil
}

// OplogLimits are the limits this member's oplog opens with.
func (m *Member) OplogLimits() oplog.Limits {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Oplog
}
