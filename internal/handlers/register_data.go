package handlers

import "github.com/cmkdb/cmkdb/internal/wire"

// registerData adds the query, write, aggregation and index commands.
func (h *Handler) registerData(cmds map[string]wire.HandlerFunc) {
}
