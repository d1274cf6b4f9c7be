package handlers

import "github.com/cmkdb/cmkdb/internal/wire"

// registerData adds the query, write, aggregation and index commands.
func (h *Handler) registerData(cmds map[string]wire.HandlerFunc) {
	cmds["update"] = h.update
	cmds["delete"] = h.delete
	cmds["findAndModify"] = h.findAndModify
	cmds["findandmodify"] = h.findAndModify
	cmds["count"] = h.count
	cmds["distinct"] = h.distinct
	cmds["aggregate"] = h.aggregate
	cmds["createIndexes"] = h.createIndexes
	cmds["listIndexes"] = h.listIndexes
	cmds["dropIndexes"] = h.dropIndexes
	cmds["deleteIndexes"] = h.dropIndexes
	cmds["explain"] = h.explain
	cmds["collMod"] = h.collMod
}
