package handlers

import "github.com/cmkdb/cmkdb/internal/wire"

// register wires every command to its handler.
func (h *Handler) register() {
	cmds := map[string]wire.HandlerFunc{
		// Handshake and diagnostics: answer even while the node is disabled.
		"hello":            h.hello,
		"isMaster":         h.hello,
		"ping":             h.ping,
		"buildInfo":        h.buildInfo,
		"buildinfo":        h.buildInfo,
		"whatsmyuri":       h.whatsmyuri,
		"endSessions":      h.endSessions,
		"hostInfo":         h.hostInfo,
		"getCmdLineOpts":   h.getCmdLineOpts,
		"getLog":           h.getLog,
		"getParameter":     h.getParameter,
		"connectionStatus": h.connectionStatus,
		"serverStatus":     h.serverStatus,
		// Data commands.
		"insert":           h.insert,
		"find":             h.find,
		"getMore":          h.getMore,
		"killCursors":      h.killCursors,
		"listDatabases":    h.listDatabases,
		"listCollections":  h.listCollections,
		"create":           h.create,
		"drop":             h.drop,
		"dropDatabase":     h.dropDatabase,
		"renameCollection": h.renameCollection,
	}
	h.registerData(cmds)
	h.registerAuth(cmds)
	for name, fn := range cmds {
		if err := h.reg.Register(name, fn); err != nil {
			panic(err) // a duplicate name is a programming error
		}
	}
}
