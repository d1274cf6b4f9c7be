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
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.cfg.SaveOplogLimits(limits); err != nil {
		return fmt.Errorf("repl: record the oplog limits: %w", err)
	}
	m.cfg.Oplog = limits // what the oplog opens with when raft restarts
	if m.oplog == nil {
		return nil
	}
	if err := m.oplog.SetLimits(limits, time.Now()); err != nil {
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
